import numpy as np
import pandas as pd
import pytest

from core.errors import DeepLanguageError
from core.study.linear_probe import _folds, balanced_accuracy, probe
from core.study.probes import probe_latents
from core.study.stats import compare_conditions, mean_ci, min_attainable_p, summarize_probes
from tests.test_study import tiny_study  # noqa: F401  (a shared fixture)


def speakers_data(separable: bool, n_speakers: int = 16, per_speaker: int = 6, dim: int = 20, seed: int = 0):
    """Two classes, 8 speakers each; each speaker has its own offset. Separable: class shifts 3 dims."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_speakers) % 2, per_speaker).astype(str)
    groups = np.repeat([f"s{i}" for i in range(n_speakers)], per_speaker)
    X = rng.normal(size=(len(y), dim)) + np.repeat(rng.normal(scale=0.5, size=(n_speakers, dim)), per_speaker, 0)
    if separable:
        X[:, :3] += np.where(y == "1", 2.0, -2.0)[:, None]
    return X, y, groups


def test_planted_signal_is_found_and_noise_is_not():
    found = probe(*speakers_data(True), n_permutations=19, n_bootstrap=200)
    noise = probe(*speakers_data(False), n_permutations=19, n_bootstrap=200)
    assert found["accuracy"] > 0.9 and found["p_value"] <= 0.05
    assert found["ci_low"] <= found["accuracy"] <= found["ci_high"]
    assert abs(noise["accuracy"] - noise["chance"]) < 0.25 and noise["p_value"] > 0.1
    assert found["chance"] == 0.5 and found["majority"] == 0.5 and found["n_speakers"] == 16


def test_folds_never_put_a_speaker_on_both_sides():
    X, y, groups = speakers_data(True)
    codes = np.unique(y, return_inverse=True)[1]
    for train, test in _folds(codes, groups, 4, seed=0):
        assert not set(groups[train]) & set(groups[test])


def test_too_few_speakers_is_a_clear_error_and_such_languages_are_dropped():
    X, y, groups = speakers_data(True, n_speakers=2)
    with pytest.raises(DeepLanguageError, match="two speakers per class"):
        probe(X, y, groups, n_permutations=2)
    X, y, groups = speakers_data(True)
    manifest = pd.DataFrame({"language": np.where(y == "1", "es", "it"), "speaker": groups})
    manifest.loc[:5, "language"] = "pt"  # one speaker only
    rows = probe_latents({"h": X}, manifest, "es", n_permutations=3, n_bootstrap=50)
    assert {r["task"] for r in rows} == {"target-vs-rest", "all-languages"}
    assert all(r["dropped"] == "pt" for r in rows)


def nearest_mean(x_train, y_train, x_test, k):
    """The probe written plainly: standardise, then the class mean at the least distance, each dimension
    divided by its pooled within-class variance."""
    from sklearn.preprocessing import StandardScaler

    from core.study.linear_probe import MIN_VARIANCE

    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    means = np.stack([x_train[y_train == c].mean(0) for c in range(k)])
    variance = np.maximum(((x_train - means[y_train]) ** 2).mean(0), MIN_VARIANCE)
    return (((x_test[:, None, :] - means[None]) ** 2) / variance).sum(2).argmin(1)


def test_every_labelling_is_scored_as_a_probe_fitted_on_it_alone():
    from core.study.linear_probe import _Folds

    X, _, groups = speakers_data(True)
    speakers, speaker_index = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng(0)
    for k in (2, 4):  # the binary and the many-class decision
        labellings = np.vstack([np.arange(16) % k] + [rng.permutation(np.arange(16) % k) for _ in range(5)])
        folds = _folds(labellings[0][speaker_index], groups, 4, seed=0)
        predicted, valid = _Folds(X, folds, speaker_index).predict(labellings, k, len(X))
        assert valid.all()
        for labels, got in zip(labellings, predicted):
            y = labels[speaker_index]
            expected = np.empty_like(y)
            for train, test in folds:
                expected[test] = nearest_mean(X[train], y[train], X[test], k)
            np.testing.assert_array_equal(got, expected)


def test_a_shuffle_that_leaves_a_fold_without_a_class_is_not_counted():
    from core.study.linear_probe import _Folds

    X, _, groups = speakers_data(True)
    speakers, speaker_index = np.unique(groups, return_inverse=True)
    real = np.arange(16) % 2
    lonely = np.zeros(16, dtype=int)
    lonely[0] = 1  # one speaker of class 1: the fold that holds it out has no class 1 to fit
    folds = _folds(real[speaker_index], groups, 4, seed=0)
    _, valid = _Folds(X, folds, speaker_index).predict(np.vstack([real, lonely]), 2, len(X))
    assert valid.tolist() == [True, False]


def test_balanced_accuracy_of_many_labellings_is_each_ones():
    rng = np.random.default_rng(2)
    y, p = rng.integers(0, 3, (4, 50)), rng.integers(0, 3, (4, 50))
    np.testing.assert_allclose(balanced_accuracy(y, p, 3), [balanced_accuracy(a, b, 3) for a, b in zip(y, p)])


def test_bootstrap_over_speakers_matches_resampling_their_clips():
    from core.study.linear_probe import _bootstrap

    rng = np.random.default_rng(3)
    speaker_index = np.repeat(np.arange(10), 3)
    y = np.repeat(np.arange(10) % 3, 3)
    predicted = np.where(rng.random(30) < 0.6, y, (y + 1) % 3)
    draws = np.random.default_rng(0).integers(0, 10, (50, 10))
    expected = []
    for draw in draws:
        rows = np.concatenate([np.flatnonzero(speaker_index == i) for i in draw])
        if len(np.unique(y[rows])) == 3:
            expected.append(balanced_accuracy(y[rows], predicted[rows], 3))
    got = _bootstrap(y, predicted, speaker_index, 10, 3, 50, np.random.default_rng(0))
    np.testing.assert_allclose(got, expected)


def test_balanced_accuracy_matches_sklearn():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert balanced_accuracy(y, p, 4) == pytest.approx(balanced_accuracy_score(y, p))


def test_conditions_are_compared_with_an_exact_test_and_an_effect_size():
    table = pd.DataFrame({"condition": ["none"] * 5 + ["it"] * 5,
                          "steps": [100, 110, 105, 120, 115, 60, 70, 65, 80, np.inf]})
    row = compare_conditions(table, "steps").iloc[0]
    assert row["condition"] == "it" and row["rank_biserial"] == pytest.approx(-0.6)
    assert min_attainable_p(3, 3) == pytest.approx(0.1)
    faster = compare_conditions(table.replace(np.inf, 50), "steps").iloc[0]
    assert faster["rank_biserial"] == -1 and faster["p_value"] == pytest.approx(min_attainable_p(5, 5))


def test_summaries_give_a_t_interval_over_seeds_and_combine_p_values():
    mean, low, high = mean_ci([0.6, 0.7, 0.8])
    assert mean == pytest.approx(0.7) and low < 0.6 and high > 0.8
    table = pd.DataFrame({"task": "t", "kind": "h", "condition": "none", "accuracy": [0.6, 0.7, 0.8],
                          "ci_low": 0, "ci_high": 1, "chance": 0.5, "null_mean": 0.45, "majority": 0.5,
                          "p_value": [0.04, 0.03, 0.05], "n": 100})
    row = summarize_probes(table).iloc[0]
    assert row["n_seeds"] == 3 and row["p_value"] < 0.03 and row["ci_low"] == pytest.approx(low)


@pytest.mark.slow  # trains the tiny matrix (once per session)
def test_a_matrix_study_probes_each_run_for_its_own_target(tiny_study):
    from core.study.probes import load_probes

    study, _, _ = tiny_study
    table = load_probes(study)
    lstm = table[~table["pretrain"].isin(["ae", "identify"])]
    assert set(lstm["target"]) == {"aa", "bb"}
    assert all(run.split("__")[1] == target for run, target in zip(lstm["run"], lstm["target"]))
    reference = table[table["pretrain"] == "ae"]  # the autoencoder: one code, probed for every target
    assert set(reference["target"]) == {"aa", "bb"}
