"""Whisper rows encoded as Dask tasks are the rows encoded in-process, cached per clip, never computed twice."""

from dataclasses import dataclass

import numpy as np
import pytest

from core.audio.decode import write_wav
from core.identify import embeddings


@dataclass(frozen=True)
class FakeEncoder:
    """Stands in for Whisper: states and language scores that depend on the audio, instantly."""

    name: str = "fake"
    key: str = "fake000000000000"
    languages: tuple = ("de", "en", "es")

    def states(self, audio: np.ndarray) -> np.ndarray:
        return np.outer(np.linspace(0.5, 1.5, 10), np.resize(audio, 512))

    def language_scores(self, spans: list) -> np.ndarray:
        logits = np.stack([[s.mean(), s.std(), -s.mean()] for s in spans])
        return logits - np.log(np.exp(logits).sum(1, keepdims=True))


@pytest.fixture
def clips(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        write_wav(tmp_path / f"c{i}.wav", (rng.standard_normal(16000) * 0.1).astype(np.float32))
        paths.append(str(tmp_path / f"c{i}.wav"))
    calls = []
    monkeypatch.setattr(embeddings, "load_encoder", lambda name, device="auto", threads=0: calls.append(device)
                        or FakeEncoder())
    monkeypatch.setattr(embeddings, "ENCODE_BATCH", 5)
    return paths, calls


def test_dask_encoding_writes_the_rows_of_in_process_encoding(clips, tmp_path):
    from distributed import LocalCluster

    paths, calls = clips
    here = embeddings.EmbeddingCache(tmp_path / "here", FakeEncoder()).rows(paths, workers=1)
    seen = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        cache = embeddings.EmbeddingCache(tmp_path / "dask", FakeEncoder())
        rows = cache.rows(paths, lambda done, total, **k: seen.append((done, total, k["phase"])),
                          scheduler=cluster.scheduler_address)
    assert np.array_equal(rows, here)
    assert all((tmp_path / "dask" / f"whisper-{FakeEncoder.key}").rglob("*.npy"))
    assert len(list((tmp_path / "dask").rglob("*.npy"))) == len(paths)  # one file per clip: the resume unit
    assert calls and set(calls) == {"auto"}  # each worker asks for a GPU where there is one
    assert (len(paths), len(paths), "encoding 12 clips with Whisper") in seen


def test_a_rerun_encodes_only_missing_clips(clips, tmp_path, monkeypatch):
    paths, _ = clips
    cache = embeddings.EmbeddingCache(tmp_path, FakeEncoder())
    embeddings.encode_clips(paths[:7], "fake", str(tmp_path))  # a worker killed after 7 clips: those are kept
    computed = []
    original = embeddings.EmbeddingCache.compute
    monkeypatch.setattr(embeddings.EmbeddingCache, "compute", lambda self, p: computed.append(p) or original(self, p))
    cache.rows(paths, workers=1)
    assert computed == paths[7:]


def test_the_encoder_falls_back_to_the_cpu_without_a_gpu():
    from core.identify.whisper import BASE_DIR, load_encoder

    if not (BASE_DIR / "model.bin").exists():
        pytest.fail(f"{BASE_DIR} is missing: run `make setup`")
    import ctranslate2

    expected = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    assert load_encoder("base", device="auto", threads=1).model.model.device == expected


def test_evaluate_scores_the_cached_rows_a_chunk_at_a_time_and_drops_broken_clips(clips, tmp_path, monkeypatch):
    import pandas as pd
    import torch

    from core.identify import evaluate
    from core.identify.pretrained_fit import predict_rows

    paths, _ = clips
    (tmp_path / "broken.wav").write_bytes(b"not audio at all")
    manifest = pd.DataFrame({"path": paths[:7] + [str(tmp_path / "broken.wav")] + paths[7:]})
    cache = embeddings.EmbeddingCache(tmp_path / "cache", FakeEncoder())
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(cache.row_size, 3), torch.nn.LogSoftmax(1))
    held = []
    monkeypatch.setattr(evaluate, "predict_rows", lambda m, rows: held.append(len(rows)) or predict_rows(m, rows))
    monkeypatch.setattr(evaluate, "SCORE_CHUNK", 5)
    kept, probabilities = evaluate.score_rows(model, manifest, cache)
    assert kept["path"].tolist() == paths and kept.attrs["failed"] == 1
    assert np.allclose(probabilities, predict_rows(model, cache.rows(paths)), atol=1e-6)
    assert max(held) <= 5 and sum(held) == len(paths)
