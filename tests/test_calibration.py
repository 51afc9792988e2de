"""core.identify.calibration: temperature scaling recovers a known over-confidence, ECE and the "ok" rule."""

import numpy as np
import torch

from core.identify.calibration import (calibration_entry, choose_ok_rule, fit_temperature, ok_mask,
                                       precision_lower_bound, reliability, temper)
from core.identify.predict import calibrate, is_ok


def _sampled(n: int = 4000, n_classes: int = 6, seed: int = 0, spread: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """True probabilities and labels drawn from them: perfectly calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, spread, (n, n_classes))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(n_classes, p=row) for row in p])
    return p, labels


def test_temperature_undoes_a_known_overconfidence():
    p, labels = _sampled()
    overconfident = temper(p, 0.5)  # logits doubled
    assert abs(fit_temperature(overconfident, labels) - 2.0) < 0.25
    assert abs(fit_temperature(p, labels) - 1.0) < 0.15


def test_ece_is_small_when_calibrated_and_large_when_not():
    p, labels = _sampled()
    ece, bins = reliability(p, labels)
    ece_over, _ = reliability(temper(p, 0.3), labels)
    assert ece < 0.04 < ece_over
    assert sum(b["count"] for b in bins) == len(labels)
    assert all(0 <= b["confidence"] <= 1 and 0 <= b["accuracy"] <= 1 for b in bins)


def test_ok_rule_meets_its_promise_on_the_data_it_was_chosen_on():
    p, labels = _sampled(seed=1, spread=3.0)  # confident enough for the promise
    rule = choose_ok_rule(p, labels)
    answered = ok_mask(p, rule["min_probability"], rule["min_margin"])
    assert rule["meets_target"] and answered.mean() >= 1 / 3
    assert (p.argmax(1) == labels)[answered].mean() >= 0.8
    assert abs(answered.mean() - rule["coverage"]) < 1e-9


def test_ok_rule_keeps_its_promise_on_new_clips_not_just_on_those_it_was_chosen_on():
    # The rule with the most coverage at exactly the target on the fitting clips is optimistic elsewhere:
    # it must clear the target by its precision's standard error, and so hold on clips drawn afresh.
    p, labels = _sampled(n=800, seed=3, spread=4.0)
    rule = choose_ok_rule(p, labels, min_precision=0.95, min_coverage=0.3)
    answered = ok_mask(p, rule["min_probability"], rule["min_margin"])
    assert rule["meets_target"] and rule["precision"] > 0.955
    fresh, fresh_labels = _sampled(n=20000, seed=4, spread=4.0)
    kept = ok_mask(fresh, rule["min_probability"], rule["min_margin"])
    assert (fresh.argmax(1) == fresh_labels)[kept].mean() >= 0.95 and answered.any()


def test_precision_lower_bound_tightens_with_more_clips():
    assert precision_lower_bound(19, 20) < precision_lower_bound(950, 1000) < 0.95 < precision_lower_bound(980, 1000)
    assert precision_lower_bound(0, 0) == 0.0


def test_an_impossible_promise_is_flagged_not_faked():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(4), 500)
    labels = rng.integers(0, 4, 500)  # the probabilities know nothing
    rule = choose_ok_rule(p, labels)
    assert not rule["meets_target"] and rule["coverage"] >= 1 / 3


def test_identify_applies_the_same_temperature_and_rule():
    p, labels = _sampled(n=50, seed=3)
    np.testing.assert_allclose(calibrate(torch.from_numpy(p), 1.7).numpy(), temper(p, 1.7), atol=1e-9)
    rule = {"min_probability": 0.5, "min_margin": 0.2}
    assert [is_ok(torch.from_numpy(row), rule) for row in p] == ok_mask(p, 0.5, 0.2).tolist()


def test_calibration_entry_has_what_the_page_draws():
    p, labels = _sampled(n=600, seed=4)
    entry = calibration_entry(temper(p, 0.5), labels, np.arange(600) % 100, source="test")
    assert entry["ece_after"] < entry["ece_before"]
    assert {"ece_before", "ece_after", "bins", "ok_rule", "ok_precision", "ok_coverage", "n_clips",
            "speakers", "temperature"} <= set(entry)
    assert entry["speakers"] == 100 and entry["n_clips"] == 600
