"""Figures of a transfer-matrix study's summary (core.study.report.study_summary): the matrix,
curves by condition, dose-response, similarity vs speed-up, probes. Used by the HTML report and
available to the Convergence page; they take the summary's records and tables, never files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = ["matrix_figure", "condition_curves_figure", "dose_figure", "similarity_figure", "probes_figure"]

SIGNIFICANT = 0.05  # Holm-adjusted p below this marks a cell with "*"


def _fmt_ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci and None not in ci else "[n/a]"


def matrix_figure(cells: list[dict], pretrain_epochs: int | None = None) -> go.Figure:
    """Pretraining condition (rows) x target (columns); colour = log2 speed-up over none (0 = none's
    pace; red = faster), text = speed-up and "*" where the Holm-adjusted paired t-test p < 0.05; CI and
    both p-values (t-test, exact sign-flip) in the hover."""
    table = pd.DataFrame([c for c in cells if c["pretrain"] != "none"])
    if table.empty:
        return go.Figure().update_layout(title="no finished pretrained cell yet", height=200)
    dose = table["pretrain_epochs"].max() if pretrain_epochs is None else pretrain_epochs
    table = table[table["pretrain_epochs"] == dose]
    rows, cols = list(dict.fromkeys(table["pretrain"])), sorted(table["target"].unique())
    z = np.full((len(rows), len(cols)), np.nan)
    text = np.full(z.shape, "", dtype=object)
    hover = np.full(z.shape, "", dtype=object)
    for _, cell in table.iterrows():
        i, j = rows.index(cell["pretrain"]), cols.index(cell["target"])
        speedup = cell["speedup"]["mean"]
        if speedup is None:
            continue
        z[i, j] = math.log2(speedup)
        star = "*" if cell.get("p_t_holm") is not None and cell["p_t_holm"] < SIGNIFICANT else ""
        text[i, j] = f"{speedup:.2f}x{star}"
        hover[i, j] = (f"{cell['pretrain']} -> {cell['target']}<br>speed-up {speedup:.2f}x "
                       f"95% CI {_fmt_ci(cell['speedup']['ci95'])}<br>t-test p {_p(cell.get('p_t'))}, Holm "
                       f"{_p(cell.get('p_t_holm'))}; exact p {_p(cell['p'])}, Holm {_p(cell['p_holm'])}<br>"
                       f"d_z {_num(cell['effect_size'])}, {cell['n_runs']} seeds")
    limit = max(0.1, float(np.nanmax(np.abs(z)))) if np.isfinite(z).any() else 1.0
    figure = go.Figure(go.Heatmap(z=z, x=cols, y=rows, text=text, texttemplate="%{text}", customdata=hover,
                                  hovertemplate="%{customdata}<extra></extra>", colorscale="RdBu_r",
                                  zmin=-limit, zmax=limit, colorbar={"title": "log2 speed-up"}))
    return figure.update_layout(
        title=f"Speed-up over no pretraining, steps to threshold ({dose} pretraining epochs; * Holm-adjusted t-test p < 0.05)",
        xaxis_title="target language", yaxis_title="pretraining", yaxis_autorange="reversed",
        height=120 + 40 * len(rows))


def condition_curves_figure(curves: pd.DataFrame, target: str, threshold: float | None = None) -> go.Figure:
    """Validation loss against target steps for one target: mean over seeds per condition, band =
    the seeds' range. ``curves`` has pretrain, target, seed, pretrain_epochs, step, val_loss."""
    figure = go.Figure()
    shown = curves[curves["target"] == target]
    dose = shown.loc[shown["pretrain"] != "none", "pretrain_epochs"].max() if len(shown) else 0
    shown = shown[(shown["pretrain"] == "none") | (shown["pretrain_epochs"] == dose)]
    for condition, group in shown.groupby("pretrain", sort=False):
        band = group.groupby("step")["val_loss"].agg(["mean", "min", "max"]).reset_index()
        figure.add_scatter(x=pd.concat([band["step"], band["step"][::-1]]),
                           y=pd.concat([band["max"], band["min"][::-1]]), fill="toself", opacity=0.15,
                           line={"width": 0}, showlegend=False, hoverinfo="skip", legendgroup=condition)
        figure.add_scatter(x=band["step"], y=band["mean"], name=condition, legendgroup=condition)
    if threshold is not None:
        figure.add_hline(y=threshold, line_dash="dash", annotation_text="threshold")
    return figure.update_layout(title=f"Target {target}: validation loss (mean over seeds, band = range)",
                                xaxis_title="target-language steps", yaxis_title="validation loss", height=360)


def dose_figure(dose: list[dict]) -> go.Figure:
    """Speed-up over none (pooled over targets) against pretraining epochs, per condition, 95 % CI bars."""
    figure = go.Figure()
    table = pd.DataFrame(dose)
    for condition, group in (table.groupby("pretrain", sort=False) if len(table) else []):
        group = group.sort_values("pretrain_epochs")
        low, high = np.array(group["ci95"].tolist(), dtype=float).T
        figure.add_scatter(x=group["pretrain_epochs"], y=group["speedup"], name=condition, mode="lines+markers",
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
    figure.add_scatter(x=pairs["similarity"], y=y, mode="markers+text", text=pairs["language"] + "->" + pairs["target"],
                       textposition="top center", name="pair")
    if pairs["similarity"].nunique() > 1:
        slope, intercept = np.polyfit(pairs["similarity"], y, 1)
        xs = np.linspace(pairs["similarity"].min(), pairs["similarity"].max(), 2)
        figure.add_scatter(x=xs, y=slope * xs + intercept, mode="lines", name="least-squares fit")
    return figure.update_layout(
        title=f"{test['method']}: Spearman rho {_num(test.get('rho'))} (95% CI {_fmt_ci(test.get('ci95'))}), "
              f"Mantel p {_p(test.get('p'))}", xaxis_title=f"similarity ({test['method']}; higher = more similar)",
        yaxis_title="log2 speed-up over none", height=380, showlegend=False)


def probes_figure(probes: list[dict]) -> go.Figure:
    """Linear-probe balanced accuracy per condition (and latent kind) for each task, 95 % CI bars over
    seeds; each task's chance level as a dashed marker."""
    table = pd.DataFrame(probes)
    figure = go.Figure()
    for task, group in (table.groupby("task", sort=False) if len(table) else []):
        label = group["condition"] + " (" + group["kind"] + ")"
        figure.add_bar(x=label, y=group["accuracy"], name=task, offsetgroup=task, error_y={
            "type": "data", "symmetric": False, "array": group["ci_high"] - group["accuracy"],
            "arrayminus": group["accuracy"] - group["ci_low"]})
        figure.add_scatter(x=label, y=group["chance"], mode="markers", offsetgroup=task, name=f"chance: {task}",
                           marker={"symbol": "line-ew-open", "size": 22, "line": {"width": 2}})
    return figure.update_layout(title="Linear probes: balanced accuracy (95% CI over seeds), chance marked",
                                yaxis_title="balanced accuracy", barmode="group", scattermode="group",
                                height=400, yaxis_range=[0, 1])


def _p(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def _num(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.2f}"
