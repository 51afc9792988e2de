"""Train: launch a training run in the background, watch it live, stop or resume it (all runs: the Runs page)."""

import streamlit as st

from core import DeepLanguageError, plots, runs
from core.identify import recipes
from core.jobs import launch as jobs
from core.jobs import registry
from ui.common import dataset_picker

LIVE = ("starting", "running")
side = st.sidebar
st.title("Train")  # first: what the dataset picker says about a missing dataset goes under it

side.header("New run")
kind = side.selectbox("Model", jobs.KINDS, key="train_kind", help="Language identifiers (whisper-head: pretrained Whisper + "
                      "a head, the shipped kind; whisper: its language-ID alone; from scratch: cnn-baseline, resnet-asp, "
                      "gmm-supervector) or one run of the pretraining study (nextframe LSTM, autoencoder)")
folder = dataset_picker("train_dataset")
study_kind, gmm = kind in jobs.STUDY_KINDS, kind in ("gmm-supervector", "whisper", "whisper-head")  # one process
choices = {}
for name, label, default, allowed in recipes.form(kind, jobs.STUDY_KINDS):
    key, off = f"train_{name}", kind == "autoencoder" and name == "condition"  # the autoencoder has no pretraining
    choices[name] = (side.text_input(label, default, key=key, disabled=off) if allowed is None
                     else side.selectbox(label, allowed, allowed.index(default), key=key) if isinstance(allowed, list)
                     else side.number_input(label, *allowed, default, key=key, format=None if type(default) is int
                                            else "%.5g"))
seed = int(side.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed"))
nproc = int(side.number_input("Processes (DDP via torchrun)", 1, 16, 1, key="train_nproc", disabled=study_kind or gmm))
threads = int(side.number_input("CPU threads per process", 1, 64, 1, key="train_threads"))
busy = jobs.job_limit_message(runs.RUNS_DIR)
launch = side.button("Launch training", key="train_launch", type="primary", disabled=folder is None or bool(busy))

if busy:
    st.warning(busy)
if launch:
    try:
        config = (jobs.study_run_config(folder, seed=seed, **choices) if study_kind
                  else recipes.train_config(kind, folder, seed=seed, threads=threads, **choices))
        run_dir = jobs.launch(kind, config, runs_dir=runs.RUNS_DIR, threads=threads, nproc=nproc)
        st.session_state["train_run"] = run_dir.name
        st.success(f"Launched {run_dir.name}: it trains in the background, so you may leave or reload this page.")
    except DeepLanguageError as error:
        st.error(str(error))

records = registry.list_run_records(runs.RUNS_DIR)
if records.empty:
    st.info("No run yet: choose a dataset and settings in the sidebar, then **Launch training** "
            "(or run `python -m core train --data DIR`).")
else:
    names = list(records["run"])
    if st.session_state.get("train_run") not in names:
        st.session_state["train_run"] = names[0]
    chosen = st.selectbox("Run", names, key="train_run")
    run_dir = runs.RUNS_DIR / chosen
    live = registry.run_state(run_dir)["state"] in LIVE

    @st.fragment(run_every=2 if live else None)
    def watch() -> None:
        """Redrawn every 2 s while the run lives: state, progress, ETA, curves, stop/resume."""
        record, progress = registry.run_record(run_dir), registry.run_progress(run_dir)
        state = record["state"]
        st.progress(min(1.0, progress["fraction"]), text=registry.progress_line(record, progress))
        if state == "stopped" and st.session_state.get("train_stopped", ("",))[0] == chosen:
            st.success(st.session_state["train_stopped"][1])  # this session's Stop: when it took effect
        elif record["error"] and state in ("failed", "stopped"):
            (st.error if state == "failed" else st.warning)(record["error"])
        stop_col, resume_col, _ = st.columns([1, 1, 4])
        if stop_col.button("Stop", key="train_stop", disabled=state not in LIVE):
            st.session_state["train_stopped"] = (chosen, jobs.stop_report(run_dir, timeout=20))
            st.rerun(scope="app")
        if resume_col.button("Resume", key="train_resume", disabled=state not in ("stopped", "failed")):
            try:
                jobs.resume(run_dir, threads=threads, nproc=nproc)
                st.rerun(scope="app")
            except DeepLanguageError as error:
                st.error(str(error))
        curves = registry.run_curves([run_dir])
        if curves.empty:
            st.caption("Curves appear when the first epoch ends.")
        for column, (title, metrics) in zip(st.columns(2), plots.CURVES.items()):
            if curves["metric"].isin(metrics).any():
                chance = registry.run_chance(run_dir) if title == "accuracy" else None
                column.plotly_chart(plots.curves_figure(curves[curves["metric"].isin(metrics)], title=title,
                                                        chance=chance), key=f"train_curve_{title}")
        with st.expander("Log"):
            st.code(jobs.read_log(run_dir) or "(empty)", language=None)
        if (state in LIVE) != live:  # started or ended: refresh the table and the refresh rate
            st.rerun(scope="app")

    watch()
    st.caption("Every run in one table, their curves side by side and the hyperparameter searches: the Runs page.")
