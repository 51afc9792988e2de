"""What an identifier trains and is scored on: its config, its clips in RAM, batches, validation.

Data: every clip's full-band log-mel is held in RAM as one ``(n_mels, total_frames)`` tensor;
a batch is a set of random crops gathered with one indexing op, normalised per crop and
SpecAugment-ed with vectorised masks, all in the main process (no DataLoader workers). Each
epoch's order, crops and masks come from a generator seeded by ``(seed, epoch)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from core.checkpoint import model_record
from core.configs import known_fields, setting, validate
from core.errors import DeepLanguageError
from core.audio.features import FeatureConfig
from core.identify.models import (DEFAULT_MODEL, MODELS, clip_windows, input_normalization,
                         normalize_windows,
                         predict_batches, predict_whole_clip, scores_whole_clip)
from core.data.cache import FeatureCache, prepared_dataset
from core.data.datasets import assign_splits, select_languages
from core.data.demo_corpus import is_demo_corpus
from core.paths import default_cache_dir, portable, resolve

NORMALIZATION = {"kind": "per-window", "eps": 1e-5}  # what the model expects of its input


@dataclass
class TrainConfig:
    data_dir: str = ""  # dataset folder (Common Voice layout or <lang>/*.wav)
    cache_dir: str = ""  # feature cache base folder; empty = core.paths.default_cache_dir(data_dir)
    languages: tuple[str, ...] = ()  # languages to learn; empty = all in the dataset
    model: str = setting(DEFAULT_MODEL, choices=tuple(MODELS))  # a kind from core.identify.models.MODELS
    model_config: dict = field(default_factory=dict)  # overrides of the model's config defaults
    epochs: int = setting(40, low=1)  # upper bound; early stopping usually ends sooner
    batch_size: int = setting(32, low=1)
    optimizer: str = setting("adamw", choices=("adamw", "sgd"))  # adamw | sgd (momentum 0.9, as the original project)
    lr: float = setting(0.01, above=0)  # peak learning rate, the original project's
    weight_decay: float = setting(0.05, low=0)  # decoupled for adamw, L2 for sgd
    warmup_epochs: float = setting(2.0, low=0)  # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = setting(0.02, low=0, high=1)
    crop_seconds: float = setting(3.0, above=0)  # random training crops; shorter clips are tiled to this length
    freq_masks: int = setting(2, low=0)  # SpecAugment: masks per crop and their maximum widths
    freq_mask_bands: int = setting(8, low=0)
    time_masks: int = setting(2, low=0)
    time_mask_frames: int = setting(30, low=0)
    label_smoothing: float = setting(0.1, low=0, below=1)
    class_weights: bool = True  # weight the loss by inverse language frequency
    min_seconds: float = setting(1.5, low=0)  # drop single-word prompts shorter than this
    split_seed: int = setting(0, low=0)  # speaker-disjoint train/validation/test split (core.data.datasets.assign_splits)
    split_fractions: tuple[float, float, float] = setting((0.7, 0.15, 0.15), low=0, high=1)
    patience: int = setting(10, low=0)  # epochs without a better validation metric before stopping; 0 = never stop early
    window_seconds: float = setting(3.0, above=0)  # evaluation and inference windows (as identify) ...
    hop_seconds: float = setting(1.0, above=0)  # ... and their hop
    seed: int = setting(0, low=0)
    threads: int = setting(0, low=0)  # torch CPU threads; 0 = leave torch's default
    features: dict = field(default_factory=lambda: asdict(FeatureConfig()))  # asdict(FeatureConfig)

    def __post_init__(self) -> None:
        validate(self)
        FeatureConfig.from_dict(self.features)  # checks the feature settings the same way

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = known_fields(cls, values)
        for name in ("languages", "split_fractions"):
            if name in known:
                known[name] = tuple(known[name])
        return cls(**known)


class ClipSet:
    """Every clip's raw log-mel in RAM as one tensor, plus labels and the manifest.

    ``frames``: ``(n_mels, total_frames)`` float32; clip ``i`` is
    ``frames[:, offsets[i]: offsets[i] + lengths[i]]``, tiled to at least ``min_frames``.
    """

    def __init__(self, manifest: pd.DataFrame, features: list[np.ndarray], labels: list[str], min_frames: int):
        self.manifest = manifest.reset_index(drop=True)
        self.labels = list(labels)
        tiled = [np.tile(x, (1, math.ceil(min_frames / x.shape[1]))) if x.shape[1] < min_frames else x
                 for x in features]
        self.lengths = torch.tensor([x.shape[1] for x in tiled])
        self.true_lengths = torch.tensor([x.shape[1] for x in features])
        self.offsets = torch.cumsum(self.lengths, 0) - self.lengths
        self.frames = torch.from_numpy(np.concatenate(tiled, axis=1))
        index = {label: i for i, label in enumerate(self.labels)}
        self.targets = torch.tensor([index[lang] for lang in self.manifest["language"]])

    def __len__(self) -> int:
        return len(self.manifest)

    def clip(self, i: int) -> torch.Tensor:
        """Clip ``i``'s raw log-mel, untiled: ``(n_mels, n_frames)``."""
        start = int(self.offsets[i])
        return self.frames[:, start: start + int(self.true_lengths[i])]

    def rows(self, split: str) -> torch.Tensor:
        return torch.from_numpy(np.flatnonzero((self.manifest["split"] == split).to_numpy()))


class CachedClipSet(ClipSet):
    """The same clips, each read from the feature cache when asked for: only the manifest is held in RAM.

    For models that visit each clip a few times in order (the GMM supervector's statistics), never for
    random crops (:func:`make_batch` needs :class:`ClipSet`'s frames).
    """

    def __init__(self, manifest: pd.DataFrame, cache: FeatureCache, labels: list[str]):
        self.manifest = manifest.reset_index(drop=True)
        self.labels, self.cache = list(labels), cache
        self.true_lengths = torch.tensor(self.manifest["n_frames"].to_numpy(dtype=np.int64))
        index = {label: i for i, label in enumerate(self.labels)}
        self.targets = torch.tensor([index[lang] for lang in self.manifest["language"]])

    def clip(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.cache.load(self.manifest.at[i, "key"], normalize=False))


def load_clips(config: TrainConfig, on_progress: Callable[..., None] | None = None,
               manifest_filter: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
               in_ram: bool = True) -> ClipSet:
    """Prepare (cache) the dataset, keep the configured languages and long-enough clips, split by speaker.

    ``in_ram=False`` gives a :class:`CachedClipSet` (clips read from the cache one at a time). The manifest gets a ``split`` column from :func:`core.data.datasets.assign_splits` (``split_seed``).
    """

    if not config.data_dir:
        raise DeepLanguageError("no dataset given: pass --data DIR (a Common Voice folder or <lang>/*.wav).")
    features = FeatureConfig.from_dict(config.features)
    data_dir = resolve(config.data_dir)  # a config from a checkpoint holds it relative to the repository
    cache_dir = resolve(config.cache_dir) if config.cache_dir else default_cache_dir(data_dir)
    manifest = prepared_dataset(data_dir, cache_dir, features, on_progress=on_progress)
    manifest = select_languages(manifest, list(config.languages) or None)
    manifest = manifest[~(manifest["duration"] < config.min_seconds)]
    if manifest_filter:
        manifest = manifest_filter(manifest)
    labels = sorted(manifest["language"].unique())
    if len(labels) < 2:
        raise DeepLanguageError(f"{config.data_dir} has {len(labels)} language(s) left to train on; at least 2 are needed.")
    manifest = assign_splits(manifest.reset_index(drop=True), tuple(config.split_fractions), seed=config.split_seed)
    cache = FeatureCache(cache_dir, features)
    if not in_ram:
        return CachedClipSet(manifest, cache, labels)
    arrays = cache.load_many(manifest["key"], normalize=False)
    crop = round(config.crop_seconds * features.frames_per_second)
    return ClipSet(manifest, arrays, labels, crop)



def base_checkpoint(config: TrainConfig, clips: ClipSet, train_rows: torch.Tensor, val_rows: torch.Tensor,
                    model_values: dict, normalization: dict = NORMALIZATION, **data: object) -> dict:
    """Everything an identifier's checkpoint holds but its weights and training state, for every kind.

    ``model_values``: the model's config as a dict; ``normalization``: what its input expects;
    ``data``: more facts about the training data (e.g. ``n_background_clips``). Paths are stored
    relative to the repository when inside it (:func:`core.paths.portable`).
    """
    manifest = clips.manifest
    return {
        **model_record(config.model, model_values, {}), "labels": clips.labels,
        "features": asdict(FeatureConfig.from_dict(config.features)), "normalization": dict(normalization),
        "window_seconds": config.window_seconds, "hop_seconds": config.hop_seconds,
        "train_config": {**asdict(config), "data_dir": portable(config.data_dir),
                         "cache_dir": portable(config.cache_dir)},
        "data": {"dir": portable(config.data_dir), "split_seed": config.split_seed,
                 "split_fractions": list(config.split_fractions),
                 "n_train_clips": len(train_rows), "n_val_clips": len(val_rows), **data,
                 "train_speakers": sorted(manifest.loc[train_rows.numpy(), "speaker"].unique()),
                 "val_speakers": sorted(manifest.loc[val_rows.numpy(), "speaker"].unique()),
                 "test_speakers": sorted(manifest.loc[manifest["split"] == "test", "speaker"].unique())},
        # A model of the synthetic demo corpus calls almost every real voice "en": the UI must say so.
        "trained_on": {"data_dir": portable(config.data_dir),
                       "synthetic": bool(config.data_dir) and is_demo_corpus(resolve(config.data_dir))},
    }


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's order, crops and masks: the same (seed, epoch) gives the same epoch."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def make_batch(clips: ClipSet, rows: torch.Tensor, crop: int, config: TrainConfig,
               generator: torch.Generator, augment: bool = True) -> torch.Tensor:
    """Random ``crop``-frame windows of ``rows``, normalised per window, with SpecAugment masks.

    Returns ``(len(rows), n_mels, crop)`` float32.
    """
    lengths, offsets = clips.lengths[rows], clips.offsets[rows]
    starts = offsets + (torch.rand(len(rows), generator=generator) * (lengths - crop + 1)).long()
    # Contiguous slices stacked: 10x faster than one fancy-indexed gather across the mel axis.
    x = torch.stack([clips.frames[:, start:start + crop] for start in starts.tolist()])
    x = normalize_windows(x, NORMALIZATION["eps"])  # (batch, n_mels, crop)
    if augment:
        bands = ~_masks(len(rows), x.shape[1], config.freq_masks, config.freq_mask_bands, generator)
        frames = ~_masks(len(rows), crop, config.time_masks, config.time_mask_frames, generator)
        x.mul_(bands[:, :, None] & frames[:, None, :])
    return x


def _masks(n: int, size: int, n_masks: int, max_width: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, size)`` bool, True inside ``n_masks`` random spans of 0..``max_width`` per row."""
    mask = torch.zeros(n, size, dtype=torch.bool)
    if n_masks == 0 or max_width == 0:
        return mask
    widths = torch.randint(0, max_width + 1, (n, n_masks), generator=generator)
    starts = (torch.rand(n, n_masks, generator=generator) * (size - widths + 1)).long()
    positions = torch.arange(size)
    inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])
    return mask | inside.any(dim=1)



@torch.no_grad()
def evaluate_clips(model: torch.nn.Module, clips: ClipSet, rows: torch.Tensor, config: TrainConfig,
                   return_predictions: bool = False) -> dict:
    """Loss, accuracy and balanced accuracy of whole clips, each predicted as identify does (windows averaged).

    ``return_predictions`` adds ``predicted``, the class index of each row, and ``probabilities``, the clip's
    distribution over the classes, as numpy arrays.
    """
    from sklearn.metrics import balanced_accuracy_score

    if len(rows) == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "balanced_accuracy": float("nan")}
    fps = FeatureConfig.from_dict(config.features).frames_per_second
    window, hop = round(config.window_seconds * fps), round(config.hop_seconds * fps)
    raw = [clips.clip(int(i)) for i in rows]
    whole = [scores_whole_clip(model, clip.shape[1], fps) for clip in raw]
    cut = [clip_windows(clip, window, hop, input_normalization(model))[1] for clip, w in zip(raw, whole) if not w]
    was_training = model.training
    model.eval()
    # A clip's answer is as identify gives it: one pass over the whole clip for whole-clip models
    # (clips up to 30 s), else the mean of its windows' probabilities.
    whole_probs = [predict_whole_clip(model, clip) for clip, w in zip(raw, whole) if w]
    if cut:
        owner = torch.cat([torch.full((len(w),), k) for k, w in enumerate(cut)])
        window_probs = predict_batches(model, torch.cat(cut).to(next(model.parameters()).device)).cpu()
        window_mean = torch.zeros(len(cut), window_probs.shape[1]).index_add_(0, owner, window_probs)
        window_mean /= torch.bincount(owner, minlength=len(cut))[:, None]
    model.train(was_training)
    whole_iter, window_iter = iter(whole_probs), iter(window_mean if cut else [])
    probs = torch.stack([next(whole_iter) if w else next(window_iter) for w in whole])
    targets = clips.targets[rows]
    predicted = probs.argmax(1)
    result = {
        "loss": float(F.nll_loss(probs.clamp(min=1e-8).log(), targets)),
        "accuracy": float((predicted == targets).float().mean()),
        "balanced_accuracy": float(balanced_accuracy_score(targets.numpy(), predicted.numpy())),
    }
    if return_predictions:
        result["predicted"], result["probabilities"] = predicted.numpy(), probs.numpy()
    return result


