import tracemalloc

import numpy as np

from core.identify.metrics import bootstrap_ci


def one_draw_ci(correct, groups, n=2000, seed=0):
    """The interval as it was computed before chunking: every resample drawn at once."""
    names, inverse = np.unique(groups, return_inverse=True)
    hits = np.bincount(inverse, weights=correct.astype(float), minlength=len(names))
    sizes = np.bincount(inverse, minlength=len(names))
    draws = np.random.default_rng(seed).integers(0, len(names), size=(n, len(names)))
    means = hits[draws].sum(1) / sizes[draws].sum(1)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def test_the_chunked_bootstrap_gives_the_one_draw_interval_for_a_fixed_seed(monkeypatch):
    rng = np.random.default_rng(3)
    for n_speakers in (7, 301, 3001):  # odd counts too: a chunk must not cut the generator's stream
        groups = rng.integers(0, n_speakers, size=5 * n_speakers)
        correct = rng.random(len(groups)) < 0.7
        for chunk in (64, 1000):
            monkeypatch.setattr("core.identify.metrics.CHUNK_DRAWS", chunk)
            assert bootstrap_ci(correct, groups) == one_draw_ci(correct, groups)
            assert bootstrap_ci(correct, groups, n=37, seed=5) == one_draw_ci(correct, groups, n=37, seed=5)


def test_the_bootstrap_s_memory_does_not_grow_with_resamples_x_speakers():
    rng = np.random.default_rng(0)
    groups = np.arange(20_000).repeat(2)  # 2000 x 20k speakers drawn at once: 320 MB of indices alone
    correct = rng.random(len(groups)) < 0.5
    tracemalloc.start()
    low, high = bootstrap_ci(correct, groups)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert 0.4 < low < 0.5 < high < 0.6
    assert peak < 100e6, f"{peak / 1e6:.0f} MB"
