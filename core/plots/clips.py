"""Figures of clips and datasets: waveform, log-mel, per-language counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from core.audio.decode import SAMPLE_RATE

__all__ = ["waveform_figure", "mel_figure", "language_stats_figures", "prenatal_spectra_figure"]

MAX_WAVEFORM_POINTS = 4000  # a min/max envelope this wide looks the same as every sample


def waveform_figure(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, title: str = "Waveform") -> go.Figure:
    """Min/max envelope of a clip against time (s), light enough for minutes of audio."""
    n_bins = min(MAX_WAVEFORM_POINTS, max(1, len(audio)))
    edges = np.linspace(0, len(audio), n_bins + 1).astype(int)
    chunks = [audio[a:b] if b > a else audio[a:a + 1] for a, b in zip(edges[:-1], edges[1:])]
    time = edges[:-1] / sample_rate
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=time, y=[c.max() for c in chunks], line={"width": 0.8}, name="max"))
    fig.add_trace(go.Scatter(x=time, y=[c.min() for c in chunks], line={"width": 0.8}, name="min",
                             fill="tonexty"))
    fig.update_layout(title=title, xaxis_title="time (s)", yaxis_title="amplitude", showlegend=False,
                      height=220, margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return fig


def mel_figure(features: np.ndarray, frames_per_second: float = 100.0, title: str = "Log-mel") -> go.Figure:
    """A ``(n_mels, n_frames)`` log-mel as a heatmap: time (s) across, mel band up."""
    time = np.arange(features.shape[1]) / frames_per_second
    fig = go.Figure(go.Heatmap(z=features, x=time, colorscale="Magma", colorbar={"title": "log10"},
                               zmin=float(features.min()), zmax=float(features.max())))
    fig.update_layout(title=title, xaxis_title="time (s)", yaxis_title="mel band", height=300,
                      margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return fig


def language_stats_figures(stats: dict[str, pd.DataFrame]) -> dict[str, go.Figure]:
    """Clips and speakers per language, clips per speaker, and durations: the Data page's plots, drawn from
    ``core.data.views.language_stats`` (a few numbers per language, whatever the number of clips)."""
    return {
        "languages": px.bar(stats["counts"], x="language", y="n", color="count of", barmode="group",
                            title="Clips and speakers per language"),
        "speakers": _box_figure(stats["speakers"], "Clips per speaker (box over each language's speakers)", "clips"),
        # One box per language: a dozen overlaid histograms would hide each other.
        "durations": _box_figure(stats["durations"], "Clip durations (s) per language", "seconds"),
    }


def _box_figure(boxes: pd.DataFrame, title: str, y_title: str) -> go.Figure:
    """Boxes from precomputed statistics (core.data.views.box_stats): quartiles and 1.5 IQR whiskers."""
    fig = go.Figure(go.Box(x=boxes["group"], q1=boxes["q1"], median=boxes["median"], q3=boxes["q3"],
                           lowerfence=boxes["lower"], upperfence=boxes["upper"], name="", showlegend=False,
                           hovertext=[f"{n} values" for n in boxes["n"]]))
    fig.update_layout(title=title, xaxis_title="language", yaxis_title=y_title)
    return fig


def prenatal_spectra_figure(spectra: dict[str, np.ndarray], cutoff_hz: float) -> go.Figure:
    """One clip's average spectrum full band, low-pass and in utero (core.audio.features.filtered_spectra)
    on one chart: what the study's pretraining conditions hear, in dB against frequency (Hz, log axis)."""
    names = {"full band": "full band", "butterworth": f"Butterworth low-pass < {cutoff_hz:.0f} Hz",
             "in utero": "in utero (Cruz Blandón et al. 2025)"}
    freqs = spectra["freqs_hz"][1:]  # no 0 Hz on a log axis
    fig = go.Figure([go.Scatter(x=freqs, y=spectra[key][1:], name=label, line={"width": 1.2})
                     for key, label in names.items()])
    fig.update_layout(title="What a fetus is modelled to hear: this clip's spectrum through each filter",
                      xaxis={"title": "frequency (Hz)", "type": "log"},
                      yaxis={"title": "power (dB below the full band's peak)", "range": [-120, 5]},
                      height=320, margin={"l": 40, "r": 10, "t": 40, "b": 40}, legend={"orientation": "h"})
    return fig
