"""What the Convergence and Latent Space pages share: the study picker that remembers the study in
the URL, and the form that starts a new matrix study."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import DeepLanguageError
from core.study import browse
from core.study.layout import portable
from core.study.background import launch_study
from ui.common import dataset_picker, load_manifest

QUERY_KEY = "study"  # ?study=checkpoints/real-study: both pages open on the study last viewed


def study_picker(key: str) -> Path:
    """Sidebar choice of a study: the one in the URL, else the shipped real-speech one, else the demo.
    The choice goes back into the URL, so a reload or the other study page opens on it."""
    choices = browse.study_choices()
    if not choices:
        st.info("No study yet: run `python -m core study --data DIR` or start one on the Convergence page.")
        st.stop()
    remembered = st.query_params.get(QUERY_KEY) or st.session_state.get(QUERY_KEY)
    folder = st.sidebar.selectbox("Study", choices, format_func=browse.study_label, key=key,
                                  index=browse.default_study(choices, remembered))
    remember(folder)
    return folder


def remember(folder: Path) -> None:
    """In the URL (a reload or a shared link reopens it) and in the session (the other study page)."""
    st.query_params[QUERY_KEY] = st.session_state[QUERY_KEY] = portable(folder)


def new_study_form() -> Path | None:
    """The "Run a new study" form in the sidebar; returns the launched study's folder, or None."""
    data_dir = dataset_picker("conv")
    if data_dir is None:
        return None
    languages = sorted(load_manifest(str(data_dir))["language"].unique())
    with st.sidebar.form("conv_form"):
        targets = st.multiselect("Targets", languages, default=[x for x in ("es", "fr") if x in languages],
                                 key="conv_targets")
        spoken = st.multiselect("Pretraining languages", languages, key="conv_languages",
                                default=[x for x in ("es", "it", "ja") if x in languages])
        heard = st.radio("They are heard", ["lowpass", "utero"], key="conv_filter", horizontal=True,
                         format_func={"lowpass": "low-pass < 500 Hz", "utero": "through the womb (in utero)"}.get)
        controls = st.multiselect("Controls", ["none", "noise", *(f"{x}:full" for x in languages)],
                                  default=["none", "noise"], key="conv_controls",
                                  help="none: no pretraining; noise: low-pass noise shaped like speech; "
                                       "<lang>:full: the same language, full band")
        doses = st.multiselect("Dose: pretraining epochs", [1, 2, 4, 8], default=[4], key="conv_doses")
        seeds = st.number_input("Seeds", 1, 20, 5, key="conv_seeds")
        scheduler = st.text_input("Dask scheduler (optional)", key="conv_scheduler", placeholder="tcp://host:8786",
                                  help="Send the runs to a Dask cluster; empty: a local one, one worker per core")
        start = st.form_submit_button("Start the study")
    if start:
        try:
            config = browse.new_study_config(targets, spoken, controls, heard, doses, int(seeds))
            st.session_state["conv_launched"] = str(launch_study(config, data_dir, scheduler=scheduler.strip() or None)[0])
        except DeepLanguageError as error:
            st.error(str(error))
    if "conv_launched" not in st.session_state:
        st.info("Choose targets, pretraining languages, controls and dose, then start the study. It runs in the "
                "background: you can leave this page and come back.")
        return None
    return Path(st.session_state["conv_launched"])
