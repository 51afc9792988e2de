"""Train: launch a training run in the background, watch it live, stop or resume it, compare runs, see searches."""

import plotly.express as px
import streamlit as st

from core import DeepLanguageError, runs
from core.jobs import launch as jobs
from core.jobs import registry
from core.identify import tune
from pages.common import dataset_picker
from core.identify.clips import TrainConfig

LIVE = ("starting", "running")
GMM = "gmm-supervector"


def split_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())

CURVES = {"loss": ["train_loss", "loss", "val_loss"], "accuracy": ["train_accuracy", "val_accuracy", "val_balanced_accuracy"]}

# Sidebar: what to train.
st.sidebar.header("New run")
kind = st.sidebar.selectbox("Model", jobs.KINDS, key="train_kind",
                            help="Language identifiers (cnn-baseline, resnet-asp) or one run of the pretraining "
                                 "study (nextframe LSTM, autoencoder)")
folder = dataset_picker("train_dataset")
study_kind = kind in jobs.STUDY_KINDS
if study_kind:
    target = st.sidebar.text_input("Target language", "es", key="train_target")
    condition = st.sidebar.text_input("Low-pass pretraining language ('none' = no pretraining)", "none",
                                      key="train_condition", disabled=kind == "autoencoder")
    hidden = st.sidebar.number_input("LSTM hidden size", 8, 1024, 128, key="train_hidden")
    epochs = st.sidebar.number_input("Maximum epochs", 1, 500, 30, key="train_epochs")
elif kind == GMM:  # fitted in one pass: no epochs, batches or learning rate
    languages = st.sidebar.text_input("Languages (comma-separated; empty = all)", key="train_languages")
    components = st.sidebar.selectbox("GMM components", [64, 128, 256, 512], index=2, key="train_components")
    background = st.sidebar.text_input("Background languages (extra classes, never answered)", key="train_background",
                                       help="Other languages of the dataset: they help fit the model but are not answers")
else:
    languages = st.sidebar.text_input("Languages (comma-separated; empty = all)", key="train_languages")
    epochs = st.sidebar.number_input("Epochs", 1, 500, 20, key="train_epochs")
    batch_size = st.sidebar.number_input("Batch size", 2, 512, 32, key="train_batch")
    lr = st.sidebar.number_input("Learning rate", 1e-5, 1.0, 0.01, format="%.4f", key="train_lr")
    weight_decay = st.sidebar.number_input("Weight decay", 0.0, 1.0, 0.05, format="%.3f", key="train_wd")
    crop = st.sidebar.slider("Training crop (s)", 1.0, 6.0, 3.0, 0.5, key="train_crop")
    patience = st.sidebar.number_input("Early-stopping patience (0 = never)", 0, 100, 10, key="train_patience")
seed = st.sidebar.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed")
nproc = st.sidebar.number_input("Processes (DDP via torchrun)", 1, 16, 1, key="train_nproc",
                                disabled=study_kind or kind == GMM)
threads = st.sidebar.number_input("CPU threads per process", 1, 64, 1, key="train_threads")
launch = st.sidebar.button("Launch training", key="train_launch", type="primary", disabled=folder is None)

st.title("Train")
if launch:

    if study_kind:
        config = jobs.study_run_config(folder, condition.strip() or "none", int(seed), target=target.strip(),
                                       hidden_size=int(hidden), max_epochs=int(epochs))
    elif kind == GMM:  # the shipped model's recipe, with the chosen size and background
        config = TrainConfig(data_dir=str(folder.resolve()), epochs=1, seed=int(seed), threads=int(threads),
                             languages=split_list(languages),
                             model_config={"n_components": int(components), "relevance": 4, "fit_on": "clips",
                                           "background_languages": list(split_list(background))})
    else:
        config = TrainConfig(data_dir=str(folder.resolve()), epochs=int(epochs), batch_size=int(batch_size), lr=lr,
                             weight_decay=weight_decay, crop_seconds=crop, patience=int(patience), seed=int(seed),
                             threads=int(threads), languages=split_list(languages))
    try:
        run_dir = jobs.launch(kind, config, runs_dir=runs.RUNS_DIR, threads=int(threads), nproc=int(nproc))
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
        record = registry.run_record(run_dir)
        progress = registry.run_progress(run_dir)
        state = record["state"]
        eta = progress["eta_seconds"]
        st.progress(min(1.0, progress["fraction"]), text=f"{state} · epoch {progress.get('epoch', record['epochs_done'])}"
                    f"/{record['epochs']} · step {progress['done']}/{progress['total']}"
                    + (f" · ETA {eta:.0f} s" if eta is not None and state == "running" else ""))
        if record["error"] and state in ("failed", "stopped"):
            (st.error if state == "failed" else st.warning)(record["error"])
        stop_col, resume_col, _ = st.columns([1, 1, 4])
        if stop_col.button("Stop", key="train_stop", disabled=state not in LIVE):
            st.toast(f"{chosen}: {jobs.stop(run_dir, timeout=20)}")
            st.rerun(scope="app")
        if resume_col.button("Resume", key="train_resume", disabled=state not in ("stopped", "failed")):
            try:
                jobs.resume(run_dir, threads=int(threads), nproc=int(nproc))
                st.rerun(scope="app")
            except DeepLanguageError as error:
                st.error(str(error))
        curves = registry.run_curves([run_dir])
        if curves.empty:
            st.caption("Curves appear when the first epoch ends.")
        for column, (title, metrics) in zip(st.columns(2), CURVES.items()):
            part = curves[curves["metric"].isin(metrics)]
            if not part.empty:
                column.plotly_chart(px.line(part, x="epoch", y="value", color="metric", markers=True, title=title),
                                    key=f"train_curve_{title}")
        with st.expander("Log"):
            st.code(jobs.read_log(run_dir) or "(empty)", language=None)
        if (state in LIVE) != live:  # started or ended: refresh the table and the refresh rate
            st.rerun(scope="app")

    watch()

    st.subheader("All runs")
    st.dataframe(records.drop(columns=["path"]), hide_index=True, key="train_runs_table")
    compare = st.multiselect("Compare runs", names, default=names[:2], key="train_compare")
    metric = st.selectbox("Metric", ["val_balanced_accuracy", "val_accuracy", "val_loss", "train_loss",
                                     "train_accuracy"], key="train_compare_metric")
    curves = registry.run_curves([runs.RUNS_DIR / name for name in compare])
    curves = curves[curves["metric"] == metric]
    if not curves.empty:
        st.plotly_chart(px.line(curves, x="epoch", y="value", color="run", markers=True,
                                title=f"{metric} per epoch"), key="train_compare_chart")

st.header("Hyperparameter search")
searches = tune.list_searches(tune.TUNE_DIR)
if not searches:
    st.info("No search yet. Run one with `python -m core tune --data DIR --trials 20`; "
            "then train its best settings with `python -m core tune --study-name NAME --best-to-run`.")
    st.stop()
name = st.selectbox("Search", searches, key="train_tune_study")
try:
    study = tune.open_study(name, tune.TUNE_DIR)
    table = tune.trials_table(study)
except DeepLanguageError as error:
    st.error(str(error))
    st.stop()
st.dataframe(table, hide_index=True, key="train_tune_table")
if not table.empty and (table["state"] == "COMPLETE").any():
    st.caption(f"Best: {study.best_value:.3f} validation balanced accuracy (trial {study.best_trial.number}). "
               f"Train it: `python -m core tune --study-name {name} --best-to-run`")
    st.plotly_chart(tune.history_figure(study), key="train_tune_history")
