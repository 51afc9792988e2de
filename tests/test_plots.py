"""core/plots: what a figure's clicks map back to."""

import pandas as pd

from core import plots


def test_a_selected_latent_point_maps_to_its_clip_whatever_its_customdata():
    points = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0], "y": [0.0] * 5, "language": ["fr", "es", "fr", "es", "de"],
                           "speaker": ["a", "b", "c", "d", "e"]})
    figure = plots.latent_scatter_figure(points, "t")
    assert [trace.name for trace in figure.data] == ["de", "es", "fr"]
    # As Streamlit hands them over: one dict per point; customdata a list, a typed array's dict, or absent.
    selected = [{"curve_number": 2, "point_index": 1, "point_number": 1, "x": 2.0, "y": 0.0,
                 "customdata": {"dtype": "i8", "bdata": "AgAAAAAAAAA="}},
                {"curve_number": 1, "point_index": 0, "point_number": 0, "x": 1.0, "y": 0.0, "customdata": [1]},
                {"curve_number": 0, "point_index": 0, "point_number": 0, "x": 4.0, "y": 0.0}]
    rows = plots.latent_point_rows(points, selected)
    assert rows == [2, 1, 4]
    assert points.iloc[rows]["x"].tolist() == [p["x"] for p in selected]  # the clicked points themselves


def test_an_accuracy_curve_carries_its_chance_level():
    curves = pd.DataFrame({"run": "r", "epoch": [1, 2], "metric": "val_accuracy", "value": [0.4, 0.6]})
    figure = plots.curves_figure(curves, title="accuracy", chance=0.25)
    assert [shape.y0 for shape in figure.layout.shapes] == [0.25]
    assert "chance 25%" in [a.text for a in figure.layout.annotations]
    assert not plots.curves_figure(curves, title="loss").layout.shapes
