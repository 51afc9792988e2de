"""core.study.stats: paired speed-ups, the sign-flip test, Holm, and the Mantel similarity test."""

import math

import numpy as np
import pandas as pd
import pytest

from core.errors import DeepLanguageError
from core.study import stats

LANGUAGES = ["es", "it", "fr", "de", "ja", "ru"]


def planted_results(similarity: pd.DataFrame, strength: float, seeds: int = 5, noise: float = 0.05,
                    targets=("es", "it", "ja"), seed: int = 0) -> pd.DataFrame:
    """A results table in study_results' columns whose speed-ups grow with ``strength * similarity``."""
    rng = np.random.default_rng(seed)
    rows = []
    for target in targets:
        for s in range(seeds):
            base = 400 * math.exp(rng.normal(0, noise))
            rows.append({"pretrain": "none", "target": target, "seed": s, "pretrain_epochs": 0,
                         "steps_to_threshold": base, "auc": 1.0})
            for language in LANGUAGES:
                log_speedup = strength * similarity.loc[language, target] + rng.normal(0, noise)
                rows.append({"pretrain": language, "target": target, "seed": s, "pretrain_epochs": 2,
                             "steps_to_threshold": base / math.exp(log_speedup),
                             "auc": 1.0 / math.exp(log_speedup / 2)})
    return pd.DataFrame(rows)


@pytest.fixture
def similarity() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    upper = rng.uniform(0, 1, size=(len(LANGUAGES), len(LANGUAGES)))
    matrix = np.triu(upper, 1) + np.triu(upper, 1).T + np.eye(len(LANGUAGES))
    return pd.DataFrame(matrix, index=LANGUAGES, columns=LANGUAGES)


def test_holm_matches_a_hand_computed_case():
    # sorted 0.01, 0.02, 0.03, 0.04 (m = 4): 0.04, 0.06, 0.06 (monotone), 0.06 (monotone)
    adjusted = stats.holm([0.03, 0.01, 0.04, 0.02])
    np.testing.assert_allclose(adjusted, [0.06, 0.04, 0.06, 0.06])
    # capped at 1, NaN left alone and not counted in m
    np.testing.assert_allclose(stats.holm([0.5, math.nan, 0.4]), [0.8, math.nan, 0.8])


def test_sign_flip_test_is_exact_and_two_sided():
    # 5 positive values: only all-plus and all-minus are as extreme -> 2 / 32
    assert stats.sign_flip_test(np.array([1.0, 2.0, 3.0, 4.0, 5.0])) == pytest.approx(2 / 32)
    assert stats.smallest_p(5) == pytest.approx(2 / 32)
    assert stats.sign_flip_test(np.array([1.0, -1.0, 1.0, -1.0])) == pytest.approx(1.0)
    assert stats.sign_flip_test(np.array([-3.0, -2.0, -4.0])) == stats.sign_flip_test(np.array([3.0, 2.0, 4.0]))


def test_cells_pair_by_seed_and_report_speedup_with_ci(similarity):
    results = planted_results(similarity, strength=1.0, noise=0.01)
    cells = stats.cell_statistics(results)
    assert len(cells) == len(LANGUAGES) * 3
    es_on_it = cells[(cells["pretrain"] == "es") & (cells["target"] == "it")].iloc[0]
    expected = math.exp(similarity.loc["es", "it"])
    assert es_on_it["speedup"] == pytest.approx(expected, rel=0.05)
    low, high = es_on_it["speedup_ci95"]
    assert low <= es_on_it["speedup"] <= high
    assert es_on_it["n_pairs"] == 5 and es_on_it["p_min"] == pytest.approx(2 / 32)
    assert (cells["p_holm"] >= cells["p"]).all()
    # 5 seeds: the exact test cannot go below 2/32; the t-test can single out a clear speed-up.
    assert es_on_it["p"] == pytest.approx(2 / 32) and es_on_it["p_t_holm"] < 0.01
    assert stats.paired_t_test(np.array([0.1, -0.1, 0.05, -0.05])) > 0.5
    assert es_on_it["auc_speedup"] == pytest.approx(math.sqrt(expected), rel=0.05)


def test_a_run_that_never_crossed_counts_as_the_slowest_and_is_flagged(similarity):
    results = planted_results(similarity, strength=0.0, noise=0.01)
    slow = results.index[(results["pretrain"] == "ja") & (results["target"] == "es") & (results["seed"] == 0)]
    results.loc[slow, "steps_to_threshold"] = math.nan
    cells = stats.cell_statistics(results)
    ja_on_es = cells[(cells["pretrain"] == "ja") & (cells["target"] == "es")].iloc[0]
    assert ja_on_es["n_censored"] == 1
    assert ja_on_es["speedup"] < 1.0
    # With the step budget as the bound, that seed's speed-up is steps(none) / budget.
    paired = stats.paired_log_speedups(results, censor_at=4000.0)
    row = paired[(paired["pretrain"] == "ja") & (paired["target"] == "es") & (paired["seed"] == 0)].iloc[0]
    assert row["censored"] and row["value"] == 4000.0
    assert row["log_speedup"] == pytest.approx(math.log(row["baseline"] / 4000.0))


def test_mantel_finds_a_planted_correlation_and_not_a_shuffled_one(similarity):
    planted = stats.similarity_test(planted_results(similarity, strength=1.0), similarity)
    assert planted["rho"] > 0.8
    assert planted["p"] < 0.01
    assert planted["exact"] and planted["n_permutations"] == math.factorial(len(LANGUAGES))
    assert planted["ci95"][0] > 0.5
    # The same speed-ups against a similarity whose labels are shuffled carry no signal.
    shuffled_labels = list(np.random.default_rng(3).permutation(LANGUAGES))
    shuffled = similarity.rename(index=dict(zip(LANGUAGES, shuffled_labels)),
                                 columns=dict(zip(LANGUAGES, shuffled_labels)))
    nulls = [stats.similarity_test(planted_results(similarity, strength=0.0, seed=s), shuffled)["p"]
             for s in range(3)]
    assert max(nulls) > 0.05


def test_similarity_test_leaves_out_controls_and_self_pairs(similarity):
    results = planted_results(similarity, strength=1.0)
    controls = results[results["pretrain"] == "es"].assign(pretrain="es:full", steps_to_threshold=1.0)
    pairs = stats.similarity_pairs(stats.paired_log_speedups(pd.concat([results, controls])))
    assert not (pairs["language"] == pairs["target"]).any()
    assert len(pairs) == (len(LANGUAGES) - 1) * 3


def test_similarity_without_a_language_names_it(similarity):
    with pytest.raises(DeepLanguageError, match="ja"):
        stats.similarity_test(planted_results(similarity, strength=1.0), similarity.drop(index="ja", columns="ja"))


def test_too_few_pairs_say_why(similarity):
    results = planted_results(similarity, strength=1.0, targets=("es",))
    results = results[results["pretrain"].isin(["none", "it", "es"])]
    out = stats.similarity_test(results, similarity)
    assert math.isnan(out["rho"]) and "fewer than 3" in out["reason"]


def test_a_run_below_the_threshold_from_the_start_counts_as_one_step(similarity):
    results = planted_results(similarity, strength=0.0, noise=0.01)
    fast = (results["pretrain"] == "es") & (results["target"] == "it")
    results.loc[fast, "steps_to_threshold"] = 0.0
    cells = stats.cell_statistics(results)
    cell = cells[(cells["pretrain"] == "es") & (cells["target"] == "it")].iloc[0]
    assert cell["n_pairs"] == 5
    assert cell["speedup"] == pytest.approx(400, rel=0.05)  # steps(none) / 1 step


def test_mantel_enumerates_all_720_labellings_of_6_languages_exactly():
    from itertools import permutations

    from scipy.stats import spearmanr

    languages = ["a", "b", "c", "d", "e", "f"]
    rng = np.random.default_rng(7)
    upper = np.triu(rng.uniform(size=(6, 6)), 1)
    matrix = pd.DataFrame(upper + upper.T, index=languages, columns=languages)
    pairs = pd.DataFrame([(x, y) for x in languages for y in languages if x != y], columns=["language", "target"])
    pairs["value"] = stats.lookup(matrix, pairs["language"], pairs["target"]) + rng.normal(0, 0.3, len(pairs))
    out = stats.mantel_test(pairs, matrix)
    assert out["exact"] and out["n_permutations"] == 720 and out["p_min"] == pytest.approx(1 / 720)
    # The same p by brute force: Spearman over every relabelling of the similarity matrix.
    observed = spearmanr(stats.lookup(matrix, pairs["language"], pairs["target"]), pairs["value"])[0]
    values = matrix.to_numpy()
    index = {lang: i for i, lang in enumerate(languages)}
    rows, cols = pairs["language"].map(index).to_numpy(), pairs["target"].map(index).to_numpy()
    null = [spearmanr(values[np.array(p)[rows], np.array(p)[cols]], pairs["value"])[0]
            for p in permutations(range(6))]
    assert out["rho"] == pytest.approx(observed)
    assert out["p"] == pytest.approx(np.mean(np.abs(null) >= abs(observed) - 1e-12))
    # Values that are the similarity itself: only the true labelling (of 720) is as extreme.
    pairs["value"] = stats.lookup(matrix, pairs["language"], pairs["target"])
    assert stats.mantel_test(pairs, matrix)["p"] == pytest.approx(1 / 720)


def test_holm_across_similarity_measures_keeps_their_order_and_skips_missing_ones():
    from core.study.report import holm_across_methods

    methods = [{"method": "family", "p": 0.04, "auc": {"p": 0.5}}, {"method": "confusion", "p": 0.01},
               {"method": "phonemes", "p": None}, {"method": "whisper-centroid", "p": 0.03, "auc": {"p": 0.01}}]
    holm_across_methods(methods)
    adjusted = {m["method"]: m["p_holm"] for m in methods}
    assert adjusted["confusion"] == pytest.approx(0.03)  # smallest of 3 valid p: x3
    assert adjusted["whisper-centroid"] == pytest.approx(0.06)  # second: x2
    assert adjusted["family"] == pytest.approx(0.06)  # third: x1 = 0.04, raised to keep the order
    assert math.isnan(adjusted["phonemes"])
    assert methods[0]["auc"]["p_holm"] == pytest.approx(0.5) and methods[3]["auc"]["p_holm"] == pytest.approx(0.02)
