"""Latents: what a frozen model's state holds about the language of clips it never trained on.

For each run of a study, every clip of the study's latent sample (a balanced sample of the
test-split speakers of each language: never the speakers any run trained or stopped on) goes
through the frozen model, and the results are stored beside the run (latents.npz and latents.tsv,
see core.study.latent_files, which reads them without torch).

The language identifier's embedding is added as kind ``identify`` when that model and a
checkpoint of it exist (:func:`extract_identify_latents`); it is skipped otherwise. The shipped
identifier is Whisper-based, so that kind is Whisper's pretrained encoder: the reference space.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core.files import write_json
from core.identify.embeddings import embed_manifest, split_row
from core.identify.predict import DEFAULT_CHECKPOINT, embed, load_identifier
from core.identify.pretrained import encoder_of
from core.study.autoencoder import encode_clip
from core.data.cache import FeatureCache
from core.study.layout import load_study
from core.study.normalization import study_normalizer
from core.study import autoencoder
from core.study import nextframe
from core.checkpoint import load_checkpoint
from core.paths import portable, resolve
from core.study.latent_files import WHISPER_LABEL, clip_path, save_latents
from core.study.similarity import capped_sample

LSTM_KINDS = ("h", "c", "h_mean")  # final hidden state, final cell state, hidden state averaged over time
AE_KINDS = ("ae",)


def encode_lstm(model, clips: list[np.ndarray], batch_size: int = 64) -> dict[str, np.ndarray]:
    """Each clip ``(n_frames, n_mels)`` -> ``h, c, h_mean``, each ``(n_clips, hidden_size)``.

    Clips of different lengths go through the LSTM together as a packed batch: each clip's final
    state is the one after its own last frame (no padding is read), so the result equals encoding
    the clips one at a time (tests/test_latents.py checks it), several times faster.
    """
    import torch
    from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

    rows = {kind: [] for kind in LSTM_KINDS}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(clips), batch_size):
            part = [torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32))
                    for clip in clips[start:start + batch_size]]
            output, (h, c) = model.lstm(pack_sequence(part, enforce_sorted=False))
            padded, lengths = pad_packed_sequence(output, batch_first=True)  # zeros past each clip's end
            h_mean = padded.sum(dim=1) / lengths[:, None].to(padded.dtype)
            for kind, value in zip(LSTM_KINDS, (h[-1], c[-1], h_mean)):
                rows[kind].append(value.numpy())
    return {kind: np.concatenate(values).astype(np.float32) for kind, values in rows.items()}


def encode_autoencoder(model, clips: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Each clip ``(n_frames, n_mels)`` -> its mean bottleneck, ``(n_clips, bottleneck)``."""

    model.eval()
    return {"ae": np.stack([encode_clip(model, clip.T) for clip in clips]).astype(np.float32)}


@functools.lru_cache(maxsize=2)
def _latent_clips(study_dir: str, manifest_mtime: float) -> tuple[pd.DataFrame, tuple[np.ndarray, ...]]:
    study = load_study(study_dir)
    manifest = pd.read_csv(Path(study_dir) / "latent_manifest.tsv", sep="\t", dtype={"key": str})
    cache = FeatureCache(resolve(study["cache_dir"]), study["features"])
    normalize = study_normalizer(study)
    return manifest, tuple(normalize(cache.load(key, normalize=False)).T.copy() for key in manifest["key"])


def latent_clips(study_dir: str | Path) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The study's latent sample and its full-band features ``(n_frames, n_mels)``, normalised as the study says.

    Kept per process (keyed by the manifest's mtime): every run of a study encodes the same
    clips, and a worker process finishes many runs."""
    path = Path(study_dir).resolve()
    manifest, clips = _latent_clips(str(path), (path / "latent_manifest.tsv").stat().st_mtime)
    return manifest.copy(), list(clips)


def extract_run_latents(run_dir: str | Path, clips: tuple[pd.DataFrame, list[np.ndarray]] | None = None) -> Path:
    """Freeze the run's model (``last.pt``), encode the study's latent sample, write the npz and tsv."""

    run_dir = Path(run_dir)
    checkpoint = load_checkpoint(run_dir / "last.pt")
    manifest, features = clips or latent_clips(run_dir.parent.parent)
    if checkpoint["model"]["kind"] == "autoencoder":
        arrays = encode_autoencoder(autoencoder.from_checkpoint(checkpoint, run_dir / "last.pt"), features)
    else:
        arrays = encode_lstm(nextframe.from_checkpoint(checkpoint, run_dir / "last.pt"), features)
    save_latents(run_dir, arrays, manifest)
    return run_dir / "latents.npz"


# Identifier embeddings wider than this are stored as their leading principal components, at most
# half as many as there are clips: the trailing components of n clips have almost no variance, and a
# probe that standardises them fits noise (at 126 of 126 components it scored below chance).
MAX_IDENTIFY_DIM = 64
# The identifier embeds at most this many clips of each language of the latent sample (speaker by speaker in
# turn): the sample grows with the data, and a probe of 6 languages needs hundreds of clips, not thousands.
MAX_IDENTIFY_PER_LANGUAGE = 200


def extract_identify_latents(study_dir: str | Path, checkpoint_path: str | Path | None = None,
                             on_progress: Callable[..., None] | None = None) -> Path | None:
    """The language identifier's embedding of the study's latent sample, as ``<study>/identify/latents.*``.

    Uses ``checkpoint_path``, else the shipped identifier; returns None when that file does not exist. A
    Whisper-based identifier (the shipped ``whisper-head``) gives Whisper's pooled encoder states, read through
    the embedding cache; ``identify/about.json`` says which model made the latents (the pages' label).
    """
    checkpoint_path = checkpoint_path or DEFAULT_CHECKPOINT
    if not Path(checkpoint_path).exists():
        return None
    bundle = load_identifier(checkpoint_path)
    manifest = capped_sample(pd.read_csv(Path(study_dir) / "latent_manifest.tsv", sep="\t", dtype={"key": str}),
                             MAX_IDENTIFY_PER_LANGUAGE)
    paths = [str(clip_path(study_dir, p)) for p in manifest["path"]]
    if getattr(bundle.model, "pretrained_encoder", False):
        encoder = encoder_of(bundle.model)
        kept, rows = embed_manifest(manifest.assign(path=paths, stored=manifest["path"]), encoder,
                                    resolve(load_study(study_dir)["cache_dir"]), on_progress)
        manifest, vectors = kept.assign(path=kept["stored"]), split_row(rows)[0]
        about = {"label": WHISPER_LABEL, "encoder": encoder.name, "sha256": encoder.sha256}
    else:
        vectors = np.stack([np.asarray(embed(p, bundle), dtype=np.float32).ravel() for p in paths])
        about = {"label": f"the language identifier ({bundle.checkpoint.get('model', {}).get('kind', 'model')})"}
    about.update(checkpoint=portable(checkpoint_path), n_clips=len(vectors), dim=int(vectors.shape[1]))
    if vectors.shape[1] > MAX_IDENTIFY_DIM:
        # Whisper's pooled states are 1,024 wide, a GMM supervector ~14k: their leading principal components
        # (fitted without labels, so nothing leaks into the probes) keep the study small. Randomized SVD: a
        # full one grew as n^1.9 with the sample.
        from sklearn.decomposition import PCA

        pca = PCA(max(1, min(MAX_IDENTIFY_DIM, len(vectors) // 2)), svd_solver="randomized", random_state=0)
        vectors = pca.fit_transform(vectors).astype(np.float32)
        about.update(n_components=pca.n_components_, explained_variance=float(pca.explained_variance_ratio_.sum()))
    folder = Path(study_dir) / "identify"
    folder.mkdir(exist_ok=True)
    save_latents(folder, {"identify": vectors}, manifest)
    write_json(folder / "about.json", about)
    return folder / "latents.npz"
