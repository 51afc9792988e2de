import numpy as np
import pytest

import core.study.projections
from core.errors import DeepLanguageError
from core.study.projections import project, project_sample, projection_key, sample_rows


@pytest.fixture()
def points():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0, 1, (40, 16)), rng.normal(4, 1, (40, 16))]).astype(np.float32)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projections_are_n_by_2_and_keep_clusters_apart(points, method, tmp_path):
    result = project(points, method, seed=0, cache_dir=tmp_path)
    assert result.shape == (80, 2) and result.dtype == np.float32
    a, b = result[:40].mean(0), result[40:].mean(0)
    assert np.linalg.norm(a - b) > result[:40].std(0).mean()


def test_a_second_call_is_read_from_disk(points, tmp_path, monkeypatch):
    first = project(points, "pca", 0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("pca-*.npy"))) == 1

    def refuse(*args):
        raise AssertionError("recomputed a cached projection")

    monkeypatch.setattr(core.study.projections, "_reducer", refuse)
    assert np.array_equal(project(points, "pca", 0, cache_dir=tmp_path), first)
    assert projection_key(points, "pca", 0) != projection_key(points, "pca", 1)
    assert projection_key(points, "pca", 0) != projection_key(points + 1e-3, "pca", 0)


def test_bad_requests_are_clear_errors(points):
    with pytest.raises(DeepLanguageError, match="unknown projection"):
        project(points, "mds")
    with pytest.raises(DeepLanguageError, match="at least 3 points"):
        project(points[:2], "pca")


def test_an_input_over_the_cap_projects_to_the_cap_and_the_same_rows_every_time(tmp_path):
    X = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    rows, xy = project_sample(X, "pca", seed=0, max_points=100, cache_dir=tmp_path)
    assert xy.shape == (100, 2) and len(np.unique(rows)) == 100 and np.all(np.diff(rows) > 0)
    again, xy_again = project_sample(X, "pca", seed=0, max_points=100, cache_dir=None)
    assert np.array_equal(rows, again) and np.allclose(xy, xy_again)
    assert np.allclose(xy, project(X[rows], "pca", 0, cache_dir=None))
    assert not np.array_equal(rows, sample_rows(300, 100, seed=1))  # the seed draws the sample
    under, _ = project_sample(X[:80], "pca", seed=0, max_points=100, cache_dir=None)
    assert np.array_equal(under, np.arange(80))  # under the cap: every point, in order


def test_the_default_cap_is_stated_and_bounds_the_points():
    assert core.study.projections.MAX_POINTS == 5000
    assert len(sample_rows(57_280)) == 5000 and len(sample_rows(4999)) == 4999
