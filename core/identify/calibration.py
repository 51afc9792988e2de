"""Confidence that means what it says: temperature scaling, calibration error, the "ok" rule.

All three are fitted on *validation* speakers' probabilities (out-of-fold predictions of speakers the
scoring model never trained on), never on test speakers:

* :func:`fit_temperature`: the T minimising the negative log-likelihood of softmax(log p / T);
* :func:`reliability`: expected calibration error (ECE, 10 equal-width confidence bins) and the bins'
  data for a reliability diagram;
* :func:`choose_ok_rule`: the thresholds (top probability, lead over the runner-up) that answer the most
  clips while at least ``min_precision`` of the answered ones are right.

:func:`calibration_entry` bundles them into the ``calibration`` dict stored in a checkpoint.
"""

from __future__ import annotations

import numpy as np

N_BINS = 10
OK_PRECISION = 0.8  # an "ok" answer is right at least this often on validation speakers ...
OK_COVERAGE = 1 / 3  # ... while answering at least this fraction of clips
PRETRAINED_OK = {"min_precision": 0.95, "min_coverage": 0.8}  # the promise of an identifier on a pretrained encoder
PRECISION_Z = 1.645  # the ok rule's precision promise holds with 95 % confidence (one-sided)
PROBABILITY_GRID = np.round(np.concatenate([np.arange(0.2, 0.96, 0.025), [0.97, 0.98, 0.99]]), 3)
MARGIN_GRID = np.round(np.arange(0.0, 0.61, 0.05), 3)


def temper(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) of probabilities ``(n, n_classes)``."""
    z = np.log(np.clip(probabilities, 1e-30, None)) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The temperature (0.05-20) that minimises the mean negative log-likelihood of ``targets``."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        p = temper(probabilities, float(np.exp(log_t)))
        return float(-np.log(np.clip(p[np.arange(len(targets)), targets], 1e-30, None)).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded").x))


def reliability(probabilities: np.ndarray, targets: np.ndarray, n_bins: int = N_BINS) -> tuple[float, list[dict]]:
    """ECE and the non-empty bins ``[{"confidence", "accuracy", "count"}]`` of top probability vs. being right."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == targets
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        mask = which == b
        if mask.any():
            bins.append({"confidence": float(confidence[mask].mean()), "accuracy": float(correct[mask].mean()),
                         "count": int(mask.sum())})
            ece += mask.mean() * abs(confidence[mask].mean() - correct[mask].mean())
    return float(ece), bins


def ok_mask(probabilities: np.ndarray, min_probability: float, min_margin: float) -> np.ndarray:
    """Which rows ``(n, n_classes)`` an "ok" rule answers (the same test as core.identify.predict.is_ok)."""
    ranked = np.sort(probabilities, axis=1)[:, ::-1]
    margin = ranked[:, 0] - (ranked[:, 1] if ranked.shape[1] > 1 else 0.0)
    return (ranked[:, 0] >= min_probability) & (margin >= min_margin)


def precision_lower_bound(right: int, n: int, z: float = PRECISION_Z) -> float:
    """The one-sided Wilson lower bound of a proportion ``right / n`` (z 1.645: 95 % confidence)."""
    if n == 0:
        return 0.0
    p = right / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float((centre - spread) / (1 + z * z / n))


def choose_ok_rule(probabilities: np.ndarray, targets: np.ndarray, min_precision: float = OK_PRECISION,
                   min_coverage: float = OK_COVERAGE) -> dict:
    """The grid rule answering the most clips whose precision is at least ``min_precision`` with 95 % confidence
    (its Wilson lower bound): the best rule on the fitting clips is optimistic on new speakers, by about the
    precision's standard error (measured: 94.7 % held-out for a rule fitted to 95 %).

    When none reaches the precision with ``min_coverage``, the most precise rule that still answers
    ``min_coverage`` of the clips is returned with ``meets_target: False``: better an honest weaker
    promise than a rule that answers almost nothing.
    """
    correct = probabilities.argmax(1) == targets
    candidates = []
    for p in PROBABILITY_GRID:
        for m in MARGIN_GRID:
            mask = ok_mask(probabilities, p, m)
            if mask.any():
                right = int(correct[mask].sum())
                candidates.append((right / int(mask.sum()), float(mask.mean()), float(p), float(m),
                                   precision_lower_bound(right, int(mask.sum()))))
    good = [c for c in candidates if c[4] >= min_precision and c[1] >= min_coverage]
    if good:
        precision, coverage, p, m, _ = max(good, key=lambda c: (c[1], c[0]))
        meets = True
    else:
        wide = [c for c in candidates if c[1] >= min_coverage] or candidates
        precision, coverage, p, m, _ = max(wide, key=lambda c: (c[0], c[1]))
        meets = False
    return {"min_probability": p, "min_margin": m, "precision": precision, "coverage": coverage,
            "meets_target": meets, "target_precision": min_precision, "target_coverage": min_coverage}


def calibration_entry(probabilities: np.ndarray, targets: np.ndarray, speakers: np.ndarray, source: str,
                      min_precision: float = OK_PRECISION, min_coverage: float = OK_COVERAGE) -> dict:
    """The checkpoint's ``calibration`` dict from validation probabilities ``(n, n_classes)`` (uncalibrated).

    ``min_precision`` and ``min_coverage``: what the "ok" rule must promise (a pretrained identifier promises
    more than one trained from scratch on minutes of speech: see :data:`PRETRAINED_OK`)."""
    temperature = fit_temperature(probabilities, targets)
    calibrated = temper(probabilities, temperature)
    ece_before, bins_before = reliability(probabilities, targets)
    ece_after, bins = reliability(calibrated, targets)
    rule = choose_ok_rule(calibrated, targets, min_precision, min_coverage)
    return {"temperature": temperature, "ece_before": ece_before, "ece_after": ece_after, "bins": bins,
            "bins_before": bins_before,
            "ok_rule": {"min_probability": rule["min_probability"], "min_margin": rule["min_margin"]},
            "ok_precision": rule["precision"], "ok_coverage": rule["coverage"], "ok_meets_target": rule["meets_target"],
            "ok_target": {"precision": min_precision, "coverage": min_coverage},
            "accuracy": float((probabilities.argmax(1) == targets).mean()),
            "n_clips": int(len(targets)), "speakers": int(len(set(np.asarray(speakers).tolist()))), "source": source}
