import json
import os
import shutil

import numpy as np
import pytest

from core.data import cache
from core.data import datasets
from core.audio.features import FeatureConfig, log_mel_pair
from core.audio.decode import load_audio
from core.errors import DeepLanguageError


@pytest.fixture()
def small_dataset(cv_sample, tmp_path):
    """Two locales, 8 clips each, and the path of one clip to break."""
    for lang in ("ja", "es"):
        (tmp_path / "data" / lang / "clips").mkdir(parents=True)
        lines = (cv_sample / lang / "validated.tsv").read_text().splitlines()
        keep = [lines[0]] + lines[1:9]
        for line in keep[1:]:
            name = line.split("\t")[1]
            shutil.copy(cv_sample / lang / "clips" / name, tmp_path / "data" / lang / "clips" / name)
        (tmp_path / "data" / lang / "validated.tsv").write_text("\n".join(keep) + "\n")
    broken = tmp_path / "data" / "es" / "clips" / keep[1].split("\t")[1]
    return tmp_path / "data", broken


@pytest.mark.slow
def test_prepare_caches_both_variants_and_resumes(small_dataset, tmp_path):
    data, _ = small_dataset
    manifest = datasets.read_dataset(data)
    calls = []
    index = cache.prepare(manifest, tmp_path / "cache", workers=2, on_progress=lambda d, t, **m: calls.append(d))
    assert index.attrs["new"] == 16 and not index["error"].astype(bool).any()
    assert calls[-1] == 16
    store = cache.FeatureCache(tmp_path / "cache")
    row = index.iloc[0]
    full, low = log_mel_pair(load_audio(row["path"]))
    np.testing.assert_allclose(store.load(row["key"], normalize=False), full, atol=0.01)  # float16 on disk
    np.testing.assert_allclose(store.load(row["key"], lowpass=True, normalize=False), low, atol=0.01)
    assert store.load(row["key"]).shape == (64, row["n_frames"])
    # Second run: nothing to do.
    again = cache.prepare(manifest, tmp_path / "cache", workers=2)
    assert again.attrs["new"] == 0
    assert list(again["key"]) == list(index["key"])


def test_a_killed_run_keeps_what_it_finished(small_dataset, tmp_path):
    data, _ = small_dataset
    manifest = datasets.read_dataset(data)
    cache.prepare(manifest, tmp_path / "cache", workers=1)
    store = cache.FeatureCache(tmp_path / "cache")
    index_file = store.root / cache.INDEX_NAME
    lines = index_file.read_text().splitlines()
    # Simulate a kill after 5 clips, mid-way through writing the 6th line.
    index_file.write_text("\n".join(lines[:5]) + "\n" + lines[5][:17])
    for stray in lines[5:]:
        store.clip_path(json.loads(stray)["key"]).unlink()
    resumed = cache.prepare(manifest, tmp_path / "cache", workers=1)
    assert resumed.attrs["new"] == 11
    assert (resumed["n_frames"] > 0).all()


def test_changed_parameters_or_files_invalidate(small_dataset, tmp_path):
    data, _ = small_dataset
    manifest = datasets.read_dataset(data)
    cache.prepare(manifest, tmp_path / "cache", workers=1)
    other = cache.prepare(manifest, tmp_path / "cache", FeatureConfig(n_mels=40), workers=1)
    assert other.attrs["new"] == 16
    assert cache.FeatureCache(tmp_path / "cache", FeatureConfig(n_mels=40)).load(other["key"][0]).shape[0] == 40
    # Touching one file changes its key: only it is redone.
    path = manifest["path"][3]
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    assert cache.prepare(manifest, tmp_path / "cache", workers=1).attrs["new"] == 1


@pytest.mark.slow
def test_broken_clips_are_reported_not_fatal(small_dataset, tmp_path):
    data, broken = small_dataset
    broken.write_bytes(b"garbage" * 50)
    index = cache.prepared_dataset(data, tmp_path / "cache", workers=2)
    assert index.attrs["failed"] == 1 and len(index) == 15
    with pytest.raises(DeepLanguageError, match="empty"):
        cache.prepare(datasets.read_dataset(data).iloc[:0], tmp_path / "cache")


def test_a_truncated_clip_file_is_not_cached_and_is_recomputed(small_dataset, tmp_path):
    data, _ = small_dataset
    manifest = datasets.read_dataset(data)
    index = cache.prepare(manifest, tmp_path / "cache", workers=1)
    store = cache.FeatureCache(tmp_path / "cache")
    key = index["key"][2]
    intact = store.load(key, normalize=False)
    path = store.clip_path(key)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a disk-full or killed copy
    assert "truncated" in store.damage(key, index["n_frames"][2])
    # Loading it names the file, not numpy's "mmap length is greater than file size".
    with pytest.raises(DeepLanguageError, match=str(path.name)):
        store.load(key)
    healed = cache.prepare(manifest, tmp_path / "cache", workers=1)
    assert healed.attrs["new"] == 1 and healed.attrs["repaired"] == 1
    np.testing.assert_array_equal(store.load(key, normalize=False), intact)
    assert cache.prepare(manifest, tmp_path / "cache", workers=1).attrs["new"] == 0


def test_a_clip_file_of_another_shape_is_recomputed(small_dataset, tmp_path):
    data, _ = small_dataset
    manifest = datasets.read_dataset(data)
    index = cache.prepare(manifest, tmp_path / "cache", workers=1)
    store = cache.FeatureCache(tmp_path / "cache")
    np.save(store.clip_path(index["key"][0]), np.zeros((2, 64, 3), np.float16))
    assert "shape" in store.damage(index["key"][0], index["n_frames"][0])
    assert cache.prepare(manifest, tmp_path / "cache", workers=1).attrs["repaired"] == 1


@pytest.mark.parametrize("junk", ["42", "[]", '{"x": 1}', '"text"', "null", '{"key": 5, "path": 1}'])
def test_index_lines_that_are_not_records_are_skipped_and_counted(small_dataset, tmp_path, junk):
    data, _ = small_dataset
    manifest = datasets.read_dataset(data)
    cache.prepare(manifest, tmp_path / "cache", workers=1)
    store = cache.FeatureCache(tmp_path / "cache")
    index_file = store.root / cache.INDEX_NAME
    index_file.write_text(junk + "\n" + index_file.read_text() + junk + "\n")
    again = cache.prepare(manifest, tmp_path / "cache", workers=1)
    assert again.attrs["new"] == 0 and again.attrs["skipped_lines"] == 2
    assert len(store.read_index()) == 16


def test_a_cache_that_cannot_be_written_names_the_file(small_dataset, tmp_path):
    data, _ = small_dataset
    manifest = datasets.read_dataset(data).iloc[:1]
    store = cache.FeatureCache(tmp_path / "cache")
    key = cache.clip_key(manifest["path"][0])
    store.clip_path(key).mkdir(parents=True)  # a folder where the file goes: the rename fails, even for root
    with pytest.raises(DeepLanguageError, match=f"could not write the cached features .*{key}"):
        cache.prepare(manifest, tmp_path / "cache", workers=1)


def test_clip_files_are_what_np_save_writes(tmp_path):
    """prepare writes its .npy files itself (np.save costs about 1 ms more per file): the same bytes, and an
    existing file is replaced whole."""
    rng = np.random.default_rng(0)
    full, low = (rng.uniform(-8, 0, size=(137, 64)).astype(np.float32).T for _ in range(2))  # transposed views
    out = tmp_path / "ab" / "clip.npy"
    cache._save_clip(str(out), full, low)
    np.save(tmp_path / "reference.npy", np.stack([full, low]).astype(np.float16))
    assert out.read_bytes() == (tmp_path / "reference.npy").read_bytes()
    cache._save_clip(str(out), low[:, :5], full[:, :5])
    np.testing.assert_array_equal(np.load(out), np.stack([low[:, :5], full[:, :5]]).astype(np.float16))
    assert [p.name for p in out.parent.iterdir()] == ["clip.npy"]  # no temporary file left behind


def test_two_prepares_at_once_compute_each_clip_once(small_dataset, tmp_path):
    import threading

    data, _ = small_dataset
    manifest = datasets.read_dataset(data)
    both_listed = threading.Barrier(2, timeout=60)  # both have listed all 16 clips as to do before either starts
    results = {}

    def run(name: str) -> None:
        waited = []

        def on_progress(done, total, **counts):
            if done == 0 and not waited:  # prepare may report 0 done more than once: meet at the barrier once
                waited.append(True)
                both_listed.wait()
        results[name] = cache.prepare(manifest, tmp_path / "cache", workers=1, on_progress=on_progress)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results["a"].attrs["new"] + results["b"].attrs["new"] == 16
    store = cache.FeatureCache(tmp_path / "cache")
    assert len((store.root / cache.INDEX_NAME).read_text().splitlines()) == 16  # each clip computed once
    for name in ("a", "b"):  # and both answer every clip
        assert (results[name]["n_frames"] > 0).all() and list(results[name]["key"]) == list(results["a"]["key"])
    assert not list(store.root.glob("clips/*/*.lock"))


def test_a_lock_left_by_a_killed_prepare_does_not_block(small_dataset, tmp_path):
    data, _ = small_dataset
    manifest = datasets.read_dataset(data)
    store = cache.FeatureCache(tmp_path / "cache")
    lock = store.clip_path(cache.clip_key(manifest["path"][0])).with_suffix(".lock")
    lock.parent.mkdir(parents=True)
    lock.touch()  # its process is gone: nobody holds it
    assert cache.prepare(manifest, tmp_path / "cache", workers=1).attrs["new"] == 16
    assert not lock.exists()


def test_two_threads_writing_one_file_at_once_both_succeed(tmp_path):
    """atomic_path named its temporary file after the process only: two threads of one process (two prepares in
    the dashboard's server) wrote the same temporary file, and the second rename failed (seen as a flaky test)."""
    import threading

    from core.files import atomic_path

    both_open = threading.Barrier(2, timeout=30)
    errors = []

    def write(text: str) -> None:
        try:
            with atomic_path(tmp_path / "config.json") as tmp:
                tmp.write_text(text)
                both_open.wait()  # both have written their temporary file before either renames
        except Exception as error:  # noqa: BLE001  (the test reports what a thread raised)
            errors.append(error)

    threads = [threading.Thread(target=write, args=(text,)) for text in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and (tmp_path / "config.json").read_text() in {"a", "b"}
