"""Convergence: which pretraining language speeds up learning which target? Browse a matrix study or start one."""

from functools import partial
from pathlib import Path

import streamlit as st

from core import DeepLanguageError, plots
from core.study import browse
from core.study.report_html import report_html
from ui.common import show_text
from ui.study import new_study_form, remember, study_picker


@st.cache_data(show_spinner="Reading the study...")
def load_view(folder: str, stamp: float) -> dict:  # stamp: the study's files changed -> read again
    return browse.convergence_view(folder)


st.title("Convergence")
st.caption("Each run pretrains a next-frame LSTM on one condition (a language heard low-pass or in utero, or a "
           "control), then learns a target language for a fixed budget of steps. Several seeds per cell.")
mode = st.sidebar.radio("Study", ["Browse studies", "Run a new study"], key="conv_mode")
folder = study_picker("conv_browse") if mode == "Browse studies" else new_study_form()
if folder is None:
    st.stop()
remember(folder)


@st.fragment(run_every=2)
def show_progress(folder: Path, seen: list) -> None:
    """Live progress from the study's files; the whole page reruns when a run or a phase ends."""
    line = browse.progress_line(folder)
    if line["key"] != seen:
        st.rerun()
    if line["state"] in ("failed", "stopped"):
        st.error(line["text"])
    elif line["text"]:
        st.progress(line["fraction"] or 0.0, text=line["text"])


line = browse.progress_line(folder)
show_progress(folder, line["key"])
if not (folder / "study.json").exists():
    st.stop()
stamp = browse.study_stamp(folder)
try:
    view = load_view(str(folder), stamp)
except DeepLanguageError as error:  # a broken file of the study (probes.tsv, ...), named with what to do
    st.error(str(error))
    st.stop()
summary = view["summary"]
show_text(view["data_note"])
if not view["doses"]:
    st.info("No pretrained cell has finished yet; the matrix appears as runs finish.")
    st.stop()
# Written when clicked (Streamlit calls it then), not on every load: it builds every figure of the study.
st.download_button("Download the report (HTML)", partial(report_html, str(folder)), key="conv_report",
                   file_name=f"{folder.name}-report.html", mime="text/html")

dose = st.select_slider("Dose: pretraining epochs", view["doses"], value=view["doses"][-1], key="conv_dose") \
    if len(view["doses"]) > 1 else view["doses"][0]
event = st.plotly_chart(plots.speedup_matrix_figure(summary["cells"], dose), on_select="rerun",
                        selection_mode="points", key="conv_matrix")
cells = [f"{c['pretrain']} -> {c['target']}" for c in summary["cells"]
         if c["pretrain"] != "none" and c["pretrain_epochs"] == dose]
clicked = [p["customdata"] for p in (event.selection.points if event and event.selection else [])]
if clicked and clicked[0] != st.session_state.get("conv_clicked"):  # a new click chooses the cell below
    st.session_state["conv_clicked"] = clicked[0]
    st.session_state["conv_cell"] = f"{clicked[0][0]} -> {clicked[0][1]}"
cell = st.selectbox("Cell (or click one in the matrix)", cells, key="conv_cell")
pretrain, target = cell.split(" -> ")
st.plotly_chart(plots.cell_curves_figure(view["curves"], pretrain, target, dose, view["thresholds"].get(target),
                                         view["conditions"]), key="conv_curves")
st.caption(f"Threshold rule: {summary['threshold']['rule']}.")
left, right = st.columns(2)
if len(view["doses"]) > 1:
    left.plotly_chart(plots.dose_figure(summary["dose"]), key="conv_dose_figure")
else:  # one point per condition is no curve
    left.info(f"Dose-response: this study pretrains for one dose ({view['doses'][0]} epochs), so there is no curve "
              "to draw. Choose the dose-response study in the sidebar, or run a study with several doses "
              "(`--pretrain-epochs`).")
measures = {test["method"]: test for test in summary["similarity_methods"]}
measure = right.selectbox("Similarity measure (family: fixed in advance; whisper-*: the pretrained encoder)",
                          list(measures), key="conv_similarity_measure")
right.plotly_chart(plots.similarity_figure(measures[measure]), key="conv_similarity")
right.caption(f"Data: {measures[measure].get('source') or measures[measure].get('reason')}")
st.dataframe(browse.similarity_table(summary), hide_index=True, key="conv_similarity_table")
st.caption(view["p_note"] + " Similarity: Spearman rho of similarity vs mean log speed-up over (pretraining language, "
           "different target) pairs; Mantel p over every relabelling of the languages; Holm over the measures.")
