"""Runs: every training run in one table, their curves compared, and the hyperparameter searches."""

import streamlit as st

from core import DeepLanguageError, plots, runs
from core.identify import searches
from core.jobs import registry

st.title("Runs")
records = registry.list_run_records(runs.RUNS_DIR)
if records.empty:
    st.info("No run yet: launch one on the Train page (or run `python -m core train --data DIR`).")
else:
    st.dataframe(records.drop(columns=["path"]), hide_index=True, key="runs_table")
    names = list(records["run"])
    compare = st.multiselect("Compare runs", names, default=names[:2], key="runs_compare")
    metric = st.selectbox("Metric", plots.COMPARE_METRICS, key="runs_metric")
    curves = registry.run_curves([runs.RUNS_DIR / name for name in compare])
    if (curves["metric"] == metric).any():
        st.plotly_chart(plots.curves_figure(curves[curves["metric"] == metric], color="run",
                                            title=f"{metric} per epoch"), key="runs_compare_chart")

st.header("Hyperparameter searches")
stored = searches.list_searches(searches.TUNE_DIR)
if not stored:
    st.info("No search yet. Run one with `python -m core tune --data DIR --trials 20`; "
            "then train its best settings with `python -m core tune --study-name NAME --best-to-run`.")
    st.stop()
name = st.selectbox("Search", stored, key="runs_search")
try:
    study = searches.open_study(name, searches.TUNE_DIR)
    table = searches.trials_table(study)
except DeepLanguageError as error:
    st.error(str(error))
    st.stop()
st.dataframe(table, hide_index=True, key="runs_search_table")
if not table.empty and (table["state"] == "COMPLETE").any():
    st.caption(f"Best: {study.best_value:.3f} validation balanced accuracy (trial {study.best_trial.number}). "
               f"Train it: `python -m core tune --study-name {name} --best-to-run`")
    st.plotly_chart(searches.history_figure(study), key="runs_search_history")
