"""Classical language identification for small data: GMM-UBM supervectors and logistic regression.

With a few minutes of speech per language, a network trained from scratch learns little
(see checkpoints/identify-default/README.md); the classical recipe of the NIST LRE era does
better with the same data:

1. frames: MFCCs (the DCT of the log-mel, mean- and variance-normalised over time within
   each window) and shifted-delta cepstra (SDC 7-1-3-7), on the loudest frames only (speech);
2. a universal background model (UBM): a diagonal Gaussian mixture fitted to frames of every
   training language (plus ``background_languages``, whose speech helps even though they are
   never answered);
3. per utterance, a supervector: the UBM means MAP-adapted to its frames, minus the UBM's, scaled
   by sqrt(weight) / sigma (the KL-divergence kernel's space);
4. a multinomial logistic regression on the standardised supervectors;
5. a clip's answer from one supervector of the whole clip (``score_on="clips"``, clips up to 30 s:
   more frames make better statistics), the 3 s windows only drawing identify's timeline.

sklearn fits the UBM and the regression (:func:`fit`); the fitted numbers become buffers and
weights of :class:`GMMSupervector`, an ``nn.Module`` like every model in :mod:`core.models`:
``(batch, n_mels, n_frames)`` per-band mean-normalised windows in, ``(batch, n_classes)`` logits out, so a
checkpoint holds plain tensors (``weights_only=True``) and identify, evaluate and the
cross-validation use it unchanged. Background languages are trained as extra classes and then
dropped: softmax over the kept rows equals the full softmax renormalised over them.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.fft
import torch
from torch import nn
from torch.nn import functional as F

from core.errors import DeepLanguageError

KINDS = ("gmm-supervector",)


@dataclass
class GMMSupervectorConfig:
    n_mels: int = 64  # input mel bands
    n_classes: int = 6  # languages answered
    n_cepstra: int = 7  # MFCCs c0..c(N-1) per frame; SDC is built from the same N
    sdc_spread: int = 1  # SDC N-d-P-k: delta over +-d frames ...
    sdc_shift: int = 3  # ... taken every P frames ...
    sdc_blocks: int = 7  # ... k times
    speech_fraction: float = 0.7  # loudest fraction of each window's frames kept as speech
    n_components: int = 128  # diagonal Gaussians in the UBM
    relevance: float = 16.0  # MAP relevance factor: components with fewer frames stay near the UBM
    inverse_regularization: float = 0.01  # C of the logistic regression (smaller = stronger L2)
    ubm_frames: int = 100_000  # frames sampled to fit the UBM
    ubm_iterations: int = 30  # EM iterations
    background_languages: tuple[str, ...] = ()  # dataset languages used as extra classes and UBM data, never answered
    fit_on: str = "windows"  # regression examples: "windows" as identify cuts a clip (3 s every 1 s), or whole "clips"
    score_on: str = "clips"  # a clip's answer: one pass over the whole "clips" (up to 30 s), or the mean of its "windows"
    dropout: float = 0.0  # before the classifier; only for gradient fine-tuning (fit() does not use it)

    @property
    def frame_dim(self) -> int:
        return self.n_cepstra * (1 + self.sdc_blocks)


class GMMSupervector(nn.Module):
    """frames (MFCC + SDC, speech only) -> UBM posteriors -> MAP mean shifts -> standardise -> linear.

    A fresh model has a placeholder UBM (seeded random means, unit variances, flat weights), so it
    runs and trains by gradient; :func:`fit` puts the fitted UBM and regression in.
    """

    input_normalization = "per-window-mean"  # variance-normalising each band first would distort the cepstra

    def __init__(self, config: GMMSupervectorConfig):
        super().__init__()
        self.config = config
        k, d = config.n_components, config.frame_dim
        dct = scipy.fft.dct(np.eye(config.n_mels), type=2, norm="ortho", axis=0)[: config.n_cepstra]
        self.register_buffer("dct", torch.from_numpy(dct).float())  # (n_cepstra, n_mels)
        placeholder = torch.randn(k, d, generator=torch.Generator().manual_seed(0))
        self.register_buffer("ubm_weights", torch.full((k,), 1.0 / k))
        self.register_buffer("ubm_means", placeholder)
        self.register_buffer("ubm_variances", torch.ones(k, d))
        self.register_buffer("scaler_mean", torch.zeros(k * d))
        self.register_buffer("scaler_scale", torch.ones(k * d))
        self.classifier = nn.Linear(k * d, config.n_classes)
        self.dropout = nn.Dropout(config.dropout)

    @property
    def scores_whole_clips(self) -> bool:
        """See :func:`core.models.scores_whole_clip`: identify and evaluation answer from the whole clip."""
        return self.config.score_on == "clips"

    @property
    def embedding_dim(self) -> int:
        return self.config.n_components * self.config.frame_dim

    def frames(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, n_mels, n_frames)`` -> frames ``(batch, n_frames, frame_dim)`` and speech mask ``(batch, n_frames)``."""
        c = torch.einsum("cm,bmt->bct", self.dct, x)
        c = (c - c.mean(2, keepdim=True)) / c.std(2, keepdim=True, unbiased=False).clamp(min=1e-5)
        d, p, k = self.config.sdc_spread, self.config.sdc_shift, self.config.sdc_blocks
        n_frames = x.shape[2]
        padded = F.pad(c, (d, d + p * (k - 1)), mode="replicate")
        sdc = [padded[:, :, i * p + 2 * d: i * p + 2 * d + n_frames] - padded[:, :, i * p: i * p + n_frames]
               for i in range(k)]
        features = torch.cat([c, *sdc], dim=1).transpose(1, 2)
        # Inputs are mean-normalised per band, so absolute level is gone; the mean over bands still ranks frames
        # by loudness within the window.
        loudness = x.mean(1)
        threshold = torch.quantile(loudness, 1 - self.config.speech_fraction, dim=1, keepdim=True)
        return features, loudness >= threshold

    def supervectors(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, n_frames)`` -> raw (unstandardised) supervectors ``(batch, n_components * frame_dim)``."""
        features, speech = self.frames(x)
        precision = 1.0 / self.ubm_variances  # (k, d)
        constant = (self.ubm_weights.log() - 0.5 * (self.ubm_variances.log().sum(1)
                    + (self.ubm_means ** 2 * precision).sum(1) + features.shape[2] * math.log(2 * math.pi)))
        log_likelihood = (constant - 0.5 * (features ** 2) @ precision.T + features @ (self.ubm_means * precision).T)
        posteriors = torch.softmax(log_likelihood, dim=2) * speech[:, :, None]  # (batch, n_frames, k)
        counts = posteriors.sum(1)  # (batch, k)
        first = posteriors.transpose(1, 2) @ features  # (batch, k, d)
        # MAP-adapted mean minus the UBM's: (first - n mu) / (n + r).
        shift = (first - counts[:, :, None] * self.ubm_means) / (counts[:, :, None] + self.config.relevance)
        return (self.ubm_weights.sqrt()[:, None] * shift / self.ubm_variances.sqrt()).flatten(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, n_frames)`` -> standardised supervector ``(batch, embedding_dim)``."""
        return (self.supervectors(x) - self.scaler_mean) / self.scaler_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.embed(x)))


def _clip_input(clip: torch.Tensor) -> torch.Tensor:
    """A whole clip's raw log-mel ``(n_mels, n_frames)`` as one normalised window ``(1, n_mels, n_frames)``."""
    from core.models import normalize_windows

    return normalize_windows(clip[None], kind=GMMSupervector.input_normalization)


def fit(config, clips, train_rows: torch.Tensor, val_rows: torch.Tensor, run_dir: Path | None = None,
        on_progress: Callable[..., None] | None = None) -> dict:
    """Fit a :class:`GMMSupervector` on ``train_rows`` of ``clips`` (a :class:`core.train.ClipSet`).

    The same contract as :func:`core.train.fit`: returns the checkpoint dict (model state included)
    and, with ``run_dir``, writes best.pt, last.pt (the same model: nothing to resume),
    metrics.jsonl (one row) and progress.json. The UBM is fitted on training (and background)
    frames, the regression on the training clips; validation clips are scored, then added to the
    regression's data (never to the UBM), as the figures of a cross-validation fold come from
    its test speakers, not from these.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.mixture import GaussianMixture
    from sklearn.preprocessing import StandardScaler

    from core import distributed, runs
    from core.checkpoint import save_checkpoint
    from core.features import FeatureConfig
    from core.models import clip_windows, model_config
    from core.train import CHECKPOINT_FORMAT, NORMALIZATION, evaluate_clips

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
    background = _background(config, cfg, clips)
    n_steps = 2 * len(train_rows) + len(val_rows) + 1 + (len(background[0]) * 2 if background else 0)
    done = 0

    def step(n: int = 1, **metrics):
        nonlocal done
        done += n
        if on_progress and distributed.current().is_main:
            on_progress(done, n_steps, epoch=1, epochs=1, **metrics)

    pool = []
    with torch.no_grad():
        for clip in [clips.clip(int(i)) for i in train_rows] + (background[0] if background else []):
            frames, speech = model.frames(_clip_input(clip))
            pool.append(frames[0][speech[0]].double().numpy())
            step()
    pool = np.concatenate(pool)
    rng = np.random.default_rng(config.seed)
    sample = pool[rng.choice(len(pool), min(cfg.ubm_frames, len(pool)), replace=False)]
    ubm = GaussianMixture(cfg.n_components, covariance_type="diag", max_iter=cfg.ubm_iterations,
                          reg_covar=1e-3, random_state=config.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge": 30 EM steps are plenty for a UBM
        ubm.fit(sample)
    model.ubm_weights.copy_(torch.from_numpy(ubm.weights_).float())
    model.ubm_means.copy_(torch.from_numpy(ubm.means_).float())
    model.ubm_variances.copy_(torch.from_numpy(ubm.covariances_).float())
    step()

    fps = features.frames_per_second
    window, hop = round(config.window_seconds * fps), round(config.hop_seconds * fps)

    def supervectors(raw: list[torch.Tensor], targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Supervectors ``(n_examples, embedding_dim)`` of raw clips and their targets (repeated per window)."""
        rows, labels = [], []
        with torch.no_grad():
            for clip, target in zip(raw, targets):
                x = clip_windows(clip, window, hop, model.input_normalization)[1] if cfg.fit_on == "windows" \
                    else _clip_input(clip)
                rows.append(model.supervectors(x).double().numpy())
                labels.extend([int(target)] * len(x))
                step()
        return (np.concatenate(rows) if rows else np.zeros((0, model.embedding_dim))), np.array(labels, dtype=int)

    train_raw = [clips.clip(int(i)) for i in train_rows]
    x_train, y_train = supervectors(train_raw, clips.targets[train_rows].numpy())
    x_extra, y_extra = supervectors(background[0], background[1]) if background else supervectors([], [])

    def fit_regression(x: np.ndarray, y: np.ndarray) -> None:
        scaler = StandardScaler().fit(x)
        regression = LogisticRegression(C=cfg.inverse_regularization, max_iter=3000,
                                        class_weight="balanced" if config.class_weights else None)
        regression.fit(scaler.transform(x), y)
        coef, intercept = regression.coef_, regression.intercept_
        if len(regression.classes_) == 2:  # one logit z for class 1; softmax of (-z/2, z/2) is the same sigmoid(z)
            coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
        keep = [list(regression.classes_).index(c) for c in range(len(clips.labels))]
        model.scaler_mean.copy_(torch.from_numpy(scaler.mean_).float())
        model.scaler_scale.copy_(torch.from_numpy(scaler.scale_).float())
        model.classifier.weight.data.copy_(torch.from_numpy(coef[keep]).float())
        model.classifier.bias.data.copy_(torch.from_numpy(intercept[keep]).float())

    fit_regression(np.concatenate([x_train, x_extra]), np.concatenate([y_train, y_extra]))
    model.eval()
    val = evaluate_clips(model, clips, val_rows, config)
    if len(val_rows):
        x_val, y_val = supervectors([clips.clip(int(i)) for i in val_rows], clips.targets[val_rows].numpy())
        fit_regression(np.concatenate([x_train, x_val, x_extra]), np.concatenate([y_train, y_val, y_extra]))
    row = {"epoch": 1, "step": 1, "lr": 0.0, "train_loss": float("nan"), "train_accuracy": float("nan"),
           "val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_balanced_accuracy": val["balanced_accuracy"],
           "seconds": time.perf_counter() - started}
    best = {"metric": "val_balanced_accuracy", "value": val["balanced_accuracy"], "loss": val["loss"], "epoch": 1}
    checkpoint = {
        "format": CHECKPOINT_FORMAT, "model": {"kind": config.model, "config": asdict(cfg)},
        "labels": clips.labels, "features": asdict(features),
        "normalization": {**NORMALIZATION, "kind": model.input_normalization},
        "window_seconds": config.window_seconds, "hop_seconds": config.hop_seconds, "train_config": asdict(config),
        "data": {"dir": str(Path(config.data_dir).resolve()) if config.data_dir else "",
                 "split_seed": config.split_seed, "split_fractions": list(config.split_fractions),
                 "n_train_clips": len(train_rows), "n_val_clips": len(val_rows),
                 "n_background_clips": len(background[1]) if background else 0,
                 "train_speakers": sorted(clips.manifest.loc[train_rows.numpy(), "speaker"].unique()),
                 "val_speakers": sorted(clips.manifest.loc[val_rows.numpy(), "speaker"].unique()),
                 "test_speakers": sorted(clips.manifest.loc[clips.manifest["split"] == "test", "speaker"].unique())},
        "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
        "epoch": 1, "step": 1, "best": best, "metrics": row,
    }
    if run_dir and distributed.current().is_main:
        save_checkpoint(checkpoint, run_dir / "best.pt")
        save_checkpoint(checkpoint, run_dir / "last.pt")
        runs.truncate_metrics(run_dir, 0)
        runs.append_metrics(run_dir, row)
        runs.write_json(run_dir / "progress.json", {"done": n_steps, "total": n_steps, "epoch": 1, "epochs": 1})
    return checkpoint


def _background(config, cfg: GMMSupervectorConfig, clips) -> tuple[list[torch.Tensor], np.ndarray] | None:
    """Raw log-mels of ``cfg.background_languages`` clips from the same dataset, as classes ``n_classes...``.

    Every speaker of the main languages is left out, so a speaker who recorded in two languages
    can never reach a test fold through the background.
    """
    from core.cache import FeatureCache, prepared_dataset
    from core.features import FeatureConfig
    from core.paths import default_cache_dir

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


__all__ = ["KINDS", "GMMSupervectorConfig", "GMMSupervector", "fit"]
