"""Figures of a transfer-matrix study's summary (core.study.report.study_summary): every condition's
curves on one target, dose-response, similarity vs speed-up. Used by the HTML report and the
Convergence page; the matrix and the probes are core.plots.study's figures. They take the summary's
records and tables, never files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.plots.study import condition_color

__all__ = ["condition_curves_figure", "dose_figure", "similarity_figure"]


def _fmt_ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci and None not in ci else "[n/a]"


def condition_curves_figure(curves: pd.DataFrame, target: str, threshold: float | None = None) -> go.Figure:
    """Validation loss against target steps for one target: mean over seeds per condition, band =
    the seeds' range. ``curves`` has pretrain, target, seed, pretrain_epochs, step, val_loss."""
    figure = go.Figure()
    shown = curves[curves["target"] == target]
    dose = shown.loc[shown["pretrain"] != "none", "pretrain_epochs"].max() if len(shown) else 0
    shown = shown[(shown["pretrain"] == "none") | (shown["pretrain_epochs"] == dose)]
    conditions = list(dict.fromkeys(curves["pretrain"]))
    for condition, group in shown.groupby("pretrain", sort=False):
        color = condition_color(condition, conditions)
        band = group.groupby("step")["val_loss"].agg(["mean", "min", "max"]).reset_index()
        figure.add_scatter(x=pd.concat([band["step"], band["step"][::-1]]),
                           y=pd.concat([band["max"], band["min"][::-1]]), fill="toself", opacity=0.15,
                           line={"width": 0, "color": color}, showlegend=False, hoverinfo="skip",
                           legendgroup=condition)
        figure.add_scatter(x=band["step"], y=band["mean"], name=condition, legendgroup=condition,
                           line={"color": color})
    if threshold is not None:
        figure.add_hline(y=threshold, line_dash="dash", annotation_text="threshold")
    return figure.update_layout(title=f"Target {target}: validation loss (mean over seeds, band = range)",
                                xaxis_title="target-language steps", yaxis_title="validation loss", height=400,
                                legend={"orientation": "h", "y": -0.25})  # every condition visible, no scrolling


def dose_figure(dose: list[dict]) -> go.Figure:
    """Speed-up over none (pooled over targets) against pretraining epochs, per condition, 95 % CI bars."""
    figure = go.Figure()
    table = pd.DataFrame(dose)
    conditions = list(dict.fromkeys(table["pretrain"])) if len(table) else []
    for condition, group in (table.groupby("pretrain", sort=False) if len(table) else []):
        group = group.sort_values("pretrain_epochs")
        low, high = np.array(group["ci95"].tolist(), dtype=float).T
        figure.add_scatter(x=group["pretrain_epochs"], y=group["speedup"], name=condition, mode="lines+markers",
                           line={"color": condition_color(condition, ["none", *conditions])},
                           error_y={"type": "data", "symmetric": False, "array": high - group["speedup"],
                                    "arrayminus": group["speedup"] - low})
    figure.add_hline(y=1.0, line_dash="dot", annotation_text="no pretraining (null)")
    return figure.update_layout(title="Dose-response: speed-up against pretraining epochs (95% CI over seeds)",
                                xaxis_title="pretraining epochs", yaxis_title="speed-up (x)", yaxis_type="log",
                                height=360)


def similarity_figure(test: dict) -> go.Figure:
    """Similarity of (pretraining language, target) vs its mean log2 speed-up, with a least-squares line;
    rho, Mantel p and the CI in the title."""
    pairs = pd.DataFrame(test.get("pairs") or [])
    figure = go.Figure()
    if pairs.empty:
        return figure.update_layout(title=f"{test.get('method')}: {test.get('reason', 'no pairs')}", height=200)
    y = pairs["log_speedup"] / math.log(2)
    names = pairs["language"] + "->" + pairs["target"]
    # Past a dozen pairs the labels pile up on a few similarity values: name them on hover only.
    figure.add_scatter(x=pairs["similarity"], y=y, mode="markers+text" if len(pairs) <= 12 else "markers",
                       text=names, textposition="top center", name="pair", hovertext=names,
                       hovertemplate="%{hovertext}<br>similarity %{x:.2f}<br>log2 speed-up %{y:.2f}<extra></extra>")
    if pairs["similarity"].nunique() > 1:
        slope, intercept = np.polyfit(pairs["similarity"], y, 1)
        xs = np.linspace(pairs["similarity"].min(), pairs["similarity"].max(), 2)
        figure.add_scatter(x=xs, y=slope * xs + intercept, mode="lines", name="least-squares fit")
    return figure.update_layout(
        title=f"{test['method']}: rho {_num(test.get('rho'))}, 95% CI {_fmt_ci(test.get('ci95'))}, "
              f"Mantel p {_p(test.get('p'))}, Holm {_p(test.get('p_holm'))}", xaxis_title=f"similarity ({test['method']}; higher = more similar)",
        yaxis_title="log2 speed-up over none", height=380, showlegend=False)


def _p(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def _num(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.2f}"
