"""Identify: upload or record a clip and see which language the model hears, window by window."""

from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from core import DeepLanguageError
from core.identify import DEFAULT_CHECKPOINT, UNCERTAIN_BELOW, UNCERTAIN_MARGIN, identify, load_identifier
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
    probs = pd.DataFrame({"language": list(result["probabilities"]), "probability": list(result["probabilities"].values())})
    st.plotly_chart(px.bar(probs.sort_values("probability", ascending=False), x="language", y="probability",
                           range_y=[0, 1], title="Probability of each language"), key="identify_probs")
if len(result["windows"]) > 1:
    timeline = pd.DataFrame([{"start": w["start"], "end": w["end"], "language": w["language"],
                              "probability": w["probabilities"][w["language"]]} for w in result["windows"]])
    figure = px.scatter(timeline, x="start", y="language", color="language", size="probability",
                        hover_data=["end", "probability"], title="Language per 3 s window (every 1 s)",
                        category_orders={"language": sorted(languages)})
    st.plotly_chart(figure.update_xaxes(title="start of window (s)"), key="identify_timeline")

show_clip(clip, key="identify_clip", config=bundle.features)
st.caption(f"Model: {Path(bundle.path)} · {result['seconds']:.1f} s of audio · {len(result['windows'])} window(s)")
