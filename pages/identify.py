"""Identify: upload or record a clip and see which language the model hears, window by window.

Two more tabs: how far to trust the chosen model (reliability, "ok", learning curve) and teaching it a language.
"""

import time
from pathlib import Path

import numpy as np
import streamlit as st

from core import DeepLanguageError, plots
from core.audio import load_audio, to_wav_bytes
from core.audio.decode import MAX_SECONDS
from core.identify.predict import identify, load_identifier
from core.identify.session import latest_input, model_choices, pick_clip, unheard_clips
from core.paths import portable
from pages.identify_tabs import UPLOAD_TYPES, show_teach, show_trust

INPUT_NAMES = {"upload": "the uploaded file", "recording": "the recording", "sample": "the sample clip"}
ANY = "any language"


@st.cache_resource(show_spinner="Loading the model...")
def cached_identifier(path: str):
    return load_identifier(path)


@st.cache_data(show_spinner=False)
def cached_unheard_clips(path: str):
    bundle = cached_identifier(path)
    return unheard_clips(bundle.checkpoint.get("data", {}), bundle.labels)


def sample_picker(path: str, labels: list[str]) -> dict | None:
    """"Try a clip": a clip of the embedded sample from a speaker the model never heard, or None."""
    clips = cached_unheard_clips(path)
    if clips.empty:
        return None
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    language = left.selectbox("...or try a clip of a speaker this model never heard (embedded Common Voice sample)",
                              [ANY, *sorted(clips["language"].unique())], key="identify_sample_language")
    if right.button("Try a clip", key="identify_sample_button"):
        picks = st.session_state.get("identify_sample_picks", 0) + 1
        rng = np.random.default_rng([picks, int(time.time())])
        st.session_state["identify_sample"] = {**pick_clip(clips, None if language == ANY else language, rng),
                                               "id": f"{picks}:{path}"}
        st.session_state["identify_sample_picks"] = picks
    sample = st.session_state.get("identify_sample")
    return sample if sample and sample["id"].endswith(path) else None  # a pick belongs to the model it was made for


models = model_choices()
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
# One filter per model (its key names the model): a new model starts with all of its own languages
# instead of inheriting the last model's choice, which may not even be among its labels.
languages = st.sidebar.multiselect("Languages to choose among", bundle.labels, default=bundle.labels,
                                   key=f"identify_languages:{models[choice]}")
st.sidebar.caption(f"{bundle.checkpoint['model']['kind']} · languages {', '.join(bundle.labels)}")
if bundle.trained_on.get("synthetic"):
    st.warning(f"This model was trained on synthetic speech (the espeak demo corpus, {bundle.trained_on['data_dir']})."
               " It answers real voices at about chance level: use it to try the page, not to identify real speech.")
clip_tab, trust_tab, teach_tab = st.tabs(["Identify a clip", "How far to trust it", "Teach it a language"])
with trust_tab:
    show_trust(bundle)
with teach_tab:
    show_teach(models[choice], bundle.labels)

with clip_tab:  # last: its guards stop the script
    limit_mb = st.get_option("server.maxUploadSize")
    upload = st.file_uploader(f"Upload a clip (up to {limit_mb} MB and {MAX_SECONDS / 60:g} minutes)",
                              type=UPLOAD_TYPES, key="identify_upload")
    recording = st.audio_input("...or record one", key="identify_record")
    sample = sample_picker(models[choice], bundle.labels)
    inputs = {"upload": upload, "recording": recording, "sample": sample}
    ids = {key: (None if value is None else value["id"] if key == "sample" else value.file_id)
           for key, value in inputs.items()}
    answered = latest_input(ids, st.session_state.get("identify_seen", {}), st.session_state.get("identify_answered"))
    # Only the ids are remembered between reruns, never the audio.
    st.session_state["identify_seen"], st.session_state["identify_answered"] = ids, answered
    if answered is None:
        st.info("Upload a clip, record one or try one from the sample to hear which language it is.")
        st.stop()
    if not languages:
        st.info("Choose at least one language in the sidebar.")
        st.stop()
    source = inputs[answered]
    if sum(value is not None for value in ids.values()) > 1:
        st.caption(f"Answering {INPUT_NAMES[answered]}, the newest of your inputs.")
    if answered == "sample":
        st.caption(f"Sample clip: **{source['language']}**, said by a speaker this model never trained on"
                   + (f": \u201c{source['sentence']}\u201d" if source.get("sentence") else "")
                   + f" ({portable(source['path'])}, CC0).")
        source = source["path"]
        name = portable(source)
    else:
        name = getattr(source, "name", None) or "recording.wav"
    try:
        clip = load_audio(source, bundle.features.sample_rate, name=name)
        result = identify(clip, bundle, languages, name=name)
    except DeepLanguageError as error:
        st.error(str(error))
        st.stop()

    rule = bundle.ok_rule
    if result["status"] == "no_speech":
        st.warning("No speech: this clip holds no speech the model could judge.")
    elif result["status"] == "uncertain":
        st.warning(f"Uncertain: no language stands out (top probability below {rule['min_probability']:.0%}, or "
                   f"within {rule['min_margin']:.0%} of the runner-up). Most likely {result['best_guess']}, but "
                   "don't rely on it.")
    else:
        st.success(f"Language: **{result['language']}** ({result['probabilities'][result['language']]:.0%})")
    if result["probabilities"]:
        st.plotly_chart(plots.probability_figure(result["probabilities"]), key="identify_probs")
    if len(result["windows"]) > 1:  # one window's point would only repeat the bars above
        fps = bundle.features.frames_per_second
        st.plotly_chart(plots.timeline_figure(result["windows"], languages, bundle.window / fps, bundle.hop / fps),
                        key="identify_timeline")
    # Player and waveform only, built for this answer and not cached: nothing of an upload outlives the
    # rerun that answers it (the log-mels are on the Data page).
    st.audio(to_wav_bytes(clip, bundle.features.sample_rate), format="audio/wav")
    st.plotly_chart(plots.waveform_figure(clip, bundle.features.sample_rate), key="identify_wave")
    st.caption(f"Answered: {name} · {result['seconds']:.1f} s of audio · {len(result['windows'])} window(s) · "
               f"model {portable(bundle.path)}")
