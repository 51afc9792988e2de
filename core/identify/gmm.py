"""Fitting the GMM-supervector identifier (:mod:`core.identify.supervector`): UBM, MAP, regression.

The same contract as :func:`core.identify.train.fit`, in closed form instead of by epochs.
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
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
from core.identify.augment import augmented_log_mels
from core.identify.calibration import calibration_entry


def clip_input(clip: torch.Tensor) -> torch.Tensor:
    """A whole clip's raw log-mel ``(n_mels, n_frames)`` as one normalised window ``(1, n_mels, n_frames)``."""

    return normalize_windows(clip[None], kind=GMMSupervector.input_normalization)


def fit(config, clips, train_rows: torch.Tensor, val_rows: torch.Tensor, run_dir: Path | None = None,
        on_progress: Callable[..., None] | None = None) -> dict:
    """Fit a :class:`GMMSupervector` on ``train_rows`` and ``val_rows`` of ``clips`` (a :class:`ClipSet`).

    The same contract as :func:`core.identify.train.fit`: returns the checkpoint dict (model state included)
    and, with ``run_dir``, writes best.pt, last.pt (the same model: nothing to resume), metrics.jsonl (one
    row) and progress.json. The UBM is fitted on training (and background) frames. The backend's
    validation figures, temperature and "ok" rule come from speaker-grouped out-of-fold predictions over
    the training and validation speakers (:func:`_calibrate`); the backend is then fitted on all of them.
    A cross-validation's figures come from its test speakers, never from these.
    """
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    features = FeatureConfig.from_dict(config.features)
    model = new_model(config, len(clips.labels))
    cfg = model.config
    background = _background(config, cfg, clips) or ([], np.zeros(0, dtype=int))
    rows = torch.cat([train_rows, val_rows])
    n_steps = 2 * len(rows) + 2 * len(background[0]) + 2
    done = 0

    def step(n: int = 1, **metrics):
        nonlocal done
        done += n
        if on_progress and distributed.current().is_main:
            on_progress(done, n_steps, epoch=1, epochs=1, **metrics)

    raw = [clips.clip(int(i)) for i in rows]
    _fit_ubm(model, [clips.clip(int(i)) for i in train_rows] + background[0], config.seed, step)
    step(len(val_rows))
    fps = features.frames_per_second
    window, hop = round(config.window_seconds * fps), round(config.hop_seconds * fps)

    def supervectors(raw: list[torch.Tensor], targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, n = clip_supervectors(model, raw, window, hop, step)
        return x, np.repeat(np.asarray(targets, dtype=int), n)

    x, y = supervectors(raw, clips.targets[rows].numpy())
    x_bg, y_bg = supervectors(background[0], background[1])
    speakers = clips.manifest.loc[rows.numpy(), "speaker"].to_numpy()
    groups = np.repeat(speakers, [len(clip_windows(c, window, hop)[0]) for c in raw]) if cfg.fit_on == "windows" \
        else speakers
    aug = augmented_supervectors(config, model, clips, rows, window, hop)
    # Augmented copies stay with their speaker: out of every fold that holds the speaker out, never scored.
    data = (x, y, groups, *aug, x_bg, y_bg)
    calibration = _calibrate(_backend(cfg.backend, cfg, config.class_weights), data, len(clips.labels))
    x_all, y_all = np.concatenate([x, aug[0], x_bg]), np.concatenate([y, aug[1], y_bg])
    main = _fit_backend(model, _backend(cfg.backend, cfg, config.class_weights), x_all, y_all, len(clips.labels))
    backend = None
    if cfg.backend == "gauss" or cfg.enrollable:  # what enrolment needs: a Gaussian backend and its calibration
        gauss = main if cfg.backend == "gauss" else _backend("gauss", cfg, config.class_weights).fit(x_all, y_all)
        keep = [list(gauss.classes_).index(c) for c in range(len(clips.labels))]
        backend = {**backend_entry(gauss, keep), "calibration": calibration if cfg.backend == "gauss" else
                   _calibrate(_backend("gauss", cfg, config.class_weights), data, len(clips.labels))}
    step()
    model.eval()
    accuracy = calibration.get("accuracy", float("nan"))
    row = {"epoch": 1, "step": 1, "lr": 0.0, "train_loss": float("nan"), "train_accuracy": float("nan"),
           "val_loss": calibration.get("nll", float("nan")), "val_accuracy": accuracy,
           "val_balanced_accuracy": calibration.get("balanced_accuracy", accuracy),
           "seconds": time.perf_counter() - started}
    best = {"metric": "val_balanced_accuracy", "value": row["val_balanced_accuracy"], "loss": row["val_loss"], "epoch": 1}
    base = base_checkpoint(config, clips, train_rows, val_rows, asdict(cfg),
                           {**NORMALIZATION, "kind": model.input_normalization}, n_background_clips=len(background[1]))
    checkpoint = {**base, "calibration": calibration, "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
                  "epoch": 1, "step": 1, "best": best, "metrics": row, **({"backend": backend} if backend else {})}
    if run_dir and distributed.current().is_main:
        save_checkpoint(checkpoint, run_dir / "best.pt")
        save_checkpoint(checkpoint, run_dir / "last.pt")
        runs.truncate_metrics(run_dir, 0)
        runs.append_metrics(run_dir, row)
        runs.write_json(run_dir / "progress.json", {"done": n_steps, "total": n_steps, "epoch": 1, "epochs": 1})
    return checkpoint


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


def fit_ubm(model: GMMSupervector, raw: list[torch.Tensor], seed: int, step: Callable[..., None] | None = None) -> None:
    """Public face of :func:`_fit_ubm` (the learning curve fits one UBM per fold and many backends)."""
    _fit_ubm(model, raw, seed, step or (lambda *a, **k: None))


def fit_backend(model: GMMSupervector, balanced: bool, x: np.ndarray, y: np.ndarray, n_labels: int):
    """The model's configured backend fitted on supervectors ``(n, embedding_dim)`` and folded into it."""
    return _fit_backend(model, _backend(model.config.backend, model.config, balanced), x, y, n_labels)


def _fit_ubm(model: GMMSupervector, raw: list[torch.Tensor], seed: int, step: Callable[..., None]) -> None:
    """Fit the diagonal UBM on (at most ``ubm_frames``) speech frames of ``raw`` clips; into the model's buffers."""
    from sklearn.mixture import GaussianMixture

    cfg, pool = model.config, []
    with torch.no_grad():
        for clip in raw:
            frames, speech = model.frames(clip_input(clip))
            pool.append(frames[0][speech[0]].double().numpy())
            step()
    pool = np.concatenate(pool)
    rng = np.random.default_rng(seed)
    sample = pool[rng.choice(len(pool), min(cfg.ubm_frames, len(pool)), replace=False)]
    ubm = GaussianMixture(cfg.n_components, covariance_type="diag", max_iter=cfg.ubm_iterations,
                          reg_covar=1e-3, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge": 30 EM steps are plenty for a UBM
        ubm.fit(sample)
    model.ubm_weights.copy_(torch.from_numpy(ubm.weights_).float())
    model.ubm_means.copy_(torch.from_numpy(ubm.means_).float())
    model.ubm_variances.copy_(torch.from_numpy(ubm.covariances_).float())
    step()


def _backend(kind: str, cfg: GMMSupervectorConfig, balanced: bool):
    if kind == "gauss":
        return GaussianBackend(dim=cfg.backend_dim)
    return LogisticBackend(c=cfg.inverse_regularization, balanced=balanced)


def _fit_backend(model: GMMSupervector, backend, x: np.ndarray, y: np.ndarray, n_labels: int):
    """Fit ``backend`` on supervectors ``(n, embedding_dim)``, fold it into the model's scaler and classifier.

    Background classes (targets >= ``n_labels``) are trained, then dropped. Returns the fitted backend.
    """
    backend.fit(x, y)
    mean, scale, weight, bias = backend.folded()
    keep = [list(backend.classes_).index(c) for c in range(n_labels)]
    model.scaler_mean.copy_(torch.from_numpy(mean).float())
    model.scaler_scale.copy_(torch.from_numpy(scale).float())
    model.classifier.weight.data.copy_(torch.from_numpy(weight[keep]).float())
    model.classifier.bias.data.copy_(torch.from_numpy(bias[keep]).float())
    return backend


def augmented_supervectors(config, model: GMMSupervector, clips, rows: torch.Tensor, window: int,
               hop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Supervectors, targets and speakers of ``cfg.augment`` copies of the ``rows`` clips (training speakers only)."""
    kinds = list(model.config.augment)
    if not kinds:
        return np.zeros((0, model.embedding_dim)), np.zeros(0, dtype=int), np.zeros(0, dtype=object)
    features = FeatureConfig.from_dict(config.features)
    root = FeatureCache(config.cache_dir or default_cache_dir(config.data_dir), features).root / "augmented"
    part = clips.manifest.iloc[rows.numpy()]
    copies = augmented_log_mels(part, kinds, features, root)
    x, n = clip_supervectors(model, [torch.from_numpy(mel) for _, _, mel in copies], window, hop)
    owner = np.repeat([row for row, _, _ in copies], n)
    return x, clips.targets[rows].numpy()[owner], part["speaker"].to_numpy()[owner]


def _calibrate(backend, data: tuple, n_labels: int) -> dict:
    """Out-of-fold probabilities over speakers (up to 5 folds) -> the ``calibration`` entry.

    ``data``: clean ``x, y, groups``, augmented ``x, y, groups`` (trained on when their speaker is not held
    out, never scored) and background ``x, y`` (always trained on: their speakers are never in ``groups``).
    Empty when there are too few speakers to hold any out.
    """
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold

    x, y, groups, x_aug, y_aug, g_aug, x_bg, y_bg = data
    n_folds = min(5, len(set(groups.tolist())))
    if n_folds < 2 or len(set(y.tolist())) < 2:
        return {}
    probabilities = np.zeros((len(y), n_labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the least populated class has fewer members than n_splits"
        splits = list(StratifiedGroupKFold(n_folds, shuffle=True, random_state=0).split(x, y, groups))
    for train, held in splits:
        use = ~np.isin(g_aug, groups[held])
        fitted = copy.deepcopy(backend).fit(np.concatenate([x[train], x_aug[use], x_bg]),
                                    np.concatenate([y[train], y_aug[use], y_bg]))
        full = fitted.predict_proba(x[held])
        columns = [list(fitted.classes_).index(c) if c in fitted.classes_ else None for c in range(n_labels)]
        p = np.stack([full[:, c] if c is not None else np.zeros(len(held)) for c in columns], 1)
        probabilities[held] = p / p.sum(1, keepdims=True)
    entry = calibration_entry(probabilities, y, groups, source=f"out-of-fold predictions, {n_folds} speaker-grouped "
                              f"folds over the training and validation speakers")
    entry["balanced_accuracy"] = float(balanced_accuracy_score(y, probabilities.argmax(1)))
    entry["nll"] = float(-np.log(np.clip(probabilities[np.arange(len(y)), y], 1e-30, None)).mean())
    return entry


def _background(config, cfg: GMMSupervectorConfig, clips) -> tuple[list[torch.Tensor], np.ndarray] | None:
    """Raw log-mels of ``cfg.background_languages`` clips from the same dataset, as classes ``n_classes...``.

    Every speaker of the main languages is left out, so a speaker who recorded in two languages
    can never reach a test fold through the background.
    """

    languages = sorted(x for x in cfg.background_languages if x not in clips.labels)
    if not languages:
        return None
    features = FeatureConfig.from_dict(config.features)
    cache_dir = config.cache_dir or default_cache_dir(config.data_dir)
    manifest = prepared_dataset(config.data_dir, cache_dir, features)
    manifest = manifest[manifest["language"].isin(languages) & ~manifest["speaker"].isin(set(clips.manifest["speaker"]))
                        & ~(manifest["duration"] < config.min_seconds)]
    missing = sorted(set(languages) - set(manifest["language"]))
    if missing:
        print(f"warning: no background clips of {', '.join(missing)} in {config.data_dir}", file=sys.stderr)
    if manifest.empty:
        return None
    arrays = FeatureCache(cache_dir, features).load_many(manifest["key"], normalize=False)
    targets = np.array([len(clips.labels) + languages.index(x) for x in manifest["language"]])
    return [torch.from_numpy(a) for a in arrays], targets


__all__ = ["GMMSupervectorConfig", "GMMSupervector", "fit"]
