"""Figures of the identifier: one clip's distribution and its per-window timeline."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

__all__ = ["probability_figure", "timeline_figure"]


def probability_figure(probabilities: dict[str, float], title: str = "Probability of each language") -> go.Figure:
    """One clip's whole distribution, most likely language first."""
    items = sorted(probabilities.items(), key=lambda kv: -kv[1])
    fig = px.bar(x=[k for k, _ in items], y=[v for _, v in items], labels={"x": "language", "y": "probability"},
                 title=title, range_y=[0, 1])
    fig.update_layout(height=300)
    return fig


def timeline_figure(windows: list[dict], languages: list[str], window_seconds: float, hop_seconds: float
                    ) -> go.Figure:
    """The most likely language of each window of a clip (``identify``'s ``windows``), sized by its probability."""
    timeline = pd.DataFrame([{"start": w["start"], "end": w["end"], "language": w["language"],
                              "probability": w["probabilities"][w["language"]]} for w in windows])
    fig = px.scatter(timeline, x="start", y="language", color="language", size="probability",
                     hover_data=["end", "probability"],
                     title=f"Language per {window_seconds:g} s window (every {hop_seconds:g} s)",
                     category_orders={"language": sorted(languages)})
    return fig.update_xaxes(title="start of window (s)")
