"""Backends fitted over chunks of an on-disk float16 store give today's in-RAM scikit-learn results."""

import numpy as np
import pytest

from core.identify import vectors
from core.identify.backends import GaussianBackend, LogisticBackend


def _fixture(n_classes: int, n: int = 300, d: int = 400, seed: int = 0):
    """Separable-ish classes in more dimensions than rows (as supervectors), rounded as the store keeps them."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    centres = rng.normal(0, 1, (n_classes, d))
    x = (centres[y] * 0.3 + rng.normal(0, 1, (n, d)) * rng.uniform(0.5, 3, d)).astype(np.float16)
    return x, y


def _store(tmp_path, x: np.ndarray) -> np.ndarray:
    store = vectors.VectorStore(tmp_path / "store", x.shape[1], [f"u{i}" for i in range(4)])
    parts = np.array_split(x, 4)
    store.append(parts[:2])
    store = vectors.VectorStore(tmp_path / "store", x.shape[1], [f"u{i}" for i in range(4)])  # resumed
    assert store.n_units_done == 2
    store.append(parts[2:])
    return store.rows()


@pytest.mark.parametrize("n_classes", [2, 5])
def test_chunked_logistic_equals_sklearn(tmp_path, monkeypatch, n_classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = _fixture(n_classes)
    stored = _store(tmp_path, x)
    assert isinstance(stored, np.memmap) and np.array_equal(stored, x)
    monkeypatch.setattr(vectors, "CHUNK_ROWS", 64)  # several chunks, one partial
    rows = np.arange(20, 300)
    ours = LogisticBackend(c=0.01).fit(stored, y, rows)
    scaler = StandardScaler().fit(x[rows].astype(np.float64))
    theirs = LogisticRegression(C=0.01, max_iter=3000, class_weight="balanced").fit(
        scaler.transform(x[rows].astype(np.float64)), y[rows])
    expected = theirs.predict_proba(scaler.transform(x[:20].astype(np.float64)))
    assert np.abs(ours.predict_proba(stored, np.arange(20)) - expected).max() < 2e-3
    assert np.allclose(ours.mean_, scaler.mean_) and np.allclose(ours.scale_, scaler.scale_)


@pytest.mark.parametrize("n_classes", [2, 5])
def test_warm_started_fold_reaches_the_same_fit_in_fewer_steps(monkeypatch, n_classes):
    """A fold started from the fit on every row (another standardisation) ends where a fold started from zero
    ends, to the solver's tolerance, and gets there in fewer L-BFGS iterations."""
    import scipy.optimize

    x, y = _fixture(n_classes, n=400)
    every = LogisticBackend(c=0.01).fit(x, y)
    iterations, minimize = [], scipy.optimize.minimize

    def counted(*args, **kwargs):
        result = minimize(*args, **kwargs)
        iterations.append(result.nit)
        return result

    monkeypatch.setattr(scipy.optimize, "minimize", counted)
    fold = np.arange(80, 400)
    cold = LogisticBackend(c=0.01).fit(x, y, fold)
    warm = LogisticBackend(c=0.01, start=every).fit(x, y, fold)
    assert warm.start is every and cold.start is None
    assert iterations[1] < iterations[0]
    assert np.abs(warm.predict_proba(x, np.arange(80)) - cold.predict_proba(x, np.arange(80))).max() < 2e-3
    assert np.allclose(warm.mean_, cold.mean_) and np.allclose(warm.scale_, cold.scale_)


def test_warm_start_keeps_the_function_it_starts_from():
    """The start is the earlier fit's logits on raw rows, re-expressed in the new fit's standardisation."""
    x, y = _fixture(5, n=200)
    earlier = LogisticBackend(c=0.01).fit(x, y)
    mean, scale = x[:120].astype(np.float64).mean(0), x[:120].astype(np.float64).std(0)
    start = vectors._start(vars(earlier), earlier.classes_, mean, scale, x.shape[1], len(earlier.classes_))
    coef, intercept = start[:-5].reshape(x.shape[1], 5), start[-5:]
    z = (x.astype(np.float64) - mean) / scale
    assert np.allclose(z @ coef + intercept, vectors.project(x, earlier.mean_, earlier.scale_, earlier.coef_)
                       + earlier.intercept_)
    assert not vectors._start(vars(earlier), earlier.classes_[:4], mean, scale, x.shape[1], 4).any()  # other classes


def test_chunked_gaussian_equals_in_ram_randomized_svd(tmp_path, monkeypatch):
    from sklearn.utils.extmath import randomized_svd

    x, y = _fixture(4)
    stored = _store(tmp_path, x)
    monkeypatch.setattr(vectors, "CHUNK_ROWS", 50)
    for n in (300, 120):  # more features than rows (randomized_svd transposes) and, below, the other way round
        z = (x[:n].astype(np.float64) - x[:n].astype(np.float64).mean(0)) / (x[:n].astype(np.float64).std(0) + 1e-8)
        expected = randomized_svd(z, 30, n_iter=4, random_state=0)[2]
        backend = GaussianBackend(dim=30).fit(stored[:, :100] if n == 120 else stored, y, np.arange(n))
        if n == 120:
            z = z[:, :100]
            expected = randomized_svd(z, 30, n_iter=4, random_state=0)[2]
        assert np.abs(backend.components_ - expected).max() < 2e-3  # float16-rounded, as the checkpoint keeps it


def test_store_drops_rows_of_an_unfinished_chunk(tmp_path):
    store = vectors.VectorStore(tmp_path, 3, ["a", "b"])
    store.append([np.ones((2, 3))])
    with open(store.data, "ab") as handle:  # a killed run's rows, never counted
        handle.write(np.zeros((5, 3), dtype=np.float16).tobytes())
    again = vectors.VectorStore(tmp_path, 3, ["a", "b"])
    assert again.rows().shape == (2, 3)
    assert vectors.VectorStore(tmp_path, 3, ["a", "c"]).n_units_done == 0  # other units: start over
