"""Identify: upload or record a clip and see which language the model hears, window by window."""

from pathlib import Path

import streamlit as st

from core import DeepLanguageError, plots
from core.identify.predict import DEFAULT_CHECKPOINT, UNCERTAIN_BELOW, UNCERTAIN_MARGIN, identify, load_identifier
from core.runs import list_runs
from pages.common import load_clip, show_clip

UPLOAD_TYPES = ["wav", "flac", "mp3", "ogg", "opus", "m4a", "webm"]
SHIPPED = "Shipped default model"


@st.cache_resource(show_spinner="Loading the model...")
def cached_identifier(path: str):
    return load_identifier(path)


# Sidebar: model and languages.
models = ({SHIPPED: str(DEFAULT_CHECKPOINT)} if DEFAULT_CHECKPOINT.exists() else {}) | {
    f"Run {run.name}": str(run / "best.pt") for run in list_runs() if (run / "best.pt").exists()}
st.title("Identify a language")
if not models:
    st.info("No model yet: train one with `python -m core train --data DIR` (or on the Train page).")
    st.stop()
choice = st.sidebar.selectbox("Model", list(models), key="identify_model")
try:
    bundle = cached_identifier(models[choice])
except DeepLanguageError as error:
    st.error(str(error))
    st.stop()
languages = st.sidebar.multiselect("Languages to choose among", bundle.labels, default=bundle.labels,
                                   key="identify_languages")
st.sidebar.caption(f"{bundle.checkpoint['model']['kind']} · languages {', '.join(bundle.labels)}")

upload = st.file_uploader("Upload a clip", type=UPLOAD_TYPES, key="identify_upload")
recording = st.audio_input("...or record one", key="identify_record")
source = upload or recording
if source is None:
    st.info("Upload a clip or record one to hear which language it is.")
    st.stop()
if not languages:
    st.info("Choose at least one language in the sidebar.")
    st.stop()

name = getattr(source, "name", None) or "recording.wav"
try:
    clip = load_clip(source.getvalue(), name)
    result = identify(clip, bundle, languages, name=name)
except DeepLanguageError as error:
    st.error(str(error))
    st.stop()

if result["status"] == "no_speech":
    st.warning("No speech: this clip holds no speech the model could judge.")
elif result["status"] == "uncertain":
    st.warning(f"Uncertain: no language stands out (top probability below {UNCERTAIN_BELOW:.0%}, or within "
               f"{UNCERTAIN_MARGIN:.0%} of the runner-up). Most likely {result['best_guess']}, but don't rely on it.")
else:
    st.success(f"Language: **{result['language']}** ({result['probabilities'][result['language']]:.0%})")

if result["probabilities"]:
    st.plotly_chart(plots.probability_figure(result["probabilities"]), key="identify_probs")
if len(result["windows"]) > 1:
    fps = bundle.features.frames_per_second
    st.plotly_chart(plots.timeline_figure(result["windows"], languages, bundle.window / fps, bundle.hop / fps),
                    key="identify_timeline")

show_clip(clip, key="identify_clip", config=bundle.features)
st.caption(f"Model: {Path(bundle.path)} · {result['seconds']:.1f} s of audio · {len(result['windows'])} window(s)")
