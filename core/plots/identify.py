"""Figures of the identifier: one clip's distribution and its per-window timeline."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go

__all__ = ["probability_figure", "timeline_figure"]

TIMELINE_BASE_HEIGHT = 110  # px for the title and the time axis
TIMELINE_ROW_HEIGHT = 36  # px per language row


def probability_figure(probabilities: dict[str, float], title: str = "Probability of each language") -> go.Figure:
    """One clip's whole distribution, most likely language first."""
    items = sorted(probabilities.items(), key=lambda kv: -kv[1])
    fig = px.bar(x=[k for k, _ in items], y=[v for _, v in items], labels={"x": "language", "y": "probability"},
                 title=title, range_y=[0, 1])
    fig.update_layout(height=300)
    return fig


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
    fig.update_layout(title=f"Language per {window_seconds:g} s window (every {hop_seconds:g} s)",
                      height=TIMELINE_BASE_HEIGHT + TIMELINE_ROW_HEIGHT * len(rows), showlegend=False,
                      margin={"l": 40, "r": 10, "t": 40, "b": 40})
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=rows, title="language")
    return fig.update_xaxes(title="time in the clip (s)", range=[0, end])
