"""core.identify.learning_curve: budgets of minutes per language, the power law, and a small real curve."""

import numpy as np
import pandas as pd
import pytest

from core.errors import DeepLanguageError, UsageError
from core.identify.learning_curve import budget_rows, fit_power_law, load_learning_curve, minutes_for


def _manifest() -> pd.DataFrame:
    rows = [{"language": lang, "speaker": f"{lang}{s}", "duration": 10.0}
            for lang in ("a", "b") for s in range(6) for _ in range(3)]  # 3 minutes per language, 30 s per speaker
    return pd.DataFrame(rows)


def test_budget_takes_whole_speakers_up_to_the_minutes_of_each_language():
    manifest = _manifest()
    rows = np.arange(len(manifest))
    one = manifest.iloc[budget_rows(manifest, rows, 1.0, seed=0)]
    assert (one.groupby("language")["duration"].sum() == 60.0).all()
    assert (one.groupby("language")["speaker"].nunique() == 2).all()  # 30 s each: two whole speakers
    assert len(budget_rows(manifest, rows, None, seed=0)) == len(manifest)
    tiny = manifest.iloc[budget_rows(manifest, rows, 0.01, seed=0)]
    assert (tiny.groupby("language").size() == 1).all()  # never an empty language
    assert not np.array_equal(budget_rows(manifest, rows, 1.0, seed=0), budget_rows(manifest, rows, 1.0, seed=1))


def test_power_law_recovers_its_parameters_and_extrapolates():
    minutes = np.array([0.5, 1, 2, 4, 8])
    accuracy = 1 - 0.6 * minutes ** -0.3
    law = fit_power_law(minutes, accuracy)
    assert law["b"] == pytest.approx(0.6, rel=1e-6) and law["c"] == pytest.approx(0.3, rel=1e-6)
    need = minutes_for(0.8, law)
    assert 1 - 0.6 * need ** -0.3 == pytest.approx(0.8)
    assert minutes_for(0.8, fit_power_law([1, 2], [0.5, 0.4])) is None  # getting worse never reaches 80 %


def test_missing_curve_says_how_to_make_one(tmp_path):
    with pytest.raises(DeepLanguageError, match="--learning-curve"):
        load_learning_curve(tmp_path / "learning_curve.json")


@pytest.mark.slow
def test_a_small_real_curve_on_an_easy_problem(tmp_path):
    from core.identify.clips import TrainConfig
    from core.identify.learning_curve import learning_curve
    from tests.conftest import tone_dataset

    tone_dataset(tmp_path / "data", np.random.default_rng(0))
    config = TrainConfig(data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), model="gmm-supervector",
                         model_config={"n_components": 4, "ubm_frames": 3000, "ubm_iterations": 10,
                                       "backend": "gauss", "backend_dim": 8},
                         window_seconds=1.0, hop_seconds=0.5, threads=1)
    seen = []
    # Restricted to both languages, listed in the other order: the same answers must come back.
    curve = learning_curve(config, minutes=(0.05, None), n_folds=2, on_progress=lambda d, t, **m: seen.append(d),
                           languages=["low", "high"])
    assert curve["languages"] == ["high", "low"] and curve["chance"] == 0.5 and len(curve["accuracy"]) == 2
    assert curve["minutes"][0] < curve["minutes"][1]  # 0.05 min is less than a clip: one clip per language
    assert curve["accuracy"][1] >= 0.9 and all(lo <= a <= hi for a, lo, hi in
                                               zip(curve["accuracy"], curve["ci_low"], curve["ci_high"]))
    assert seen[-1] == 2 * 3
    assert set(curve["minutes_for"]) == {"0.4", "0.6", "0.8"} and curve["minutes_for"]["0.8"] == curve["minutes_for_80"]
    restricted = curve["restricted"]
    assert restricted["languages"] == ["low", "high"] and restricted["n_clips"] == 24
    assert restricted["accuracy"] == curve["accuracy"] and restricted["chance"] == 0.5

    with pytest.raises(UsageError, match="--languages: unknown language.*nope.*knows high, low"):
        learning_curve(config, minutes=(None,), n_folds=2, languages=["high", "nope"])


@pytest.mark.slow
def test_cli_writes_the_curve_the_page_reads(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from core.identify.clips import TrainConfig
    from core.identify.train import train
    from tests.conftest import tone_dataset

    tone_dataset(tmp_path / "data", np.random.default_rng(1))
    config = TrainConfig(data_dir=str(tmp_path / "data"), model="gmm-supervector", threads=1,
                         model_config={"n_components": 4, "ubm_frames": 3000, "ubm_iterations": 10,
                                       "fit_on": "clips", "backend_dim": 8}, window_seconds=1.0, hop_seconds=0.5)
    run_dir = train(config, runs_dir=tmp_path / "runs")
    out = tmp_path / "learning_curve.json"
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "core", "evaluate", "--learning-curve", "--checkpoint",
                             str(run_dir / "best.pt"), "--data", str(tmp_path / "data"), "--minutes", "0.05,all",
                             "--folds", "2", "--out", str(out)], cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    curve = load_learning_curve(out)
    assert {"minutes", "accuracy", "ci_low", "ci_high", "power_law", "minutes_for_80", "chance", "languages",
            "command"} <= set(curve)
    assert len(curve["minutes"]) == 2 and "min/language" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "core", "evaluate", "--learning-curve", "--checkpoint",
                          str(run_dir / "best.pt"), "--data", str(tmp_path / "data"), "--minutes", "one"],
                         cwd=root, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--minutes" in bad.stderr and "Traceback" not in bad.stderr


def _tone_config(tmp_path, augment=("noise",)):
    from core.identify.clips import TrainConfig
    from tests.conftest import tone_dataset

    tone_dataset(tmp_path / "data", np.random.default_rng(0))
    return TrainConfig(data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), model="gmm-supervector",
                       model_config={"n_components": 4, "ubm_frames": 3000, "ubm_iterations": 10, "fit_on": "clips",
                                     "augment": list(augment), "backend_dim": 8},
                       window_seconds=1.0, hop_seconds=0.5, threads=1)


def test_supervectors_go_to_disk_a_chunk_at_a_time_and_the_folder_is_removed(tmp_path, monkeypatch):
    from core.identify import gmm, learning_curve as module, vectors

    config = _tone_config(tmp_path)
    monkeypatch.setattr(gmm, "STORE_UNITS", 4)
    appended, clips_at_once, fitted_on = [], [], []
    append, supervectors, fit_backend = vectors.VectorStore.append, gmm.clip_supervectors, module.fit_backend
    monkeypatch.setattr(vectors.VectorStore, "append", lambda self, blocks: (appended.append(len(blocks)),
                                                                            append(self, blocks))[1])
    monkeypatch.setattr(gmm, "clip_supervectors", lambda model, raw, *a, **k: (clips_at_once.append(len(raw)),
                                                                               supervectors(model, raw, *a, **k))[1])
    monkeypatch.setattr(module, "fit_backend", lambda model, balanced, x, y, n, rows=None: (
        fitted_on.append((type(x), x.dtype, len(x), rows)), fit_backend(model, balanced, x, y, n, rows))[1])
    seen = []
    curve = module.learning_curve(config, minutes=(0.05, None), n_folds=2, on_progress=lambda d, t, **m: seen.append(d))
    assert seen == [2, 3, 5, 6]  # progress as before: a fold's supervectors count a step, told with its budgets
    assert max(appended) <= 4 and max(clips_at_once) == 1  # a chunk of clips in RAM, never a fold's
    for kind, dtype, n_rows, rows in fitted_on:  # every backend reads its budget's rows of the fold's store
        assert kind is np.memmap and dtype == np.float16 and rows is not None and len(rows) <= n_rows
    assert len(fitted_on[0][3]) < len(fitted_on[1][3]) == fitted_on[1][2]  # a budget, then all (clips and copies)
    assert len(curve["accuracy"]) == 2
    assert not list((tmp_path / "cache").glob("learning-curve-*"))


def test_an_interrupted_curve_leaves_no_supervectors_behind(tmp_path):
    from core.identify.learning_curve import learning_curve

    config = _tone_config(tmp_path, augment=())

    def interrupt(done, total, **metrics):
        assert list((tmp_path / "cache").glob("learning-curve-*/fold0/store/vectors.f16"))  # on disk while it runs
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        learning_curve(config, minutes=(None,), n_folds=2, on_progress=interrupt)
    assert not list((tmp_path / "cache").glob("learning-curve-*"))


@pytest.mark.slow
def test_on_disk_float16_supervectors_give_the_in_ram_curve_on_real_speech(cv_sample, tmp_path, monkeypatch):
    from core.audio.features import FeatureConfig
    from core.identify import gmm, learning_curve as module
    from core.identify.clips import TrainConfig

    config = TrainConfig(data_dir=str(cv_sample), cache_dir=str(tmp_path / "cache"), model="gmm-supervector",
                         languages=("de", "es", "ja"), threads=1,
                         model_config={"n_components": 8, "ubm_frames": 5000, "ubm_iterations": 10, "fit_on": "clips",
                                       "augment": ["noise"]})
    on_disk = module.learning_curve(config, minutes=(0.5, None), n_folds=2)
    fps = FeatureConfig.from_dict(config.features).frames_per_second

    def in_ram(config, clips, model, train_part, folder, seed):
        """What the curve did before: every supervector of the fold (clips, then copies) in RAM as float64."""
        folder.mkdir()  # the curve removes the fold's folder
        units = gmm.clip_units(config, clips, train_part)
        gmm.fit_ubm(model, [unit.load for unit in units[: len(train_part)]], seed)
        blocks = [gmm.clip_supervectors(model, u.load(), round(3 * fps), round(fps))[0] for u in units]
        return np.concatenate(blocks), np.repeat(np.tile(train_part, 2), [len(b) for b in blocks])

    monkeypatch.setattr(module, "fold_supervectors", in_ram)
    reference = module.learning_curve(config, minutes=(0.5, None), n_folds=2)
    assert on_disk["n_clips"] == 220 and on_disk["minutes"] == reference["minutes"]
    assert on_disk["accuracy"] == reference["accuracy"]  # float16 rounding flips no answer here
    assert on_disk["ci_low"] == pytest.approx(reference["ci_low"]) and 0.33 < on_disk["accuracy"][1] < 1
