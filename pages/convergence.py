"""Convergence: does low-pass pretraining on one language speed up learning another? Launch or browse studies."""

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import DeepLanguageError
from core.study.probes import study_report
from core.study.layout import DEMO_STUDY_DIR, NONE, StudyConfig, list_studies
from core.study.run import launch_study
from core.study.results import study_curves, study_status
from pages.common import dataset_picker, load_manifest

PALETTE = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880"]


def study_label(path: Path) -> str:
    return "Demo study (shipped)" if path.resolve() == DEMO_STUDY_DIR.resolve() else path.name


@st.cache_data(show_spinner="Reading the study...")
def load_results(folder: str, stamp: float):  # stamp: the study's files changed -> read again
    return study_curves(folder), study_report(folder, write=False)


def curve_figure(curves: pd.DataFrame, y: str, title: str, threshold: float | None = None) -> go.Figure:
    """Mean per condition over seeds, with a band from the lowest to the highest seed."""
    figure = go.Figure()
    for i, (condition, part) in enumerate(curves.groupby("condition", sort=True)):
        stats = part.groupby("step")[y].agg(["mean", "min", "max", "count"]).reset_index()
        color = PALETTE[i % len(PALETTE)]
        figure.add_scatter(x=pd.concat([stats["step"], stats["step"][::-1]]),
                           y=pd.concat([stats["max"], stats["min"][::-1]]), fill="toself", opacity=0.2,
                           line={"width": 0, "color": color}, hoverinfo="skip", showlegend=False)
        figure.add_scatter(x=stats["step"], y=stats["mean"], name=f"pretrain {condition}", line={"color": color})
    if threshold is not None:
        figure.add_hline(y=threshold, line_dash="dash", annotation_text="threshold")
    return figure.update_layout(title=title, xaxis_title="target-language steps", yaxis_title=y, height=380)


# Sidebar: browse a finished study, or start one.
mode = st.sidebar.radio("Study", ["Browse studies", "Run a new study"], key="conv_mode")
st.title("Convergence")
st.caption("Each run pretrains a next-frame LSTM on one language, low-pass filtered, then learns the target "
           "language until its validation loss crosses the threshold. Several seeds per condition.")
if mode == "Run a new study":
    data_dir = dataset_picker("conv")
    if data_dir is None:
        st.stop()
    languages = sorted(load_manifest(str(data_dir))["language"].unique())
    target = st.sidebar.selectbox("Target language", languages, key="conv_target",
                                  index=languages.index("es") if "es" in languages else 0)
    pretrain = st.sidebar.multiselect("Pretraining conditions", [NONE, *languages], key="conv_pretrain",
                                      default=[c for c in (NONE, "es", "it", "ja") if c in [NONE, *languages]])
    seeds = st.sidebar.number_input("Seeds", 1, 20, 3, key="conv_seeds")
    if st.sidebar.button("Start the study", key="conv_start", disabled=not pretrain):
        try:
            folder, _ = launch_study(StudyConfig(target=target, pretrain=tuple(pretrain), seeds=int(seeds)), data_dir)
            st.session_state["conv_study"] = str(folder)
        except DeepLanguageError as error:
            st.error(str(error))
    if "conv_study" not in st.session_state:
        st.info("Choose a target language and pretraining conditions, then start the study. It runs in the "
                "background: you can leave this page and come back.")
        st.stop()
    folder = Path(st.session_state["conv_study"])
else:
    studies = list_studies()
    if not studies:
        st.info("No study yet: run `python -m core study --data DIR`, or start one from this page.")
        st.stop()
    folder = st.sidebar.selectbox("Study", studies, format_func=study_label, key="conv_browse")


def progress_state(folder: Path) -> tuple:
    status = study_status(folder)
    return status.get("state"), status.get("done"), (folder / "study.json").exists()


@st.fragment(run_every=2)
def show_progress(folder: Path, seen: tuple) -> None:
    """Live progress from the study's files; the whole page reruns when a run finishes."""
    if progress_state(folder) != seen:
        st.rerun()
    status = study_status(folder)
    if status.get("state") == "running":
        done, total = status.get("done") or 0, status.get("total") or 1
        st.progress(done / total, text=f"Training: {done} of {total} runs finished · {status.get('steps') or 0} steps")
    elif status.get("state") == "created" and not seen[2]:
        st.progress(0.0, text="Starting: reading and preparing the dataset...")
    elif status.get("state") in ("failed", "stopped"):
        log = folder / "study.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        st.error(f"The study {status['state']}: {status.get('error') or ' '.join(tail) or 'see study.log'}. "
                 f"Start it again to resume.")


seen = progress_state(folder)
show_progress(folder, seen)
if not seen[2]:
    st.stop()
stamp = max((p.stat().st_mtime for p in folder.glob("**/metrics.jsonl")), default=0.0)
stamp = max([stamp, *(p.stat().st_mtime for p in folder.glob("*.tsv"))])
(validation, training), report = load_results(str(folder), stamp)
if validation.empty:
    st.info("No run has finished an epoch yet; curves appear as runs progress.")
    st.stop()

st.subheader(f"Target {report['target']} · threshold {report['threshold']:.3f}")
tab_val, tab_train = st.tabs(["Validation loss", "Training loss"])
tab_val.plotly_chart(curve_figure(validation, "val_loss", "Validation loss (mean, band = seed range)",
                                  report["threshold"]), key="conv_val")
smooth = training[training["step"] > 0].assign(
    loss=lambda t: t.groupby("run")["loss"].transform(lambda s: s.rolling(10, min_periods=1).mean()))
tab_train.plotly_chart(curve_figure(smooth, "loss", "Training loss per step (10-step mean)"), key="conv_train")

if report["time"]:
    st.subheader("Time to threshold")
    table = pd.DataFrame(report["time"])
    tests = pd.DataFrame(report["time_tests"] or [{"condition": None, "measure": None}])
    table = table.merge(tests[[c for c in ("condition", "measure", "p_value", "rank_biserial", "min_p")
                               if c in tests]], on=["condition", "measure"], how="left")
    st.dataframe(table[["measure", "condition", "n_converged", "n_runs", "mean", "ci_low", "ci_high", "median",
                        *[c for c in ("p_value", "rank_biserial", "min_p") if c in table]]],
                 hide_index=True, key="conv_table")
    st.caption("Mean and 95% CI over seeds that reached the threshold. p: two-sided exact Mann-Whitney U against "
               "'none' (runs that never got there rank last); rank-biserial r < 0 means faster than 'none'. "
               "min_p is the smallest p these seed counts can give: with 3 seeds per side it is 0.1, so no "
               "difference can be significant at 0.05; use 5+ seeds.")
