"""core.identify.tune and .searches: a tiny Optuna search writes SQLite, prunes, resumes and yields a trainable best config."""

import subprocess
import sys
from dataclasses import replace

import pytest

from core.identify import searches, tune
from core.errors import DeepLanguageError
from tests.conftest import ROOT
from tests.test_jobs import make_tiny_dataset, tiny_config

pytestmark = pytest.mark.slow  # every test here trains (the search fixture) or spawns a process


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    base = tiny_config(make_tiny_dataset(root / "data"), root / "cache", epochs=2)
    seen = []
    study = tune.tune(base, 3, "tiny", root / "tune", on_trial=seen.append)
    return base, study, root / "tune", seen


def test_trials_are_stored_in_sqlite_and_reported(search):
    base, study, tune_dir, seen = search
    assert (tune_dir / "tiny.db").exists() and searches.list_searches(tune_dir) == ["tiny"]
    assert [row["number"] for row in seen] == [0, 1, 2]
    table = searches.trials_table(searches.open_study("tiny", tune_dir))
    assert len(table) == 3 and {"lr", "width", "dropout", "specaugment", "crop_seconds", "value"} <= set(table.columns)
    assert set(table["state"]) <= {"COMPLETE", "PRUNED"} and table["epochs"].between(1, 2).all()
    assert (tune_dir / "tiny" / "trial-000" / "metrics.jsonl").exists()
    assert not (tune_dir / "tiny" / "trial-000" / "last.pt").exists()
    assert len(searches.history_figure(study).data) >= 1


def test_best_config_applies_the_best_parameters(search):
    base, study, _, _ = search
    config = tune.best_config(study)
    params = study.best_params
    assert config.lr == pytest.approx(params["lr"]) and config.crop_seconds == params["crop_seconds"]
    assert config.model_config["dropout"] == pytest.approx(params["dropout"])
    assert config.model_config["channels"] == [max(2, round(c * params["width"])) for c in base.model_config["channels"]]
    assert config.data_dir == base.data_dir and config.epochs == base.epochs


def test_the_same_search_resumes_and_refuses_other_settings(search):
    base, study, tune_dir, _ = search
    result = subprocess.run([sys.executable, "-m", "core", "tune", "--data", base.data_dir, "--trials", "0",
                             "--study-name", "tiny", "--tune-dir", str(tune_dir)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "search tiny: 3 trials; best" in result.stdout, result.stderr
    with pytest.raises(DeepLanguageError, match="other settings"):
        tune.tune(replace(base, batch_size=8), 1, "tiny", tune_dir)
    with pytest.raises(DeepLanguageError, match="no search named"):
        searches.open_study("nothing", tune_dir)
