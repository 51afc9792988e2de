"""core.identify.learning_curve: budgets of minutes per language, the power law, and a small real curve."""

import numpy as np
import pandas as pd
import pytest

from core.errors import DeepLanguageError
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
    from core.audio.decode import write_wav
    from core.identify.clips import TrainConfig
    from core.identify.learning_curve import learning_curve
    from tests.conftest import tone_clip

    rng = np.random.default_rng(0)
    for language in ("low", "high"):
        for speaker in range(6):
            folder = tmp_path / "data" / language / f"{language}{speaker}"
            folder.mkdir(parents=True)
            for i in range(2):
                write_wav(folder / f"{i}.wav", tone_clip(language, rng))
    config = TrainConfig(data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), model="gmm-supervector",
                         model_config={"n_components": 4, "ubm_frames": 3000, "ubm_iterations": 10,
                                       "backend": "gauss", "backend_dim": 8},
                         window_seconds=1.0, hop_seconds=0.5, threads=1)
    seen = []
    curve = learning_curve(config, minutes=(0.05, None), n_folds=2, on_progress=lambda d, t, **m: seen.append(d))
    assert curve["languages"] == ["high", "low"] and curve["chance"] == 0.5 and len(curve["accuracy"]) == 2
    assert curve["minutes"][0] < curve["minutes"][1]  # 0.05 min is less than a clip: one clip per language
    assert curve["accuracy"][1] >= 0.9 and all(lo <= a <= hi for a, lo, hi in
                                               zip(curve["accuracy"], curve["ci_low"], curve["ci_high"]))
    assert seen[-1] == 2 * 3
