"""Fitting the GMM-supervector identifier (:mod:`core.identify.supervector`): UBM, MAP, regression.

The same contract as :func:`core.identify.train.fit`, in closed form instead of by epochs.
"""

from __future__ import annotations

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
from core.identify.clips import NORMALIZATION, base_checkpoint, evaluate_clips
from core.data.cache import FeatureCache, prepared_dataset
from core.paths import default_cache_dir, resolve
from core.identify.supervector import GMMSupervector, GMMSupervectorConfig

def _clip_input(clip: torch.Tensor) -> torch.Tensor:
    """A whole clip's raw log-mel ``(n_mels, n_frames)`` as one normalised window ``(1, n_mels, n_frames)``."""

    return normalize_windows(clip[None], kind=GMMSupervector.input_normalization)


def fit(config, clips, train_rows: torch.Tensor, val_rows: torch.Tensor, run_dir: Path | None = None,
        on_progress: Callable[..., None] | None = None) -> dict:
    """Fit a :class:`GMMSupervector` on ``train_rows`` of ``clips`` (a :class:`core.identify.clips.ClipSet`).

    The same contract as :func:`core.identify.train.fit`: returns the checkpoint dict (model state
    included) and, with ``run_dir``, writes best.pt, last.pt (the same model: nothing to resume),
    metrics.jsonl (one row) and progress.json. The UBM is fitted on training (and background)
    frames, the regression on the training clips; validation clips are scored, then added to the
    regression's data (never to the UBM), as the figures of a cross-validation fold come from
    its test speakers, not from these.
    """
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    features = FeatureConfig.from_dict(config.features)
    values = {**asdict(model_config(config.model, config.model_config)), "n_mels": features.n_mels,
              "n_classes": len(clips.labels)}
    model = GMMSupervector(model_config(config.model, values))
    cfg = model.config
    for name in ("fit_on", "score_on"):
        if getattr(cfg, name) not in ("windows", "clips"):
            raise DeepLanguageError(f"{name} must be windows or clips, not {getattr(cfg, name)!r}.")
    background = _background(config, cfg, clips) or ([], np.zeros(0, dtype=int))
    n_steps = 2 * len(train_rows) + len(val_rows) + 1 + len(background[0]) * 2
    step = _Steps(n_steps, on_progress)
    train_raw = [clips.clip(int(i)) for i in train_rows]
    _fit_ubm(model, train_raw + background[0], config.seed, step)
    fps = features.frames_per_second
    window = (round(config.window_seconds * fps), round(config.hop_seconds * fps))
    x_train, y_train = _supervectors(model, train_raw, clips.targets[train_rows].numpy(), window, step)
    x_extra, y_extra = _supervectors(model, background[0], background[1], window, step)
    balanced = config.class_weights
    _fit_regression(model, np.concatenate([x_train, x_extra]), np.concatenate([y_train, y_extra]), balanced)
    model.eval()
    val = evaluate_clips(model, clips, val_rows, config)
    if len(val_rows):
        x_val, y_val = _supervectors(model, [clips.clip(int(i)) for i in val_rows], clips.targets[val_rows].numpy(),
                                     window, step)
        _fit_regression(model, np.concatenate([x_train, x_val, x_extra]),
                        np.concatenate([y_train, y_val, y_extra]), balanced)
    row = {"epoch": 1, "step": 1, "lr": 0.0, "train_loss": float("nan"), "train_accuracy": float("nan"),
           "val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_balanced_accuracy": val["balanced_accuracy"],
           "seconds": time.perf_counter() - started}
    best = {"metric": "val_balanced_accuracy", "value": val["balanced_accuracy"], "loss": val["loss"], "epoch": 1}
    base = base_checkpoint(config, clips, train_rows, val_rows, asdict(cfg),
                           {**NORMALIZATION, "kind": model.input_normalization},
                           n_background_clips=len(background[1]))
    checkpoint = {**base, "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
                  "epoch": 1, "step": 1, "best": best, "metrics": row}
    if run_dir and distributed.current().is_main:
        save_checkpoint(checkpoint, run_dir / "best.pt")
        save_checkpoint(checkpoint, run_dir / "last.pt")
        runs.truncate_metrics(run_dir, 0)
        runs.append_metrics(run_dir, row)
        runs.write_json(run_dir / "progress.json", {"done": n_steps, "total": n_steps, "epoch": 1, "epochs": 1})
    return checkpoint


class _Steps:
    """Counts the fit's steps (one per clip pass, one for the UBM) for ``on_progress`` (rank 0 only)."""

    def __init__(self, n_steps: int, on_progress: Callable[..., None] | None):
        self.n_steps, self.on_progress, self.done = n_steps, on_progress, 0

    def __call__(self, n: int = 1, **metrics) -> None:
        self.done += n
        if self.on_progress and distributed.current().is_main:
            self.on_progress(self.done, self.n_steps, epoch=1, epochs=1, **metrics)


def _fit_ubm(model: GMMSupervector, raw: list[torch.Tensor], seed: int, step: _Steps) -> None:
    """The universal background model: a diagonal GMM on a sample of the clips' speech frames."""
    from sklearn.mixture import GaussianMixture

    cfg = model.config
    pool = []
    with torch.no_grad():
        for clip in raw:
            frames, speech = model.frames(_clip_input(clip))
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


def _supervectors(model: GMMSupervector, raw: list[torch.Tensor], targets: np.ndarray, window: tuple[int, int],
                  step: _Steps) -> tuple[np.ndarray, np.ndarray]:
    """Supervectors ``(n_examples, embedding_dim)`` of raw clips and their targets (repeated per window).

    ``window``: (frames, hop) of the windows when the model is fitted on windows, else unused.
    """
    rows, labels = [], []
    with torch.no_grad():
        for clip, target in zip(raw, targets):
            x = clip_windows(clip, *window, model.input_normalization)[1] if model.config.fit_on == "windows" \
                else _clip_input(clip)
            rows.append(model.supervectors(x).double().numpy())
            labels.extend([int(target)] * len(x))
            step()
    return (np.concatenate(rows) if rows else np.zeros((0, model.embedding_dim))), np.array(labels, dtype=int)


def _fit_regression(model: GMMSupervector, x: np.ndarray, y: np.ndarray, balanced: bool) -> None:
    """Standardise supervectors and fit the logistic regression into the model's scaler and classifier."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    regression = LogisticRegression(C=model.config.inverse_regularization, max_iter=3000,
                                    class_weight="balanced" if balanced else None)
    regression.fit(scaler.transform(x), y)
    coef, intercept = regression.coef_, regression.intercept_
    if len(regression.classes_) == 2:  # one logit z for class 1; softmax of (-z/2, z/2) is the same sigmoid(z)
        coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
    keep = [list(regression.classes_).index(c) for c in range(model.config.n_classes)]
    model.scaler_mean.copy_(torch.from_numpy(scaler.mean_).float())
    model.scaler_scale.copy_(torch.from_numpy(scaler.scale_).float())
    model.classifier.weight.data.copy_(torch.from_numpy(coef[keep]).float())
    model.classifier.bias.data.copy_(torch.from_numpy(intercept[keep]).float())


def _background(config, cfg: GMMSupervectorConfig, clips) -> tuple[list[torch.Tensor], np.ndarray] | None:
    """Raw log-mels of ``cfg.background_languages`` clips from the same dataset, as classes ``n_classes...``.

    Every speaker of the main languages is left out, so a speaker who recorded in two languages
    can never reach a test fold through the background.
    """

    languages = sorted(x for x in cfg.background_languages if x not in clips.labels)
    if not languages:
        return None
    features = FeatureConfig.from_dict(config.features)
    data_dir = resolve(config.data_dir)
    cache_dir = resolve(config.cache_dir) if config.cache_dir else default_cache_dir(data_dir)
    manifest = prepared_dataset(data_dir, cache_dir, features)
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


__all__ = ["KINDS", "GMMSupervectorConfig", "GMMSupervector", "fit"]
