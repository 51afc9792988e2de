"""The Identify page's first tab: the model, a sample clip to try, and the answer to a clip.

Not a page (ui/__init__.py lists the pages): ui/pages/identify.py calls these.
"""

import time

import numpy as np
import streamlit as st

from core import plots
from core.audio import to_wav_bytes
from core.identify import session
from core.identify.card import read_card
from core.identify.session import pick_clip, unheard_clips
from core.paths import portable

UPLOAD_TYPES = ["wav", "flac", "mp3", "ogg", "opus", "m4a", "webm"]
ANY = "any language"


@st.cache_resource(show_spinner=False)
def cached_card(path: str):
    """What the page shows about a model before it answers a clip (no weights, no torch)."""
    return read_card(path)


@st.cache_resource(show_spinner="Loading the model...")
def cached_identifier(path: str):
    # Imported here: the model's modules load torch (seconds), which the page needs only to answer a clip.
    from core.identify.predict import load_identifier

    return load_identifier(path)


def answer(source, path: str, languages: list[str], name: str) -> tuple[dict, np.ndarray]:
    """The model at ``path``'s answer to ``source`` (a path, an upload or a recording) and its decoded audio."""
    from core.identify.predict import identify  # as in cached_identifier

    return identify(source, cached_identifier(path), languages, name=name, return_audio=True)


@st.cache_data(show_spinner=False)
def cached_unheard_clips(path: str):
    card = cached_card(path)
    return unheard_clips(card.checkpoint.get("data", {}), card.labels)


def sample_picker(path: str) -> dict | None:
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


def show_answer(result: dict, clip, bundle, languages: list[str], name: str, truth: str | None = None) -> None:
    """The verdict (ok, uncertain, no speech), whether it is right when the clip's language is known (``truth``),
    the probabilities, the timeline, a player and the waveform."""
    rule = bundle.ok_rule
    if result["status"] == "no_speech":
        st.warning("No speech: this clip holds no speech the model could judge.")
    elif result["status"] == "uncertain":
        st.warning(f"Uncertain: no language stands out ({session.uncertain_reason(result['probabilities'], rule)}). "
                   f"Most likely {result['best_guess']}, but don't rely on it.")
    else:
        st.success(f"Language: **{result['language']}** ({result['probabilities'][result['language']]:.0%})")
    if truth and result["best_guess"]:
        st.caption(session.verdict(result, truth, languages))
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
