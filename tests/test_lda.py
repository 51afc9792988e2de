"""core.identify.lda and core.identify.ivector: i-vector-style backends learn planted languages; the i-vector
extractor recovers a planted low-rank factor; the fusion weighs an informative system over a useless one."""

import numpy as np
import pytest

from core.identify.fusion import LinearFusion
from core.identify.ivector import TotalVariability
from core.identify.lda import LDABackend, parse_variant


def _planted(n: int = 400, n_classes: int = 4, dim: int = 300, seed: int = 0):
    """Classes differ along a few directions of a high-dimensional space; per-clip scale varies (long vs short clips)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    centres = rng.normal(0, 1.0, (n_classes, dim))
    x = centres[y] * 0.4 + rng.normal(0, 1, (n, dim))
    return x * rng.uniform(0.5, 2.0, (n, 1)), y


@pytest.mark.parametrize("variant", ["lda-gauss-p100", "lda-cosine-p100", "lda-plda-p100", "lda-gauss-p100-noln"])
def test_lda_backends_learn_planted_classes(variant):
    x, y = _planted()
    backend = parse_variant(variant).fit(x[:300], y[:300])
    p = backend.predict_proba(x[300:])
    assert p.shape == (100, 4) and np.allclose(p.sum(1), 1)
    assert (p.argmax(1) == y[300:]).mean() > 0.8  # chance is 0.25


def test_unknown_variant_parts_are_refused_and_other_names_are_not_lda():
    assert parse_variant("lr") is None
    with pytest.raises(ValueError):
        parse_variant("lda-gauss-q3")


def test_length_norm_undoes_a_clip_scale():
    x, y = _planted()
    backend = LDABackend(pca_dim=100).fit(x, y)
    louder = backend.mean_ + 3 * (x[:5] - backend.mean_)  # the same clip's deviation, three times as strong
    assert np.allclose(backend.embed(x[:5]), backend.embed(louder), atol=1e-6)
    assert np.allclose(np.linalg.norm(backend.embed(x), axis=1), np.sqrt(backend.lda_.shape[1]))


def test_ivector_extractor_recovers_a_planted_factor():
    rng = np.random.default_rng(0)
    k, d, rank, n = 16, 6, 4, 400
    t = rng.normal(size=(k, d, rank))
    w = rng.normal(size=(n, rank))
    counts = rng.uniform(2, 30, (n, k))
    first = counts[:, :, None] * (np.einsum("kdr,nr->nkd", t, w) + rng.normal(size=(n, k, d)) / np.sqrt(counts[:, :, None]))
    estimate = TotalVariability(rank, iterations=15).fit(counts, first.reshape(n, -1)).transform(counts, first.reshape(n, -1))
    assert estimate.shape == (n, rank)
    mapping = np.linalg.lstsq(estimate, w, rcond=None)[0]  # the factor is identified up to a rotation
    assert 1 - ((estimate @ mapping - w) ** 2).sum() / (w ** 2).sum() > 0.95


def test_fusion_weighs_the_informative_system():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    good = np.log(np.full((600, 3), 0.2))
    good[np.arange(600), y] = np.log(0.6)
    noise = np.log(rng.dirichlet(np.ones(3), 600))
    fusion = LinearFusion().fit(np.stack([good, noise]), y)
    assert fusion.alpha_[0] > 1.0 and abs(fusion.alpha_[1]) < 0.2
    p = fusion.predict_proba(np.stack([good, noise]))
    assert np.allclose(p.sum(1), 1) and (p.argmax(1) == y).mean() == 1.0
