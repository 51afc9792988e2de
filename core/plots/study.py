"""Figures of the study pages: the clickable speed-up matrix, one cell's curves, latents in 2-D, probes.

The report's figures (dose-response, similarity scatter) live in :mod:`core.plots.transfer` and are
shown by the Convergence page as they are. Every condition has one colour, the same in every figure
here (:func:`condition_color`).
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

__all__ = ["PALETTE", "SIGNIFICANT", "condition_color", "speedup_matrix_figure", "cell_curves_figure",
           "latent_scatter_figure", "latent_point_rows", "probe_bars_figure"]

# plotly's default qualitative colours; "none" is always grey, so the baseline reads the same everywhere.
PALETTE = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff",
           "#fecb52")
NONE_COLOR = "#7f7f7f"
SIGNIFICANT = 0.05  # Holm-adjusted paired t-test p below this: the cell differs from "none"


def condition_color(condition: str, conditions: list[str]) -> str:
    """The colour of ``condition`` among ``conditions`` (in their order); "none" is grey."""
    if condition == "none":
        return NONE_COLOR
    others = [c for c in dict.fromkeys(conditions) if c != "none"]
    return PALETTE[others.index(condition) % len(PALETTE)] if condition in others else PALETTE[-1]


def _hline(y: float, text: str) -> dict:
    """A dashed horizontal line across the plot with a label, as layout entries: 4x faster to build
    than ``Figure.add_hline``, which resolves subplot references on every call."""
    return {"shapes": [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": y, "y1": y,
                        "line": {"dash": "dash", "width": 1.5, "color": "#444"}}],
            "annotations": [{"xref": "paper", "x": 1, "y": y, "text": text, "showarrow": False,
                             "xanchor": "right", "yanchor": "bottom"}]}


def _fmt(value, spec: str = ".2f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def speedup_matrix_figure(cells: list[dict], pretrain_epochs: int) -> go.Figure:
    """Pretraining condition (rows) x target (columns) at one dose; colour = log2 speed-up over "none".

    Drawn as square markers, not a heatmap, so a click selects a cell (Streamlit reports point
    selections of scatter traces only). Each marker's ``customdata`` is [pretrain, target, dose].
    Significant cells (Holm-adjusted paired t-test p < 0.05) get a thick border and a "*"; the others
    are labelled "n.s.". A clicked cell stays opaque while the others fade.
    """
    table = pd.DataFrame([c for c in cells if c["pretrain"] != "none" and c["pretrain_epochs"] == pretrain_epochs
                          and (c.get("speedup") or {}).get("mean")])
    if table.empty:
        return go.Figure().update_layout(title="No finished pretrained cell at this dose yet", height=200)
    rows, cols = list(dict.fromkeys(table["pretrain"])), sorted(table["target"].unique())
    speedup = table["speedup"].map(lambda s: s["mean"])
    significant = table["p_t_holm"].map(lambda p: p is not None and p < SIGNIFICANT) if "p_t_holm" in table \
        else pd.Series(False, index=table.index)
    hover = [f"{c['pretrain']} -> {c['target']}, {c['pretrain_epochs']} pretraining epochs<br>speed-up "
             f"{_fmt(c['speedup']['mean'])}x, 95% CI [{_fmt((c['speedup'].get('ci95') or [None])[0])}, "
             f"{_fmt((c['speedup'].get('ci95') or [None, None])[1])}] over {c['n_runs']} seeds<br>paired t-test p "
             f"{_fmt(c.get('p_t'), '.3g')} (Holm {_fmt(c.get('p_t_holm'), '.3g')}); exact sign-flip p "
             f"{_fmt(c.get('p'), '.3g')} (Holm {_fmt(c.get('p_holm'), '.3g')}); d_z {_fmt(c.get('effect_size'))}"
             for c in table.to_dict("records")]
    log2 = speedup.map(math.log2)
    # Full-band controls pretrain on the target's own kind of input and can be 100x faster; colours scaled to
    # them would wash out every low-pass cell, so those saturate instead (their labels keep the figure).
    low_pass = log2[~table["pretrain"].str.endswith(":full")]
    limit = max(0.1, float((low_pass if len(low_pass) else log2).abs().max()))
    off_scale = bool((log2.abs() > limit).any())
    figure = go.Figure(go.Scatter(
        x=table["target"], y=table["pretrain"], mode="markers+text",
        text=[f"{s:.2f}x" + ("*" if sig else " n.s.") for s, sig in zip(speedup, significant)],
        # Light text on the deep colours, dark on the pale ones.
        textfont={"color": ["white" if abs(v) > 0.55 * limit else "#222" for v in log2]},
        customdata=table[["pretrain", "target", "pretrain_epochs"]].to_numpy().tolist(),
        hovertext=hover, hoverinfo="text",
        marker={"symbol": "square", "size": 50, "color": log2, "colorscale": "RdBu_r", "cmin": -limit,
                "cmax": limit,
                "colorbar": {"title": "log2 speed-up" + ("<br>(full band:<br>off the scale)" if off_scale else "")},
                "line": {"width": [3.5 if sig else 0.5 for sig in significant], "color": "#222"}},
        selected={"marker": {"opacity": 1.0}}, unselected={"marker": {"opacity": 0.5}}))
    return figure.update_layout(
        title=f"Speed-up over no pretraining ({pretrain_epochs} pretraining epochs; * bold = Holm p < 0.05, "
              f"n.s. = not significant)",
        xaxis={"title": "target language", "categoryorder": "array", "categoryarray": cols, "type": "category"},
        yaxis={"title": "pretraining", "categoryorder": "array", "categoryarray": rows[::-1], "type": "category"},
        height=160 + 66 * len(rows), clickmode="event+select", dragmode=False)


def cell_curves_figure(curves: pd.DataFrame, pretrain: str, target: str, pretrain_epochs: int,
                       threshold: float | None, conditions: list[str]) -> go.Figure:
    """Validation loss of one cell against "none" on the same target: mean over seeds, band = seed range.

    ``curves`` is long format: pretrain, target, seed, pretrain_epochs, step, val_loss.
    """
    figure = go.Figure()
    same = curves[curves["target"] == target]
    for condition, dose in dict.fromkeys([("none", 0), (pretrain, pretrain_epochs)]):
        part = same[(same["pretrain"] == condition) & ((condition == "none") | (same["pretrain_epochs"] == dose))]
        if part.empty:
            continue
        color = condition_color(condition, conditions)
        band = part.groupby("step")["val_loss"].agg(["mean", "min", "max", "count"]).reset_index()
        figure.add_scatter(x=pd.concat([band["step"], band["step"][::-1]]),
                           y=pd.concat([band["max"], band["min"][::-1]]), fill="toself", opacity=0.2,
                           line={"width": 0, "color": color}, hoverinfo="skip", showlegend=False)
        figure.add_scatter(x=band["step"], y=band["mean"], line={"color": color},
                           name=f"{condition} ({part['seed'].nunique()} seeds)")
    if threshold is not None:
        figure.update_layout(**_hline(threshold, "threshold"))
    return figure.update_layout(title=f"{pretrain} -> {target}: validation loss (mean over seeds, band = range)",
                                xaxis_title="target-language steps", yaxis_title="validation loss (MSE)",
                                height=380)


def latent_scatter_figure(points: pd.DataFrame, title: str) -> go.Figure:
    """Clips in 2-D (columns x, y, language, speaker), one trace per language in sorted order:
    :func:`latent_point_rows` maps a selected point back to its row of ``points``.

    Traces are given as dicts to one Figure call: 3x faster than add_scatter per language, which
    counts on a page that redraws it on every click.
    """
    traces = [{"type": "scatter", "x": part["x"].to_numpy(), "y": part["y"].to_numpy(), "mode": "markers",
               "name": language, "marker": {"color": PALETTE[i % len(PALETTE)], "size": 7},
               "text": part["speaker"].str[:12].to_numpy(),
               "hovertemplate": f"{language}<br>speaker %{{text}}<extra></extra>"}
              for i, (language, part) in enumerate(points.groupby("language", sort=True))]
    return go.Figure(data=traces, layout={"title": {"text": title}, "height": 520, "xaxis": {"title": {"text": "x"}},
                                          "yaxis": {"title": {"text": "y"}}})


def latent_point_rows(points: pd.DataFrame, selected: list[dict]) -> list[int]:
    """Positions in ``points`` of the points a click, box or lasso selected on
    :func:`latent_scatter_figure`, in selection order. Read from each point's trace and index
    (``curve_number``, ``point_index``): its ``customdata`` comes back as a list or, for a numpy
    array, as a typed array's dict, depending on the plotly version."""
    if not selected:  # every rerun without a selection asks: no grouping for nothing
        return []
    positions = [part.index.to_numpy() for _, part in points.reset_index(drop=True).groupby("language", sort=True)]
    return [int(positions[p["curve_number"]][p["point_index"]]) for p in selected]


def probe_bars_figure(probes: pd.DataFrame, task: str) -> go.Figure:
    """Balanced accuracy per condition and latent kind for one task, 95 % CI over seeds, chance dashed."""
    shown = probes[probes["task"] == task]
    bars = [{"type": "bar", "x": part["condition"].to_numpy(), "y": part["accuracy"].to_numpy(), "name": kind,
             "error_y": {"type": "data", "symmetric": False, "array": (part["ci_high"] - part["accuracy"]).to_numpy(),
                         "arrayminus": (part["accuracy"] - part["ci_low"]).to_numpy()}}
            for kind, part in shown.groupby("kind", sort=True)]
    layout = {"title": {"text": f"Balanced accuracy, {task} (95% CI over seeds; dashed: chance)"}, "barmode": "group",
              "yaxis": {"range": [0, 1], "title": {"text": "balanced accuracy"}}, "height": 380}
    return go.Figure(data=bars, layout={**layout, **(_hline(float(shown["chance"].iloc[0]), "chance") if len(shown)
                                                     else {})})
