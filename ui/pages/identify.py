"""Identify: upload or record a clip and see which language the model hears, window by window.

Two more tabs: how far to trust the chosen model (reliability, "ok", learning curve) and teaching it a language.
"""

import streamlit as st

from core import DeepLanguageError
from core.audio.decode import MAX_SECONDS
from core.identify import session
from core.identify.session import latest_input, model_choices
from core.paths import portable
from ui.identify_clip import UPLOAD_TYPES, answer, cached_card, sample_picker, show_answer
from ui.identify_teach import show_teach
from ui.identify_trust import show_trust

INPUT_NAMES = {"upload": "the uploaded file", "recording": "the recording", "sample": "the sample clip"}

models = model_choices()
st.title("Identify a language")
if not models:
    st.info("No model yet: train one with `python -m core train --data DIR` (or on the Train page).")
    st.stop()
choice = st.sidebar.selectbox("Model", list(models), key="identify_model")
try:
    card = cached_card(models[choice])  # the model itself loads when it answers a clip
except DeepLanguageError as error:
    st.error(str(error))
    st.stop()
# One filter per model (its key names the model): a new model starts with all of its own languages
# instead of inheriting the last model's choice, which may not even be among its labels.
languages = st.sidebar.multiselect("Languages to choose among", card.labels, default=card.labels,
                                   key=f"identify_languages:{models[choice]}")
st.sidebar.caption(session.describe(card))
if card.trained_on.get("synthetic"):
    st.warning(f"This model was trained on synthetic speech (the espeak demo corpus, {card.trained_on['data_dir']})."
               " It answers real voices at about chance level: use it to try the page, not to identify real speech.")
clip_tab, trust_tab, teach_tab = st.tabs(["Identify a clip", "How far to trust it", "Teach it a language"])
with trust_tab:
    show_trust(card)
with teach_tab:
    show_teach(models[choice], card.labels)

with clip_tab:  # last: its guards stop the script
    limit_mb = st.get_option("server.maxUploadSize")
    upload = st.file_uploader(f"Upload a clip (up to {limit_mb} MB and {MAX_SECONDS / 60:g} minutes)",
                              type=UPLOAD_TYPES, key="identify_upload")
    recording = st.audio_input("...or record one", key="identify_record")
    sample = sample_picker(models[choice])
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
    truth = source["language"] if answered == "sample" else None
    if answered == "sample":
        st.caption(f"Sample clip: **{source['language']}**, said by a speaker this model never trained on"
                   + (f": \u201c{source['sentence']}\u201d" if source.get("sentence") else "")
                   + f" ({portable(source['path'])}, CC0).")
        source = source["path"]
        name = portable(source)
    else:
        name = getattr(source, "name", None) or "recording.wav"
    try:
        result, clip = answer(source, models[choice], languages, name)
    except DeepLanguageError as error:
        st.error(str(error))
        st.stop()

    show_answer(result, clip, card, languages, name, truth)
