"""What several pages share: the dataset picker, cached loaders and the clip viewer.

All of the app's caching lives here: arrays and tables under ``st.cache_data``, models
under ``st.cache_resource``. Pages call these, and these call ``core``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core import DeepLanguageError, audio, plots
from core.data import datasets, views
from core.audio import features
from core.paths import CV_SAMPLE_DIR, DEMO_CORPUS_DIR
from core.data.demo_corpus import build_demo_corpus as build, is_demo_corpus

TEXT_CHARS = 300  # dataset text shown at once; a 1 MB sentence is one click away, not in the page
CV_SAMPLE = "Common Voice sample (real speech, 12 languages)"
DEMO, CUSTOM = "Demo corpus (synthetic speech, built here)", "A folder on this machine"


def dataset_picker(key: str = "dataset") -> Path | None:
    """Sidebar choice of a dataset, the embedded real sample first; returns its folder, or None after
    telling the user what's missing."""
    choices = ([CV_SAMPLE] if CV_SAMPLE_DIR.exists() else []) + [DEMO, CUSTOM]
    choice = st.sidebar.selectbox("Dataset", choices, key=f"{key}_choice")
    if choice == CV_SAMPLE:
        return CV_SAMPLE_DIR
    if choice == DEMO:
        if is_demo_corpus(DEMO_CORPUS_DIR):
            return DEMO_CORPUS_DIR
        st.info("The demo corpus has not been built yet (about 30 s).")
        if st.button("Build the demo corpus", key=f"{key}_build"):
            bar = st.progress(0.0, text="Synthesizing the demo corpus...")
            build(on_progress=lambda done, total, **_: bar.progress(done / max(total, 1),
                                                                      text=f"Synthesizing: {done}/{total}"))
            st.rerun()
        return None
    typed = st.sidebar.text_input("Dataset folder", key=f"{key}_path",
                                  placeholder="/data/cv-corpus/es or /data/my-clips")
    if not typed:
        st.info("Type the path of a Common Voice download (<locale>/clips + validated.tsv) "
                "or of a folder holding one sub-folder of clips per language.")
        return None
    path = Path(typed).expanduser()
    if not path.is_dir():
        st.error(f"{path} is not a folder on this machine. Check the path.")
        return None
    return path


@st.cache_data(show_spinner="Reading the dataset...")
def load_manifest(folder: str) -> pd.DataFrame:
    return datasets.read_dataset(folder)


# Figures are cached as resources, never mutated (st.plotly_chart only reads them): st.cache_data would hand back
# an unpickled copy, which plotly validates again, costing nearly what drawing it does.
@st.cache_resource(show_spinner=False)
def dataset_overview(folder: str) -> tuple[pd.DataFrame, dict, str]:
    """The Data page's table, figures and short-clip note: drawn once per dataset, not on every rerun (0.7 s)."""
    manifest = load_manifest(folder)
    return (views.summarize(manifest), plots.language_stats_figures(views.language_stats(manifest)),
            views.short_clips_note(manifest))


def manifest_or_stop(folder: Path) -> pd.DataFrame:
    """The dataset's manifest, or a clear message and a stopped page."""
    try:
        return load_manifest(str(folder))
    except DeepLanguageError as error:
        st.error(str(error))
        st.stop()


@st.cache_data(max_entries=64)
def load_clip(source: str | bytes, name: str | None = None) -> np.ndarray:
    return audio.load_audio(source, name=name)


@st.cache_data(max_entries=64)
def mel_pair(clip: np.ndarray, config: features.FeatureConfig = features.FeatureConfig()):
    return features.log_mel_pair(clip, config)


@st.cache_data(max_entries=64)
def wav_pair(clip: np.ndarray, cutoff_hz: float) -> tuple[bytes, bytes]:
    """The clip as wav bytes, full band and low-pass: filtered once, not on every rerun."""
    return audio.to_wav_bytes(clip), audio.to_wav_bytes(audio.lowpass(clip, cutoff_hz))


@st.cache_resource(max_entries=64, show_spinner=False)  # as dataset_overview's
def clip_figures(clip: np.ndarray, config: features.FeatureConfig = features.FeatureConfig()) -> list:
    """The clip's waveform and its full-band and low-pass log-mels, as figures (built once per clip)."""
    full, low = mel_pair(clip, config)
    fps, cutoff = config.frames_per_second, config.lowpass_hz
    return [plots.waveform_figure(clip), plots.mel_figure(full, fps, "Log-mel, full band"),
            plots.mel_figure(low, fps, f"Log-mel, low-pass < {cutoff:.0f} Hz")]


@st.cache_resource(max_entries=64, show_spinner=False)  # as dataset_overview's
def spectra_figure(clip: np.ndarray) -> object:
    """The clip's spectrum, full band and through the prenatal filters."""
    return plots.prenatal_spectra_figure(features.filtered_spectra(clip), features.LOWPASS_HZ)


def show_clip(clip: np.ndarray, key: str, config: features.FeatureConfig = features.FeatureConfig()) -> None:
    """Player, waveform, and the full-band and low-pass log-mels side by side."""
    wave, full, low = clip_figures(clip, config)
    full_wav, low_wav = wav_pair(clip, config.lowpass_hz)
    play_full, play_low = st.columns(2)
    play_full.audio(full_wav, format="audio/wav")
    play_full.caption("Full band")
    play_low.audio(low_wav, format="audio/wav")
    play_low.caption(f"Low-pass below {config.lowpass_hz:.0f} Hz: what low-pass pretraining hears")
    st.plotly_chart(wave, key=f"{key}_wave")
    left, right = st.columns(2)
    left.plotly_chart(full, key=f"{key}_full", theme=None)
    right.plotly_chart(low, key=f"{key}_low", theme=None)


def show_text(text) -> None:
    """Dataset text (a sentence, a speaker id, a path) as plain text, never markdown: a sentence holding a
    markdown image would make the browser fetch it. Past TEXT_CHARS it is cut, the rest behind an expander."""
    text = str(text)
    st.text(text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + " ...")
    if len(text) > TEXT_CHARS:
        with st.expander(f"Full text ({len(text):,} characters)"):
            st.text(text)
