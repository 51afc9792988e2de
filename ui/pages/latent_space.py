"""Latent space: what the frozen models' states hold about language, seen in 2-D and measured by probes."""

import threading

import pandas as pd
import streamlit as st

from core import DeepLanguageError, plots
from core.paths import portable
from core.study import browse, projections
from core.study.layout import TASK_TARGET
from core.study.projections import METHODS
from core.study.report import study_summary
from ui.common import load_clip, show_clip, show_text
from ui.study import study_picker


@st.cache_resource
def warm_up_umap() -> threading.Thread:
    """Once per server process, in the background: UMAP's compile is done before it is chosen. Started once the
    page is drawn: on two cores the compile would otherwise slow the page's first paint by seconds."""
    return threading.Thread(target=projections.warm_up_umap, daemon=True).start()


@st.cache_data(show_spinner="Listing the study's runs...")
def cached_runs(folder: str, stamp: float) -> pd.DataFrame:
    return browse.latent_runs(folder)


@st.cache_data(show_spinner="Projecting to 2-D (cached on disk after the first time)...")
def cached_points(folder: str, run: dict, kind: str, method: str, stamp: float) -> pd.DataFrame:
    return browse.latent_points(folder, run, kind, method)


@st.cache_resource(max_entries=32, show_spinner=False)
def cached_scatter(folder: str, run: dict, kind: str, method: str, stamp: float, title: str):
    """The scatter, built once per run, latent and projection: every click reruns the page, and st.plotly_chart
    reads the figure without changing it."""
    return plots.latent_scatter_figure(cached_points(folder, run, kind, method, stamp), title)


@st.cache_data
def cached_probes(folder: str, stamp: float) -> tuple[pd.DataFrame, str | None]:
    try:
        summary = study_summary(folder)
    except DeepLanguageError as error:  # a broken probes.tsv: its message (file, what to do) in place of the probes
        return pd.DataFrame(), str(error)
    return pd.DataFrame(summary["probes"]), summary.get("probe_note")


st.title("Latent space")
study = study_picker("latent_study")
stamp = browse.study_stamp(study)
table = cached_runs(str(study), stamp)
if table.empty:
    st.info("No run of this study has finished yet: latents appear when a run ends.")
    st.stop()
# Any run of the matrix: condition, then target, then seed (and dose when the study has several).
condition = st.sidebar.selectbox("Pretraining condition, or a reference model", browse.latent_conditions(
    table["condition"]), key="latent_condition", format_func=lambda c: browse.condition_label(c, study))
table = table[table["condition"] == condition]
target = st.sidebar.selectbox("Target language", sorted(table["target"].unique()), key="latent_target")
table = table[table["target"] == target]
if table["pretrain_epochs"].nunique() > 1:
    dose = st.sidebar.selectbox("Pretraining epochs", sorted(table["pretrain_epochs"].unique()), key="latent_dose")
    table = table[table["pretrain_epochs"] == dose]
seed = st.sidebar.selectbox("Seed", sorted(table["seed"].unique()), key="latent_seed")
run = table[table["seed"] == seed].iloc[0].to_dict()
kind = st.sidebar.selectbox("Latent", run["kinds"], key="latent_kind", help=browse.LATENT_KINDS_HELP)
method = st.sidebar.selectbox("Projection", METHODS, key="latent_method", format_func=str.upper)

points = cached_points(str(study), run, kind, method, stamp)
show_text(f"Run: {condition} -> {target}, seed {seed}" + (f", {int(run['pretrain_epochs'])} pretraining epochs"
                                                           if pd.notna(run["pretrain_epochs"]) else "")
           + f" · {points.attrs['sample_note']} · data: {portable(points['dataset_root'].iloc[0])}")
model = browse.latent_model_name(condition, target, study)
event = st.plotly_chart(cached_scatter(str(study), run, kind, method, stamp,
                                       f"{kind} of {model} (seed {seed}), {method.upper()}"),
                        on_select="rerun", key="latent_scatter", selection_mode=("points", "box", "lasso"))
selected = plots.latent_point_rows(points, event.selection.points) if event and event.selection else []
if not selected:
    st.caption("Click a point to hear its clip; draw a box or lasso to export the clips inside as CSV.")
else:
    st.download_button("Download the selection (CSV)", browse.selection_csv(points, selected),
                       file_name="selection.csv", mime="text/csv", key="latent_download")
    row = points.iloc[selected[0]]
    show_text(f"{row['language']} · speaker {row['speaker'][:12]} · {row['clip']}"
                + (f" · first of {len(selected)} selected" if len(selected) > 1 else ""))
    try:
        show_clip(load_clip(row["clip"]), key="latent_clip")
    except DeepLanguageError as error:
        st.info(f"The clip cannot be played here ({error}); build or download its dataset to hear it.")

probes, probe_note = cached_probes(str(study), stamp)
if probes.empty:
    st.info(probe_note or "This study has not been probed yet: run `python -m core probe --study DIR`.")
    warm_up_umap()
    st.stop()
st.subheader("Linear probes")
if "target" in probes:  # a matrix study probes each target's runs: show the chosen target's
    probes = probes[probes["target"].isna() | (probes["target"] == target)]
task = st.radio("Task", sorted(probes["task"].unique(), key=lambda t: t != TASK_TARGET), horizontal=True,
                key="latent_task")
st.plotly_chart(plots.probe_bars_figure(probes, task), key="latent_probe_bars")
st.caption(browse.probe_task_note(task, target, probes[probes["task"] == task]))  # "" for other tasks: nothing shown
st.dataframe(probes[probes["task"] == task], hide_index=True, key="latent_probe_table")
st.caption("Linear probe: diagonal LDA with equal priors, speaker-grouped, stratified CV on held-out speakers; "
           "chance = 1 / classes (balanced accuracy); majority = "
           "plain accuracy of always answering the largest class; p: permutation test (languages shuffled between "
           "speakers), seeds combined by Fisher's method; 95% CI over seeds.")
warm_up_umap()
