"""Latent space: what the frozen models' states hold about language, seen in 2-D and measured by probes."""

import threading
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from core import DeepLanguageError
from core.study import projections
from core.study.latents import clip_path, load_latents
from core.study.probes import TASK_TARGET, study_report
from core.study.projections import METHODS, project
from core.study.layout import DEMO_STUDY_DIR, list_studies, study_runs
from pages.common import load_clip, show_clip


@st.cache_data(show_spinner="Loading latents...")
def cached_latents(folder: str, stamp: float):
    return load_latents(folder)


@st.cache_resource
def warm_up_umap() -> threading.Thread:
    """Once per server process, in the background: UMAP's compile is done before it is chosen."""
    thread = threading.Thread(target=projections.warm_up_umap, daemon=True)
    thread.start()
    return thread


@st.cache_data(show_spinner="Projecting to 2-D (cached on disk after the first time)...")
def cached_projection(folder: str, kind: str, method: str, stamp: float):
    arrays, _ = cached_latents(folder, stamp)
    return project(arrays[kind], method, seed=0)


@st.cache_data
def cached_report(folder: str, stamp: float) -> dict:
    return study_report(folder, write=False)


# Sidebar: study, run, latent kind, projection.
studies = list_studies()
st.title("Latent space")
warm_up_umap()
if not studies:
    st.info("No study yet: run `python -m core study --data DIR` or start one on the Convergence page.")
    st.stop()
study = st.sidebar.selectbox("Study", studies, key="latent_study", format_func=lambda p: (
    "Demo study (shipped)" if p.resolve() == DEMO_STUDY_DIR.resolve() else p.name))
runs = [p for p in study_runs(study) if (p / "latents.npz").exists()]
if not runs:
    st.info("No run of this study has finished yet: latents appear when a run ends.")
    st.stop()
# The language identifier's embedding of the same clips sits beside the runs, as "identify".
identifier = study / "identify"
conditions = sorted({p.name.rsplit("-s", 1)[0] for p in runs}) + (
    ["identify"] if (identifier / "latents.npz").exists() else [])
condition = st.sidebar.selectbox("Pretraining condition (ae = autoencoder, identify = the language identifier)",
                                 conditions, key="latent_condition")
seeds = ["0"] if condition == "identify" else sorted(
    p.name.rsplit("-s", 1)[1] for p in runs if p.name.rsplit("-s", 1)[0] == condition)
seed = st.sidebar.selectbox("Seed", seeds, key="latent_seed")
run = identifier if condition == "identify" else study / "runs" / f"{condition}-s{seed}"
stamp = (run / "latents.npz").stat().st_mtime
arrays, manifest = cached_latents(str(run), stamp)
kind = st.sidebar.selectbox("Latent", list(arrays), key="latent_kind",
                            help="h, c: the LSTM's last hidden and cell state; h_mean: hidden state averaged "
                                 "over time; ae: the autoencoder's bottleneck; identify: the language identifier's embedding")
method = st.sidebar.selectbox("Projection", METHODS, key="latent_method", format_func=str.upper)

points = cached_projection(str(run), kind, method, stamp)
frame = manifest.assign(x=points[:, 0], y=points[:, 1], row=range(len(manifest)))
figure = px.scatter(frame, x="x", y="y", color="language", custom_data=["row"], hover_data=["speaker"],
                    title=f"{kind} of {run.name}, {method.upper()} · {len(frame)} held-out clips")
event = st.plotly_chart(figure.update_layout(height=520), on_select="rerun", key="latent_scatter",
                        selection_mode=("points", "box", "lasso"))
selected = [p["customdata"][0] for p in event.selection.points] if event and event.selection else []
if not selected:
    st.caption("Click a point to hear its clip; draw a box or lasso to export the clips inside as CSV.")
else:
    chosen = manifest.iloc[selected]
    st.download_button("Download the selection (CSV)", chosen.to_csv(index=False), file_name="selection.csv",
                       mime="text/csv", key="latent_download")
    row = chosen.iloc[0]
    st.markdown(f"**{row['language']}** · speaker {row['speaker'][:12]} · `{row['path']}`"
                + (f" · first of {len(chosen)} selected" if len(chosen) > 1 else ""))
    path = clip_path(study, row["path"])
    if path.exists():
        try:
            show_clip(load_clip(str(path)), key="latent_clip")
        except DeepLanguageError as error:
            st.error(str(error))
    else:
        st.info(f"The clip is not on this machine ({path}); build or download its dataset to hear it.")

report = cached_report(str(study), max([stamp, *(p.stat().st_mtime for p in Path(study).glob("*.tsv"))]))
if not report["probes"]:
    st.info("This study has not been probed yet: run `python -m core probe --study DIR`.")
    st.stop()
st.subheader("Linear probes")
probes = pd.DataFrame(report["probes"])
task = st.radio("Task", sorted(probes["task"].unique(), key=lambda t: t != TASK_TARGET), horizontal=True,
                key="latent_task")
shown = probes[(probes["task"] == task) & (probes["kind"] == kind)]
if shown.empty:
    shown = probes[probes["task"] == task]
bars = px.bar(shown, x="condition", y="accuracy", color="kind", barmode="group", range_y=[0, 1],
              error_y=shown["ci_high"] - shown["accuracy"], error_y_minus=shown["accuracy"] - shown["ci_low"],
              title=f"Balanced accuracy, {task} (95% CI over seeds; dashed: chance)")
bars.add_hline(y=float(shown["chance"].iloc[0]), line_dash="dash", annotation_text="chance")
st.plotly_chart(bars, key="latent_probe_bars")
st.dataframe(probes[probes["task"] == task], hide_index=True, key="latent_probe_table")
st.caption("Speaker-grouped, stratified CV; chance = 1 / classes (balanced accuracy); majority = plain accuracy "
           "of always answering the largest class; p: permutation test (languages shuffled between speakers), "
           "seeds combined by Fisher's method.")
