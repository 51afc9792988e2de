"""ui/pages/train.py and ui/pages/runs.py under AppTest: empty registry, finished runs and a search, the
progress line of a live and of a stopped run, and a launch from the page."""

import json

import pytest
from streamlit.testing.v1 import AppTest

from core import runs
from core.identify import recipes, searches
from core.jobs import launch
from tests.conftest import ROOT
from tests.test_jobs import make_tiny_dataset

PAGE = str(ROOT / "ui" / "pages" / "train.py")
RUNS_PAGE = str(ROOT / "ui" / "pages" / "runs.py")


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(searches, "TUNE_DIR", tmp_path / "tune")
    return tmp_path


def _page(path: str = PAGE) -> AppTest:
    return AppTest.from_file(path, default_timeout=60).run()


def _texts(at: AppTest) -> str:
    return " ".join(x.value for kind in ("info", "success", "error", "warning", "caption", "markdown")
                    for x in at.get(kind))


def test_empty_registry_says_what_to_do(dirs):
    at = _page()
    assert not at.exception
    assert "No run yet" in _texts(at)
    at = _page(RUNS_PAGE)
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
    study = searches.open_study("fake", searches.TUNE_DIR, create=True)
    study.optimize(lambda trial: trial.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=3)
    at = _page()
    assert not at.exception
    assert at.selectbox(key="train_run").value in ("run-a", "run-b")
    charts = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert len(charts) == 2  # the chosen run's loss and accuracy
    for chart in charts:  # epochs are whole numbers: integer ticks only
        axis = chart["layout"]["xaxis"]
        assert axis["dtick"] == 1 and axis["tickformat"] == "d" and axis["tick0"] == 1
    at = _page(RUNS_PAGE)
    assert not at.exception
    assert at.dataframe[0].value["state"].tolist() == ["finished", "finished"]
    assert len(at.get("plotly_chart")) == 2  # comparison, search history
    assert len(at.dataframe[1].value) == 3
    assert "Best:" in _texts(at)


def _running_run(name: str, done: int, **progress) -> "runs.Path":
    run_dir = runs.create_run("identify", {"train": {"model": "cnn-baseline", "epochs": 3}}, runs.RUNS_DIR, name=name)
    runs.write_json(run_dir / "progress.json", {"done": done, "total": 30, "epoch": 1, "epochs": 3, **progress})
    return run_dir


def test_no_eta_until_steps_are_measured_then_one_from_them(dirs):
    run_dir = _running_run("live", done=1)
    with runs.RunLock(run_dir):  # a live trainer holds the lock
        runs.set_status(run_dir, "running")
        runs.write_json(run_dir / "status.json", {**runs.read_json(run_dir / "status.json"),
                                                  "updated": runs.read_json(run_dir / "status.json")["updated"] - 200})
        text = _page().get("progress")[0].proto.text  # 200 s of loading data: not a measured step
        assert "step 1/30" in text and "ETA once the first steps are timed" in text
        runs.write_json(run_dir / "progress.json", {"done": 10, "total": 30, "epoch": 1, "epochs": 3,
                                                    "epoch_steps": 10, "epoch_seconds": 2.0})
        text = _page().get("progress")[0].proto.text
        assert "step 10/30" in text and "ETA 4 s" in text  # 20 steps left at 0.2 s a step


def test_a_stopped_run_shows_its_last_finished_epoch_and_no_cli_command(dirs):
    run_dir = _running_run("stopped", done=17, loss=0.3)  # stopped 7 steps into epoch 2 (10 steps an epoch)
    runs.append_metrics(run_dir, {"epoch": 1, "step": 10, "train_loss": 1.0, "val_loss": 1.1, "seconds": 2.0})
    runs.set_status(run_dir, "stopped", error=runs.STOPPED)
    at = _page()
    assert not at.exception
    text = at.get("progress")[0].proto.text
    assert text.startswith("stopped") and "step 10/30" in text and "epoch 1/3" in text
    assert "python -m core" not in " ".join(w.value for w in at.warning) and at.warning
    assert not at.button(key="train_resume").disabled


def test_the_gmm_recipe_comes_from_core():
    config = recipes.train_config("gmm-supervector", ROOT, n_components=128, background_languages="pt, ca",
                                  languages="es,it")
    assert config.model_config == {**recipes.SHIPPED_GMM, "n_components": 128, "background_languages": ["pt", "ca"]}
    assert config.epochs == 1 and config.languages == ("es", "it")
    assert "relevance" not in open(PAGE).read()  # the page asks; core knows the recipe


@pytest.mark.slow
def test_launch_from_the_page_trains_in_the_background(dirs):
    data = make_tiny_dataset(dirs / "data")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    at.selectbox(key="train_dataset_choice").select("A folder on this machine").run()
    at.text_input(key="train_dataset_path").input(str(data)).run()
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_batch_size").set_value(4)
    at.number_input(key="train_crop_seconds").set_value(1.0)
    at.button(key="train_launch").click().run()
    assert not at.exception, at.exception
    assert "Launched" in _texts(at)
    run_dir = runs.list_runs(runs.RUNS_DIR)[0]
    assert launch.wait(run_dir, timeout=120) == "finished", launch.read_log(run_dir)
    at.run()
    assert not at.exception
    assert at.get("progress")[0].proto.text.startswith("finished")
    assert at.button(key="train_resume").disabled and at.button(key="train_stop").disabled
