"""Figures of the identifier: one clip's distribution and per-window timeline, its reliability, its learning curve."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go

__all__ = ["probability_figure", "timeline_figure", "reliability_figure", "learning_curve_figure"]

TIMELINE_BASE_HEIGHT = 134  # px for the title, its key and the time axis
TIMELINE_ROW_HEIGHT = 36  # px per language row


def probability_figure(probabilities: dict[str, float], title: str = "Probability of each language") -> go.Figure:
    """One clip's whole distribution, most likely language first."""
    items = sorted(probabilities.items(), key=lambda kv: -kv[1])
    fig = px.bar(x=[k for k, _ in items], y=[v for _, v in items], labels={"x": "language", "y": "probability"},
                 title=title, range_y=[0, 1])
    fig.update_layout(height=300)
    return fig


# What a reader can't guess from the timeline's dots (said under its title).
TIMELINE_KEY = ("a dot: the language a window most likely holds; its size: that probability (larger = surer); "
                "its colour: the language, one per row")


def timeline_figure(windows: list[dict], languages: list[str], window_seconds: float, hop_seconds: float
                    ) -> go.Figure:
    """The most likely language of each window of a clip (``identify``'s ``windows``), sized by its probability.

    One row per language that some window chose (not one per allowed language), and a height that
    grows with those rows, so a short clip's two or three windows make a small figure, not an empty one.
    Each point sits at its window's centre (s); hovering shows the window's span and probability.
    """
    chosen = {w["language"] for w in windows}
    rows = [lang for lang in languages if lang in chosen] + sorted(chosen - set(languages))
    fig = go.Figure()
    for lang in rows:
        mine = [w for w in windows if w["language"] == lang]
        probability = [w["probabilities"][lang] for w in mine]
        fig.add_trace(go.Scatter(
            x=[(w["start"] + w["end"]) / 2 for w in mine], y=[lang] * len(mine), mode="markers", name=lang,
            marker={"size": [6 + 14 * p for p in probability]},
            customdata=[[w["start"], w["end"], p] for w, p in zip(mine, probability)],
            hovertemplate="%{customdata[0]:.1f}-%{customdata[1]:.1f} s: %{y} (%{customdata[2]:.0%})<extra></extra>"))
    end = max((w["end"] for w in windows), default=window_seconds)
    fig.update_layout(title={"text": f"Language per {window_seconds:g} s window (every {hop_seconds:g} s)",
                             "subtitle": {"text": TIMELINE_KEY}},
                      height=TIMELINE_BASE_HEIGHT + TIMELINE_ROW_HEIGHT * len(rows), showlegend=False,
                      margin={"l": 40, "r": 10, "t": 64, "b": 40})
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=rows, title="language")
    return fig.update_xaxes(title="time in the clip (s)", range=[0, end])


def reliability_figure(report: dict) -> go.Figure:
    """How often the top answer is right against how sure the model said it was (``calibration_report``'s bins).

    One point per confidence bin (its mean top probability across, its accuracy up, sized by its
    clip count), after calibration and, when the report has them, before; the diagonal is perfect calibration.
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                             line={"dash": "dot", "color": "gray"}))
    series = [("before calibration", report.get("bins_before"), report.get("ece_before")),
              ("calibrated", report.get("bins"), report.get("ece_after"))]
    for name, bins, ece in series:
        if not bins:
            continue
        fig.add_trace(go.Scatter(
            x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers",
            name=f"{name} (ECE {ece:.1%})" if ece is not None else name,
            marker={"size": [6 + 14 * (b["count"] / max(c["count"] for c in bins)) ** 0.5 for b in bins]},
            customdata=[b["count"] for b in bins],
            hovertemplate="said %{x:.0%}, right %{y:.0%} of %{customdata} clips<extra></extra>"))
    fig.update_layout(title="Reliability: how often the top answer is right, by how sure the model was",
                      height=360, legend={"orientation": "h", "y": -0.25}, margin={"l": 40, "r": 10, "t": 40, "b": 40})
    fig.update_xaxes(title="top probability (confidence)", range=[0, 1], tickformat=".0%")
    return fig.update_yaxes(title="fraction right", range=[0, 1], tickformat=".0%")


def learning_curve_figure(curve: dict, target: float = 0.8, baseline: dict | None = None) -> go.Figure:
    """Accuracy against minutes of speech per language (``learning_curve.json``): measured points with their
    95 % CI band, the fitted power law ``error = b * minutes ** -c`` extrapolated, chance and the target line;
    the same for the answers restricted to a subset of languages (``restricted``) when the curve has them, and for
    a ``baseline`` recipe's curve (the from-scratch model beside a pretrained one)."""
    needed = curve.get("minutes_for_80")
    # Far enough to meet the target line when the law does within a few hundredfold of the data, no further.
    minutes = curve["minutes"]
    end = max(max(minutes) * 4, min(needed * 1.3, max(minutes) * 300) if needed else 0)
    fig = go.Figure()
    _add_curve(fig, curve, f"{len(curve['languages'])} languages", (31, 119, 180), end)
    restricted = curve.get("restricted")
    if restricted:
        _add_curve(fig, restricted, f"{len(restricted['languages'])} of them ({', '.join(restricted['languages'])})",
                   (255, 127, 14), end)
        fig.add_hline(y=restricted["chance"], line={"dash": "dot", "color": "rgb(255,127,14)"},
                      annotation_text=f"chance {restricted['chance']:.0%}", annotation_position="top right")
    if baseline:
        _add_curve(fig, baseline, f"from scratch (GMM), {len(baseline['languages'])} languages", (214, 39, 40), end)
    fig.add_hline(y=curve["chance"], line={"dash": "dot", "color": "gray"},
                  annotation_text=f"chance {curve['chance']:.0%}", annotation_position="bottom right")
    fig.add_hline(y=target, line={"dash": "dot", "color": "green"},
                  annotation_text=f"{target:.0%}" + (f": about {needed:.0f} min per language" if needed else "")
                  + (" (beyond the chart)" if needed and needed > end else ""),
                  annotation_position="top left")
    # The legend (three rows for two curves) goes under the axis title, not over it.
    fig.update_layout(title="How much speech per language buys how much accuracy (band: 95 % CI)",
                      height=480 if restricted else 420, legend={"orientation": "h", "y": -0.3, "yanchor": "top"},
                      margin={"l": 40, "r": 10, "t": 40, "b": 100})
    fig.update_xaxes(title="minutes of speech per language (log scale)", type="log")
    return fig.update_yaxes(title="accuracy on unseen speakers", range=[0, 1], tickformat=".0%")


def _add_curve(fig: go.Figure, curve: dict, name: str, rgb: tuple[int, int, int], end: float) -> None:
    """One measured curve, its CI band and its extrapolated power law, in one colour."""
    minutes, colour = curve["minutes"], "rgb({},{},{})".format(*rgb)
    fig.add_trace(go.Scatter(x=list(minutes) + list(minutes)[::-1], y=list(curve["ci_high"]) + list(curve["ci_low"])[::-1],
                             mode="lines", fill="toself", line={"width": 0}, fillcolor="rgba({},{},{},0.2)".format(*rgb),
                             name=f"{name}: 95 % CI", hoverinfo="skip", showlegend=False))  # the caption says
    fig.add_trace(go.Scatter(x=minutes, y=curve["accuracy"], mode="lines+markers", line={"color": colour},
                             name=f"{name}: measured (speaker-grouped CV)"))
    law = curve.get("power_law") or {}
    if law.get("b") is not None:
        grid = [min(minutes) * (end / min(minutes)) ** (i / 60) for i in range(61)]
        fig.add_trace(go.Scatter(x=grid, y=[max(0.0, 1 - law["b"] * m ** -law["c"]) for m in grid], mode="lines",
                                 name=f"{name}: power law, extrapolated", line={"dash": "dash", "color": colour}))
