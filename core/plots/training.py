"""Figures of training runs: per-epoch curves of one run or of several (Train page)."""

from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

__all__ = ["COMPARE_METRICS", "CURVES", "curves_figure"]

# The two panels of a run's curves: title -> the metrics drawn in it (names of metrics.jsonl).
CURVES = {"loss": ["train_loss", "loss", "val_loss"],
          "accuracy": ["train_accuracy", "val_accuracy", "val_balanced_accuracy"]}
COMPARE_METRICS = ["val_balanced_accuracy", "val_accuracy", "val_loss", "train_loss", "train_accuracy"]


def curves_figure(curves: pd.DataFrame, color: str = "metric", title: str = "",
                  chance: float | None = None) -> go.Figure:
    """Lines of ``value`` per ``epoch`` (long form: run, epoch, metric, value), one per ``color``;
    ``chance`` (an accuracy's chance level, 1 / classes) is drawn dashed when given.

    Epochs are whole numbers: the x axis ticks only at integers (at most about ten ticks).
    """
    fig = px.line(curves, x="epoch", y="value", color=color, markers=True, title=title)
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dash", line_color="#444", annotation_text=f"chance {chance:.0%}",
                      annotation_position="bottom right")
    last = int(curves["epoch"].max()) if len(curves) else 1
    return fig.update_xaxes(tickmode="linear", tick0=1, dtick=max(1, math.ceil(last / 10)), tickformat="d")
