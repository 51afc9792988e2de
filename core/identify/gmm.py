"""Fitting the GMM-supervector identifier (:mod:`core.identify.supervector`): UBM, MAP, regression.

The same contract as :func:`core.identify.train.fit`, in closed form instead of by epochs.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from core.errors import DeepLanguageError
from core.identify.models import normalize_windows
from core import distributed, runs
from core.checkpoint import save_checkpoint
from core.audio.features import FeatureConfig
from core.identify.models import clip_windows, model_config
from core.identify.clips import NORMALIZATION, base_checkpoint
from core.data.cache import FeatureCache, prepared_dataset
from core.paths import default_cache_dir
from core.identify.supervector import GMMSupervector, GMMSupervectorConfig
from core.identify.backends import GaussianBackend, LogisticBackend, backend_entry

STORE_UNITS = 64  # units whose supervectors are flushed to the store together: what an interruption loses at most
from core.identify.augment import clip_copies
from core.identify import memory, vectors
from core.files import atomic_path
from core.identify.calibration import calibration_entry


def clip_input(clip: torch.Tensor) -> torch.Tensor:
    """A whole clip's raw log-mel ``(n_mels, n_frames)`` as one normalised window ``(1, n_mels, n_frames)``."""

    return normalize_windows(clip[None], kind=GMMSupervector.input_normalization)


CLEAN, COPY, BACKGROUND = 0, 1, 2  # what a supervector row is: a clip, an augmented copy, a background clip


@dataclass
class Unit:
    """One clip's share of the supervectors: its name (resume checks it), its raw log-mels, label and speaker."""

    name: str
    load: Callable[[], list[torch.Tensor]]  # raw log-mels (n_mels, n_frames): the clip, or its copies
    target: int
    speaker: str
    part: int  # CLEAN, COPY or BACKGROUND


def fit(config, clips, train_rows: torch.Tensor, val_rows: torch.Tensor, run_dir: Path | None = None,
        on_progress: Callable[..., None] | None = None) -> dict:
    """Fit a :class:`GMMSupervector` on ``train_rows`` and ``val_rows`` of ``clips`` (a :class:`ClipSet`).

    The same contract as :func:`core.identify.train.fit`: returns the checkpoint dict (model state included)
    and, with ``run_dir``, writes best.pt, last.pt (the same model: nothing to resume), metrics.jsonl (one
    row). The UBM is fitted on training (and background) frames. The backend's validation figures,
    temperature and "ok" rule come from speaker-grouped out-of-fold predictions over the training and
    validation speakers (:func:`_calibrate`); the backend is then fitted on all of them.

    Bounded memory: clips are read one at a time, supervectors go to a float16 store on disk and the backends
    read it in chunks (:mod:`core.identify.vectors`). With ``run_dir``, the UBM and the store are kept in
    ``run_dir/supervectors/`` until the model is saved, so an interrupted fit resumes after its last finished
    phase or chunk of clips. A fit that will not fit in memory is refused before it starts (:mod:`memory`).
    """
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    model = new_model(config, len(clips.labels))
    cfg = model.config
    report = on_progress if on_progress and distributed.current().is_main else (lambda *a, **k: None)
    rows = torch.cat([train_rows, val_rows]).numpy()
    background = _background(config, cfg, clips)
    units = clip_units(config, clips, rows, background)
    n_rows = len(rows) * (1 + len(cfg.augment)) + len(background)
    memory.check(cfg, len(rows) + len(background), len(rows), len(background))
    work = Path(run_dir) / "supervectors" if run_dir else Path(tempfile.mkdtemp(prefix="supervectors-"))
    try:
        ubm_units = [units[i] for i in range(len(train_rows))] + [u for u in units if u.part == BACKGROUND]
        _resumable_ubm(model, ubm_units, config.seed, work, report)
        store = write_supervectors(model, units, config, work, report)
        calibration, backend = _fit_backends(model, cfg, config.class_weights, store, units, len(clips.labels), report)
    except MemoryError:
        raise DeepLanguageError(memory.memory_error_message(cfg, len(rows) + len(background), n_rows)) from None
    model.eval()
    checkpoint = _checkpoint(config, clips, train_rows, val_rows, model, calibration, backend, len(background),
                             time.perf_counter() - started)
    if run_dir and distributed.current().is_main:
        save_checkpoint(checkpoint, run_dir / "best.pt")
        save_checkpoint(checkpoint, run_dir / "last.pt")
        runs.truncate_metrics(run_dir, 0)
        runs.append_metrics(run_dir, checkpoint["metrics"])
    shutil.rmtree(work, ignore_errors=True)  # the model holds all it needs; the store is large
    return checkpoint


def clip_units(config, clips, rows: np.ndarray, background: pd.DataFrame | None = None) -> list[Unit]:
    """Every clip's share of the supervectors, in their order: clean clips, their augmented copies, background."""
    features = FeatureConfig.from_dict(config.features)
    kinds = list(model_config(config.model, config.model_config).augment)
    cache = FeatureCache(config.cache_dir or default_cache_dir(config.data_dir), features)
    part = clips.manifest.iloc[rows]
    targets = clips.targets[torch.from_numpy(rows)].tolist()
    names = part["key"] if "key" in part else [f"row{r}" for r in rows]  # an in-RAM ClipSet needs no cache key
    units = [Unit(f"clip:{name}", lambda r=int(r): [clips.clip(r)], t, s, CLEAN)
             for r, name, t, s in zip(rows, names, targets, part["speaker"])]
    if kinds:
        def copies(path: str, key: str) -> list[torch.Tensor]:
            return [torch.from_numpy(m) for _, m in clip_copies(path, key, kinds, features, cache.root / "augmented")]

        units += [Unit(f"copies:{key}", lambda p=p, k=key: copies(p, k), t, s, COPY)
                  for p, key, t, s in zip(part["path"], part["key"], targets, part["speaker"])]
    if background is not None:
        units += [Unit(f"background:{key}", lambda k=key: [torch.from_numpy(cache.load(k, normalize=False))], t, s,
                       BACKGROUND) for key, t, s in zip(background["key"], background["target"], background["speaker"])]
    return units


def _resumable_ubm(model: GMMSupervector, units: list[Unit], seed: int, work: Path, report) -> None:
    """The UBM fitted (:func:`_fit_ubm`), or read back from ``work/ubm.pt`` when an earlier try finished it."""
    path = work / "ubm.pt"
    names = ("ubm_weights", "ubm_means", "ubm_variances")
    if path.exists():
        state = torch.load(path, weights_only=True)
        if state.get("units") == [u.name for u in units]:
            for name in names:
                getattr(model, name).copy_(state[name])
            return
    _fit_ubm(model, [u.load for u in units], seed, report)
    state = {"units": [u.name for u in units], **{name: getattr(model, name).clone() for name in names}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def write_supervectors(model: GMMSupervector, units: list[Unit], config, work: Path,
                       report: Callable[..., None] | None = None) -> vectors.VectorStore:
    """Every unit's supervectors in a float16 store under ``work``, resumed after its last finished chunk.

    At most ``STORE_UNITS`` units' supervectors are in RAM at once; the rest are on disk."""
    report = report or (lambda *a, **k: None)
    fps = FeatureConfig.from_dict(config.features).frames_per_second
    window, hop = round(config.window_seconds * fps), round(config.hop_seconds * fps)
    ubm = hashlib.sha1(model.ubm_means.numpy().tobytes()).hexdigest()[:16]
    store = vectors.VectorStore(work / "store", model.embedding_dim, [f"ubm:{ubm}"] + [u.name for u in units])
    phase = f"supervectors of {len(units)} clips and copies"
    pending = []
    for i in range(store.n_units_done, len(units)):
        pending.append(clip_supervectors(model, units[i].load(), window, hop)[0].astype(np.float16))
        if len(pending) == STORE_UNITS or i == len(units) - 1:
            store.append(pending)
            pending = []
        report(i + 1, len(units), phase=phase)
    return store

def new_model(config, n_classes: int) -> GMMSupervector:
    """A fresh (placeholder-UBM) model of a TrainConfig's gmm-supervector recipe; its config checked."""
    features = FeatureConfig.from_dict(config.features)
    values = {**asdict(model_config(config.model, config.model_config)), "n_mels": features.n_mels,
              "n_classes": n_classes}
    model = GMMSupervector(model_config(config.model, values))
    for name, allowed in (("fit_on", ("windows", "clips")), ("score_on", ("windows", "clips")),
                          ("backend", ("lr", "gauss"))):
        if getattr(model.config, name) not in allowed:
            raise DeepLanguageError(f"{name} must be one of {', '.join(allowed)}, not {getattr(model.config, name)!r}.")
    return model


def clip_supervectors(model: GMMSupervector, raw: list[torch.Tensor], window: int, hop: int,
                      step: Callable[..., None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw supervectors ``(n_examples, embedding_dim)`` of raw log-mel clips and the examples per clip ``(n_clips,)``.

    One example per clip (``fit_on="clips"``), or one per identify window (``fit_on="windows"``).
    """
    out, counts = [np.zeros((0, model.embedding_dim))], []
    with torch.no_grad():
        for clip in raw:
            x = clip_windows(clip, window, hop, model.input_normalization)[1] if model.config.fit_on == "windows" \
                else clip_input(clip)
            out.append(model.supervectors(x).double().numpy())
            counts.append(len(x))
            if step:
                step()
    return np.concatenate(out), np.array(counts, dtype=int)


def fit_ubm(model: GMMSupervector, loads: list[Callable[[], list[torch.Tensor]]], seed: int,
            report: Callable[..., None] | None = None) -> None:
    """Public face of :func:`_fit_ubm` (the learning curve fits one UBM per fold and many backends)."""
    _fit_ubm(model, loads, seed, report or (lambda *a, **k: None))


def _fit_ubm(model: GMMSupervector, loads: list[Callable[[], list[torch.Tensor]]], seed: int,
             report: Callable[..., None]) -> None:
    """Fit the diagonal UBM on (at most ``ubm_frames``) speech frames of the clips ``loads`` read; into the model.

    The sample is drawn as from every clip's speech frames concatenated, without holding them: one pass
    counts each clip's frames, the draw picks positions, a second pass copies the picked frames.
    """
    from sklearn.mixture import GaussianMixture

    cfg = model.config

    def speech_frames(load) -> np.ndarray:
        with torch.no_grad():
            frames, speech = model.frames(clip_input(load()[0]))
        return frames[0][speech[0]].double().numpy()

    counts = []
    for i, load in enumerate(loads):
        counts.append(len(speech_frames(load)))
        report(i + 1, len(loads), phase=f"background model: speech frames of {len(loads)} clips")
    offsets = np.cumsum([0] + counts)
    rng = np.random.default_rng(seed)
    picked = rng.choice(offsets[-1], min(cfg.ubm_frames, offsets[-1]), replace=False)
    order = np.argsort(picked)
    ranked = picked[order]
    sample = np.zeros((len(picked), cfg.frame_dim))
    for i, load in enumerate(loads):
        low, high = np.searchsorted(ranked, [offsets[i], offsets[i + 1]])
        if high > low:
            sample[order[low:high]] = speech_frames(load)[ranked[low:high] - offsets[i]]
        report(i + 1, len(loads), phase=f"background model: sampling {len(picked)} frames")
    phase = f"background model: EM, {cfg.n_components} Gaussians on {len(picked)} frames"
    report(0, 1, phase=phase)
    ubm = GaussianMixture(cfg.n_components, covariance_type="diag", max_iter=cfg.ubm_iterations,
                          reg_covar=1e-3, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge": 30 EM steps are plenty for a UBM
        ubm.fit(sample)
    model.ubm_weights.copy_(torch.from_numpy(ubm.weights_).float())
    model.ubm_means.copy_(torch.from_numpy(ubm.means_).float())
    model.ubm_variances.copy_(torch.from_numpy(ubm.covariances_).float())
    report(1, 1, phase=phase)


def fit_backend(model: GMMSupervector, balanced: bool, x: np.ndarray, y: np.ndarray, n_labels: int,
                rows: np.ndarray | None = None):
    """The model's configured backend fitted on supervectors ``x[rows]`` ``(n, embedding_dim)`` and folded into it."""
    return _fold_backend(model, _backend(model.config.backend, model.config, balanced).fit(x, y, rows), n_labels)


def _backend(kind: str, cfg: GMMSupervectorConfig, balanced: bool, start: LogisticBackend | None = None):
    """A fresh backend; a logistic one starts its solver from ``start`` (a fitted one), a Gaussian one ignores it."""
    if kind == "gauss":
        return GaussianBackend(dim=cfg.backend_dim)
    return LogisticBackend(c=cfg.inverse_regularization, balanced=balanced, start=start)


def _fit_backends(model: GMMSupervector, cfg: GMMSupervectorConfig, balanced: bool, store: vectors.VectorStore,
                  units: list[Unit], n_labels: int, report) -> tuple[dict, dict | None]:
    """The backend on every row, folded into the model, and calibration from out-of-fold predictions.

    Returns the calibration entry and, when the model can enrol languages, its Gaussian backend's entry.
    """
    x, counts = store.rows(), store.counts
    owner = np.repeat(np.arange(len(units)), counts)
    y = np.array([u.target for u in units])[owner]
    groups = np.array([u.speaker for u in units], dtype=object)[owner]
    part = np.array([u.part for u in units])[owner]
    gauss_too = cfg.backend != "gauss" and cfg.enrollable
    clean = part == CLEAN
    n_fits = (calibration_folds(y[clean], groups[clean]) + 1) * (1 + int(gauss_too))  # folds and final, per kind
    done = 0
    phase = f"fitting the backend: {n_fits} fits on {len(x)} supervectors"

    def fitted(backend, rows: np.ndarray):
        nonlocal done
        report(done, n_fits, phase=phase)
        backend.fit(x, y, rows)
        done += 1
        report(done, n_fits, phase=phase)
        return backend

    # The fit on every row comes first, and each fold's logistic regression starts from it: a fold leaves out a
    # fifth of the speakers, so its optimum is near, and at 8x the sample a fold took 12-37 L-BFGS steps, not 54-56.
    data, every = (x, y, groups, part), np.arange(len(x))
    main = fitted(_backend(cfg.backend, cfg, balanced), every)
    calibration = _calibrate(lambda: _backend(cfg.backend, cfg, balanced, start=main), data, n_labels, fitted)
    _fold_backend(model, main, n_labels)
    if not (cfg.backend == "gauss" or cfg.enrollable):
        return calibration, None
    gauss = main if cfg.backend == "gauss" else fitted(_backend("gauss", cfg, balanced), every)
    keep = [list(gauss.classes_).index(c) for c in range(n_labels)]
    entry = calibration if cfg.backend == "gauss" else \
        _calibrate(lambda: _backend("gauss", cfg, balanced), data, n_labels, fitted)
    return calibration, {**backend_entry(gauss, keep), "calibration": entry}


def _fold_backend(model: GMMSupervector, backend, n_labels: int):
    """Fold a fitted ``backend`` into the model's scaler and classifier; returns it.

    Background classes (targets >= ``n_labels``) were trained, and are dropped here.
    """
    mean, scale, weight, bias = backend.folded()
    keep = [list(backend.classes_).index(c) for c in range(n_labels)]
    model.scaler_mean.copy_(torch.from_numpy(mean).float())
    model.scaler_scale.copy_(torch.from_numpy(scale).float())
    model.classifier.weight.data.copy_(torch.from_numpy(weight[keep]).float())
    model.classifier.bias.data.copy_(torch.from_numpy(bias[keep]).float())
    return backend


def calibration_folds(y: np.ndarray, groups: np.ndarray) -> int:
    """Speaker-grouped folds of the calibration (up to 5); 0 when too few speakers or classes to hold any out."""
    n_folds = min(5, len(set(groups.tolist())))
    return n_folds if n_folds >= 2 and len(set(y.tolist())) >= 2 else 0


def _calibrate(new_backend, data: tuple, n_labels: int, fitted) -> dict:
    """Out-of-fold probabilities over speakers (up to 5 folds) -> the ``calibration`` entry.

    ``data``: supervectors ``x``, targets ``y``, speakers ``groups`` and ``part`` of every row. Clean rows are
    scored out of fold; augmented copies are trained on when their speaker is not held out, never scored;
    background rows are always trained on (their speakers are never among the clean ones). ``fitted(backend,
    rows)`` fits a fresh backend on rows. Empty when there are too few speakers to hold any out.
    """
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold

    x, y_all, g_all, part = data
    clean, copies, background = (np.flatnonzero(part == p) for p in (CLEAN, COPY, BACKGROUND))
    y, groups = y_all[clean], g_all[clean]
    n_folds = calibration_folds(y, groups)
    if not n_folds:
        return {}
    probabilities = np.zeros((len(y), n_labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the least populated class has fewer members than n_splits"
        splits = list(StratifiedGroupKFold(n_folds, shuffle=True, random_state=0).split(clean, y, groups))
    for train, held in splits:
        use = copies[~np.isin(g_all[copies], groups[held])]
        backend = fitted(new_backend(), np.concatenate([clean[train], use, background]))
        full = backend.predict_proba(x, clean[held])
        columns = [list(backend.classes_).index(c) if c in backend.classes_ else None for c in range(n_labels)]
        p = np.stack([full[:, c] if c is not None else np.zeros(len(held)) for c in columns], 1)
        probabilities[held] = p / p.sum(1, keepdims=True)
    entry = calibration_entry(probabilities, y, groups, source=f"out-of-fold predictions, {n_folds} speaker-grouped "
                              f"folds over the training and validation speakers")
    entry["balanced_accuracy"] = float(balanced_accuracy_score(y, probabilities.argmax(1)))
    entry["nll"] = float(-np.log(np.clip(probabilities[np.arange(len(y)), y], 1e-30, None)).mean())
    return entry


def _checkpoint(config, clips, train_rows: torch.Tensor, val_rows: torch.Tensor, model: GMMSupervector,
                calibration: dict, backend: dict | None, n_background: int, seconds: float) -> dict:
    """The fitted model's checkpoint dict, its one metrics row under ``metrics``."""
    accuracy = calibration.get("accuracy", float("nan"))
    row = {"epoch": 1, "step": 1, "lr": 0.0, "train_loss": float("nan"), "train_accuracy": float("nan"),
           "val_loss": calibration.get("nll", float("nan")), "val_accuracy": accuracy,
           "val_balanced_accuracy": calibration.get("balanced_accuracy", accuracy), "seconds": seconds}
    best = {"metric": "val_balanced_accuracy", "value": row["val_balanced_accuracy"], "loss": row["val_loss"], "epoch": 1}
    base = base_checkpoint(config, clips, train_rows, val_rows, asdict(model.config),
                           {**NORMALIZATION, "kind": model.input_normalization}, n_background_clips=n_background)
    return {**base, "calibration": calibration, "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
            "epoch": 1, "step": 1, "best": best, "metrics": row, **({"backend": backend} if backend else {})}


def _background(config, cfg: GMMSupervectorConfig, clips) -> pd.DataFrame:
    """The ``key``, ``speaker`` and ``target`` (classes ``n_classes...``) of ``cfg.background_languages`` clips
    from the same dataset; empty when there are none.

    Every speaker of the main languages is left out, so a speaker who recorded in two languages
    can never reach a test fold through the background.
    """
    empty = pd.DataFrame({"key": [], "speaker": [], "target": []})
    languages = sorted(x for x in cfg.background_languages if x not in clips.labels)
    if not languages:
        return empty
    features = FeatureConfig.from_dict(config.features)
    cache_dir = config.cache_dir or default_cache_dir(config.data_dir)
    manifest = prepared_dataset(config.data_dir, cache_dir, features)
    manifest = manifest[manifest["language"].isin(languages) & ~manifest["speaker"].isin(set(clips.manifest["speaker"]))
                        & ~(manifest["duration"] < config.min_seconds)]
    missing = sorted(set(languages) - set(manifest["language"]))
    if missing:
        print(f"warning: no background clips of {', '.join(missing)} in {config.data_dir}", file=sys.stderr)
    if manifest.empty:
        return empty
    return pd.DataFrame({"key": manifest["key"].to_numpy(), "speaker": manifest["speaker"].to_numpy(),
                         "target": [len(clips.labels) + languages.index(x) for x in manifest["language"]]})


__all__ = ["GMMSupervectorConfig", "GMMSupervector", "fit"]
