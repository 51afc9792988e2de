"""Whisper's view of each clip of a dataset, computed once and cached: the input of every ``whisper-head``.

One row per clip, float32 ``(1024 + n_languages,)``: the pooled encoder states
(:func:`core.identify.whisper.pool`) followed by Whisper's language-ID log-probabilities over its languages (100 for
the multilingual models since large-v3 added Cantonese; the tokenizer names them all, whatever the size). Rows live under
``<cache>/whisper-<encoder key>/clips/<ab>/<clip key>.npy``, named by the encoder's hash and the clip's identity
(:func:`core.data.cache.clip_key`: path, size, modification time), written to a temporary name and renamed: a
second training encodes nothing, a killed run loses only the clip in flight, another encoder never reads them.
A clip that cannot be decoded gets a row of NaN and a ``.error`` file beside it holding the message.

Encoding is the slow part (about 0.1 s a clip on 2 cores; a day at 1000x the embedded sample), so many clips are
encoded as Dask tasks (:func:`encode_clips`, ``ENCODE_BATCH`` clips each) on the study's cluster option
(:func:`core.study.cluster.session`: a scheduler's workers, else a local cluster): each task writes its clips'
rows to the cache, so a killed worker loses only its clips in flight and a rerun encodes only what is missing.
Each worker loads the encoder once, on its GPU where it has one (``device="auto"``), else on one CPU thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core.audio.decode import load_audio
from core.data.cache import clip_key
from core.errors import DeepLanguageError
from core.files import save_array, write_text
from core.identify.whisper import EMBEDDING_DIM, WhisperEncoder, load_encoder, pool
from core.study import cluster

ENCODE_BATCH = 16  # clips per Dask task: what a killed worker loses at most
DASK_MIN_CLIPS = 64  # fewer clips to encode than this: in this process (a local cluster costs seconds to start)



def clip_row(audio: np.ndarray, encoder: WhisperEncoder) -> np.ndarray:
    """One clip's cached row ``(1024 + n_languages,)``: its pooled states, then Whisper's language log-probabilities.

    Every state counts, silence included: Whisper's language-ID of the speech states alone (spliced together) was
    right for 66 % of 240 sample clips against 89 % for the whole clip, and pooling only them helped the head by
    less than a point (measured in the session that shipped this, on speaker-grouped folds)."""
    states = encoder.states(audio)
    return np.concatenate([pool(states), encoder.language_scores([states])[0]]).astype(np.float32)


class EmbeddingCache:
    """The cached rows of one dataset for one encoder."""

    def __init__(self, cache_dir: str | Path, encoder: WhisperEncoder):
        self.encoder = encoder
        self.root = Path(cache_dir) / f"whisper-{encoder.key}"
        self.row_size = EMBEDDING_DIM + len(encoder.languages)

    def path(self, key: str) -> Path:
        return self.root / "clips" / key[:2] / f"{key}.npy"

    def read(self, key: str) -> np.ndarray | None:
        """A cached row, or None when absent or damaged (it is then computed again)."""
        path = self.path(key)
        try:
            row = np.load(path)
        except (OSError, ValueError, EOFError):
            return None
        return row if row.shape == (self.row_size,) else None

    def compute(self, path: str) -> np.ndarray:
        """Decode, encode and cache one clip (a broken file: a NaN row and its message in a ``.error`` file)."""
        key = clip_key(path)
        try:
            row = clip_row(load_audio(path), self.encoder)
        except DeepLanguageError as error:
            write_text(self.path(key).with_suffix(".error"), str(error))
            row = np.full(self.row_size, np.nan, dtype=np.float32)
        save_array(self.path(key), row)
        return row

    def encode_missing(self, paths: list[str], on_progress: Callable[..., None] | None = None,
                       scheduler: str | None = None, workers: int | None = None) -> None:
        """Encode into the cache the clips of ``paths`` it lacks, holding none of their rows."""
        self._encode([path for path in paths if self.read(clip_key(path)) is None], on_progress, scheduler, workers)

    def rows(self, paths: list[str], on_progress: Callable[..., None] | None = None,
             scheduler: str | None = None, workers: int | None = None) -> np.ndarray:
        """Rows ``(len(paths), row_size)`` float32 in order: each cached row read once, the rest encoded
        (:meth:`_encode`) and then read."""
        out = np.empty((len(paths), self.row_size), dtype=np.float32)
        missing = []
        for i, path in enumerate(paths):
            row = self.read(clip_key(path))
            if row is None:
                missing.append(i)
            else:
                out[i] = row
        self._encode([paths[i] for i in missing], on_progress, scheduler, workers)
        for i in missing:
            row = self.read(clip_key(paths[i]))
            out[i] = row if row is not None else self.compute(paths[i])  # removed since: computed again
        return out

    def _encode(self, todo: list[str], on_progress: Callable[..., None] | None, scheduler: str | None,
                workers: int | None) -> None:
        """Encode ``todo`` into the cache. Many clips (``DASK_MIN_CLIPS``) or a ``scheduler`` given: as Dask tasks on
        ``scheduler``'s workers, else on a local cluster of ``workers`` (one per core when None; 1 = here); what
        they did not cover (a worker lost for good) is then encoded here."""
        phase = f"encoding {len(todo)} clips with Whisper"
        if todo and (scheduler or (len(todo) >= DASK_MIN_CLIPS and workers != 1)):
            if self._encode_on_dask(todo, scheduler, workers, on_progress, phase):
                todo = [path for path in todo if self.read(clip_key(path)) is None]
                phase = f"encoding {len(todo)} clips the workers left"
        for n, path in enumerate(todo):
            self.compute(path)
            if on_progress:
                on_progress(n + 1, len(todo), phase=phase)

    def _encode_on_dask(self, paths: list[str], scheduler: str | None, workers: int | None,
                        on_progress: Callable[..., None] | None, phase: str) -> bool:
        """Encode ``paths`` into the cache as Dask tasks, reporting clips done as tasks finish; False when there is
        no cluster to send them to (one local worker: this process does it)."""
        from distributed import as_completed

        batches = [paths[i: i + ENCODE_BATCH] for i in range(0, len(paths), ENCODE_BATCH)]
        with cluster.session(scheduler, workers) as client:
            if client is None:
                return False
            futures = [client.submit(encode_clips, batch, self.encoder.name, str(self.root.parent), pure=False,
                                     retries=2) for batch in batches]
            done = 0
            for future in as_completed(futures):
                done += future.result()
                if on_progress:
                    on_progress(done, len(paths), phase=phase)
        return True


def encode_clips(paths: list[str], encoder: str, cache_dir: str, device: str = "auto") -> int:
    """Encode and cache the rows of ``paths`` not cached yet (a Dask task; also runs in-process); returns how many
    clips it covered. The encoder is loaded once per process: on a GPU when there is one, else one CPU thread."""
    cache = EmbeddingCache(cache_dir, load_encoder(encoder, device=device, threads=1))
    for path in paths:
        if cache.read(clip_key(path)) is None:
            cache.compute(path)
    return len(paths)


def embed_manifest(manifest: pd.DataFrame, encoder: WhisperEncoder, cache_dir: str | Path,
                   on_progress: Callable[..., None] | None = None, scheduler: str | None = None,
                   workers: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Every clip's row; clips that could not be decoded are dropped (counted in ``attrs["failed"]``).

    Returns the kept manifest (index reset) and its rows ``(n_kept, 1024 + n_languages)``. ``scheduler``,
    ``workers``: where the clips not cached yet are encoded (:meth:`EmbeddingCache.rows`).
    """
    rows = EmbeddingCache(cache_dir, encoder).rows(manifest["path"].tolist(), on_progress, scheduler, workers)
    ok = ~np.isnan(rows).any(1)
    kept = manifest[ok].reset_index(drop=True)
    kept.attrs.update(manifest.attrs, failed=int((~ok).sum()))
    return kept, rows[ok]


def split_row(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows -> embeddings ``(n, 1024)`` and Whisper's language log-probabilities ``(n, n_languages)``."""
    return rows[:, :EMBEDDING_DIM], rows[:, EMBEDDING_DIM:]
