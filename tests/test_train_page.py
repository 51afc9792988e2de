"""pages/train.py under AppTest: empty registry, a finished run and a search, and a launch from the page."""

import pytest
from streamlit.testing.v1 import AppTest

from core import runs
from core.jobs import launch
from core.identify import tune
from tests.conftest import ROOT
from tests.test_jobs import make_tiny_dataset

PAGE = str(ROOT / "pages" / "train.py")


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(tune, "TUNE_DIR", tmp_path / "tune")
    return tmp_path


def _page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=60).run()


def _texts(at: AppTest) -> str:
    return " ".join(x.value for kind in ("info", "success", "error", "warning", "caption", "markdown")
                    for x in at.get(kind))


def test_empty_registry_says_what_to_do(dirs):
    at = _page()
    assert not at.exception
    assert "No run yet" in _texts(at) and "No search yet" in _texts(at)


def test_a_finished_run_and_a_search_are_shown(dirs):
    for name, accuracy in (("run-a", 0.6), ("run-b", 0.8)):
        run_dir = runs.create_run("identify", {"train": {"model": "cnn-baseline", "epochs": 2, "lr": 0.01}},
                                  runs.RUNS_DIR, name=name)
        for epoch in (1, 2):
            runs.append_metrics(run_dir, {"epoch": epoch, "step": epoch * 3, "train_loss": 1 / epoch,
                                          "val_loss": 1.2 / epoch, "train_accuracy": accuracy, "val_accuracy": accuracy,
                                          "val_balanced_accuracy": accuracy, "seconds": 1.0})
        runs.set_status(run_dir, "finished")
    study = tune.open_study("fake", tune.TUNE_DIR, create=True)
    study.optimize(lambda trial: trial.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=3)
    at = _page()
    assert not at.exception
    assert at.selectbox(key="train_run").value in ("run-a", "run-b")
    assert at.dataframe[0].value["state"].tolist() == ["finished", "finished"]
    chart_keys = {chart.proto.id for chart in at.get("plotly_chart")}
    assert len(at.get("plotly_chart")) >= 4, chart_keys  # loss, accuracy, comparison, search history
    assert len(at.dataframe[1].value) == 3
    assert "Best:" in _texts(at)


@pytest.mark.slow
def test_launch_from_the_page_trains_in_the_background(dirs):
    data = make_tiny_dataset(dirs / "data")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    at.selectbox(key="train_dataset_choice").select("A folder on this machine").run()
    at.text_input(key="train_dataset_path").input(str(data)).run()
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_batch").set_value(4)
    at.slider(key="train_crop").set_value(1.0)
    at.button(key="train_launch").click().run()
    assert not at.exception, at.exception
    assert "Launched" in _texts(at)
    run_dir = runs.list_runs(runs.RUNS_DIR)[0]
    assert launch.wait(run_dir, timeout=120) == "finished", launch.read_log(run_dir)
    at.run()
    assert not at.exception
    assert at.dataframe[0].value["state"].tolist() == ["finished"]
    assert at.button(key="train_resume").disabled and at.button(key="train_stop").disabled
