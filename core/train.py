"""Train a language identifier on cached log-mels, resumably and deterministically from a seed.

``train(config, run_dir, on_progress)`` is the one entry point (CLI, Train page, tuning).
A run directory (see :mod:`core.runs`) gets ``last.pt`` after every epoch, ``best.pt`` on
each improvement of the validation metric, ``metrics.jsonl`` and ``progress.json``.
Calling ``train`` again on a run that has a ``last.pt`` resumes it: model, optimizer, step,
epoch, best metric and RNG states are restored, and because each epoch's data order, crops
and masks come from a generator seeded by ``(seed, epoch)``, an interrupted run ends with
exactly the metrics of an uninterrupted one.

Data: every clip's full-band log-mel is held in RAM as one ``(n_mels, total_frames)`` tensor;
a batch is a set of random crops gathered with one indexing op, normalised per crop and
SpecAugment-ed with vectorised masks, all in the main process (no DataLoader workers). The
per-epoch loop takes the list of training rows, so a DistributedSampler-style shard of it
can slot in later.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from core import distributed, runs
from core.checkpoint import load_checkpoint, load_checkpoint_or_previous, save_checkpoint
from core.configs import known_fields
from core.errors import DeepLanguageError
from core.features import FeatureConfig
from core.models import (DEFAULT_MODEL, build_model, clip_windows, count_parameters, input_normalization,
                         normalize_windows,
                         model_config, predict_batches, predict_whole_clip, scores_whole_clip)

CHECKPOINT_FORMAT = 1
NORMALIZATION = {"kind": "per-window", "eps": 1e-5}  # what the model expects of its input
PROGRESS_EVERY_S = 1.0  # progress.json is rewritten at most this often
DISTRIBUTED = True  # fit() runs under torchrun: DDP over core.distributed.current(), rank 0 writes


@dataclass
class TrainConfig:
    data_dir: str = ""  # dataset folder (Common Voice layout or <lang>/*.wav)
    cache_dir: str = ""  # feature cache base folder; empty = core.paths.default_cache_dir(data_dir)
    languages: tuple[str, ...] = ()  # languages to learn; empty = all in the dataset
    model: str = DEFAULT_MODEL  # a kind from core.models.MODELS
    model_config: dict = field(default_factory=dict)  # overrides of the model's config defaults
    epochs: int = 40  # upper bound; early stopping usually ends sooner
    batch_size: int = 32
    optimizer: str = "adamw"  # adamw | sgd (momentum 0.9, as the original project)
    lr: float = 0.01  # peak learning rate, the original project's
    weight_decay: float = 0.05  # decoupled for adamw, L2 for sgd
    warmup_epochs: float = 2.0  # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.02
    crop_seconds: float = 3.0  # random training crops; shorter clips are tiled to this length
    freq_masks: int = 2  # SpecAugment: masks per crop and their maximum widths
    freq_mask_bands: int = 8
    time_masks: int = 2
    time_mask_frames: int = 30
    label_smoothing: float = 0.1
    class_weights: bool = True  # weight the loss by inverse language frequency
    min_seconds: float = 1.5  # drop single-word prompts shorter than this
    split_seed: int = 0  # speaker-disjoint train/validation/test split (core.datasets.assign_splits)
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    patience: int = 10  # epochs without a better validation metric before stopping; 0 = never stop early
    window_seconds: float = 3.0  # evaluation and inference windows (as identify) ...
    hop_seconds: float = 1.0  # ... and their hop
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = leave torch's default
    features: dict = field(default_factory=lambda: asdict(FeatureConfig()))  # asdict(FeatureConfig)

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


def load_clips(config: TrainConfig, on_progress: Callable[..., None] | None = None,
               manifest_filter: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> ClipSet:
    """Prepare (cache) the dataset, keep the configured languages and long-enough clips, split by speaker.

    The manifest gets a ``split`` column from :func:`core.datasets.assign_splits` (``split_seed``).
    """
    from core.cache import FeatureCache, prepared_dataset
    from core.datasets import assign_splits, select_languages
    from core.paths import default_cache_dir

    if not config.data_dir:
        raise DeepLanguageError("no dataset given: pass --data DIR (a Common Voice folder or <lang>/*.wav).")
    features = FeatureConfig.from_dict(config.features)
    cache_dir = config.cache_dir or default_cache_dir(config.data_dir)
    manifest = prepared_dataset(config.data_dir, cache_dir, features, on_progress=on_progress)
    manifest = select_languages(manifest, list(config.languages) or None)
    manifest = manifest[~(manifest["duration"] < config.min_seconds)]
    if manifest_filter:
        manifest = manifest_filter(manifest)
    labels = sorted(manifest["language"].unique())
    if len(labels) < 2:
        raise DeepLanguageError(f"{config.data_dir} has {len(labels)} language(s) left to train on; at least 2 are needed.")
    manifest = assign_splits(manifest.reset_index(drop=True), tuple(config.split_fractions), seed=config.split_seed)
    cache = FeatureCache(cache_dir, features)
    arrays = cache.load_many(manifest["key"], normalize=False)
    crop = round(config.crop_seconds * features.frames_per_second)
    return ClipSet(manifest, arrays, labels, crop)


def learning_rate(step: int, total_steps: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to ``min_lr_ratio * lr``: a pure function of the step."""
    warmup = max(1, round(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


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


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and norm parameters: it only fights the normalisation.
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9)
    raise DeepLanguageError(f"unknown optimizer {config.optimizer!r}; choose adamw or sgd.")


@torch.no_grad()
def evaluate_clips(model: torch.nn.Module, clips: ClipSet, rows: torch.Tensor, config: TrainConfig,
                   return_predictions: bool = False) -> dict:
    """Loss, accuracy and balanced accuracy of whole clips, each predicted as identify does (windows averaged).

    ``return_predictions`` adds ``predicted``, the class index of each row, as a numpy array.
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
        result["predicted"] = predicted.numpy()
    return result


def _rng_states() -> dict:
    state = np.random.get_state(legacy=False)
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "python_version": random.getstate()[0], "python_gauss": random.getstate()[2],
            "numpy": {"key": torch.from_numpy(state["state"]["key"].astype(np.int64)),
                      "pos": int(state["state"]["pos"]), "has_gauss": int(state["has_gauss"]),
                      "gauss": float(state["gauss"])}}


def _restore_rng(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate((states["python_version"], tuple(states["python"]), states["python_gauss"]))
    numpy = states["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": numpy["key"].numpy().astype(np.uint32),
                         "pos": numpy["pos"]}, "has_gauss": numpy["has_gauss"], "gauss": numpy["gauss"]})


def _speakers(clips: ClipSet, split: str) -> list[str]:
    return sorted(clips.manifest.loc[clips.manifest["split"] == split, "speaker"].unique())


def fit(
    config: TrainConfig,
    clips: ClipSet,
    train_rows: torch.Tensor,
    val_rows: torch.Tensor,
    run_dir: Path | None = None,
    on_progress: Callable[..., None] | None = None,
) -> dict:
    """The training loop: epochs over ``train_rows``, early stopping on ``val_rows``.

    With ``run_dir``, writes last.pt / best.pt / metrics.jsonl / progress.json there and
    resumes from its last.pt if one exists. Returns the final checkpoint dict of the best
    epoch (model state included), whether or not a run_dir was given.
    """
    from core import classic

    if config.model in classic.KINDS:  # fitted in closed form (GMM + regression), not by epochs
        return classic.fit(config, clips, train_rows, val_rows, run_dir, on_progress)
    if config.threads:
        torch.set_num_threads(config.threads)
    features = FeatureConfig.from_dict(config.features)
    crop = round(config.crop_seconds * features.frames_per_second)
    n_classes = len(clips.labels)
    model_values = {**asdict(model_config(config.model, config.model_config)),
                    "n_mels": features.n_mels, "n_classes": n_classes}
    torch.manual_seed(config.seed)
    ddp = distributed.current()  # one process unless started by torchrun (see core.distributed)
    net = distributed.wrap(build_model(config.model, model_values), ddp)  # what trains: DDP when distributed
    model = distributed.unwrap(net)  # what is saved and evaluated
    optimizer = make_optimizer(model, config)
    per_epoch = max(1, len(train_rows) // config.batch_size)
    total_steps = per_epoch * config.epochs
    counts = torch.bincount(clips.targets[train_rows], minlength=n_classes).float()
    weights = (counts.sum() / (n_classes * counts.clamp(min=1))).to(ddp.device) if config.class_weights else None

    base = {
        "format": CHECKPOINT_FORMAT, "model": {"kind": config.model, "config": model_values},
        "labels": clips.labels, "features": asdict(features), "normalization": dict(NORMALIZATION),
        "window_seconds": config.window_seconds, "hop_seconds": config.hop_seconds,
        "train_config": asdict(config),
        "data": {"dir": str(Path(config.data_dir).resolve()) if config.data_dir else "",
                 "split_seed": config.split_seed, "split_fractions": list(config.split_fractions),
                 "n_train_clips": len(train_rows), "n_val_clips": len(val_rows),
                 "train_speakers": sorted(clips.manifest.loc[train_rows.numpy(), "speaker"].unique()),
                 "val_speakers": sorted(clips.manifest.loc[val_rows.numpy(), "speaker"].unique()),
                 "test_speakers": _speakers(clips, "test")},
    }
    epoch, step, best = 0, 0, {"metric": "val_balanced_accuracy", "value": -1.0, "loss": math.inf, "epoch": 0}
    best_state = None
    last_path = run_dir / "last.pt" if run_dir else None
    if last_path and last_path.exists():
        checkpoint, used = load_checkpoint_or_previous(last_path)  # a corrupt last.pt: the one before
        if used != last_path:
            print(f"warning: {last_path} is unreadable; resuming from {used.name} (epoch {checkpoint['epoch']})",
                  file=sys.stderr)
        if checkpoint["labels"] != clips.labels:
            raise DeepLanguageError(f"{last_path} was trained on {checkpoint['labels']}, but the data now has "
                                    f"{clips.labels}; resume with the same dataset and --languages.")
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        epoch, step, best = checkpoint["epoch"], checkpoint["step"], checkpoint["best"]
        _restore_rng(checkpoint["rng"])
        runs.truncate_metrics(run_dir, epoch)
        if (run_dir / "best.pt").exists():
            best_state = load_checkpoint(run_dir / "best.pt")

    net.train()
    last_report = 0.0
    while epoch < config.epochs and not (config.patience and epoch - best["epoch"] >= config.patience):
        started = time.perf_counter()
        generator = epoch_generator(config.seed, epoch)
        torch.manual_seed(config.seed * 1_000_003 + epoch + 1)  # dropout: also a function of (seed, epoch)
        order = train_rows[torch.randperm(len(train_rows), generator=generator)]
        batches = order[: per_epoch * config.batch_size].view(per_epoch, -1) if len(order) >= config.batch_size \
            else order[None]
        loss_sum = correct = seen = 0.0
        for i, rows in enumerate(batches):
            lr = learning_rate(step, total_steps, per_epoch, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = make_batch(clips, rows, crop, config, generator)  # the global batch: same RNG use on every rank
            mine = distributed.shard(torch.arange(len(rows)), ddp)
            x, y = x[mine].to(ddp.device), clips.targets[rows][mine].to(ddp.device)
            logits = net(x)
            loss = F.cross_entropy(logits, y, weight=weights, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += float(loss.detach()) * len(y)
            correct += float((logits.argmax(1) == y).sum())
            seen += len(y)
            now = time.perf_counter()
            if now - last_report >= PROGRESS_EVERY_S or i == len(batches) - 1:
                last_report = now
                live = {"epoch": epoch + 1, "epochs": config.epochs, "loss": loss_sum / seen}
                if on_progress and ddp.is_main:
                    on_progress(epoch * per_epoch + i + 1, total_steps, **live)
                if run_dir and ddp.is_main:
                    runs.write_json(run_dir / "progress.json",
                                    {"done": epoch * per_epoch + i + 1, "total": total_steps, **live})
        epoch += 1
        loss_sum, correct, seen = distributed.all_reduce_sum([loss_sum, correct, seen], ddp)  # the global batch's
        val = evaluate_clips(model, clips, val_rows, config)  # every rank: the same weights, the same decision
        row = {"epoch": epoch, "step": step, "lr": lr, "train_loss": loss_sum / seen,
               "train_accuracy": correct / seen, "val_loss": val["loss"], "val_accuracy": val["accuracy"],
               "val_balanced_accuracy": val["balanced_accuracy"], "seconds": time.perf_counter() - started}
        improved = (val["balanced_accuracy"], -val["loss"]) > (best["value"], -best["loss"])
        if improved:
            best = {"metric": "val_balanced_accuracy", "value": val["balanced_accuracy"], "loss": val["loss"],
                    "epoch": epoch}
        state = {k: v.clone() for k, v in model.state_dict().items()}
        checkpoint = {**base, "state_dict": state, "epoch": epoch, "step": step, "best": best, "metrics": row}
        if improved:
            best_state = checkpoint
        if run_dir and ddp.is_main:
            if improved:
                save_checkpoint(checkpoint, run_dir / "best.pt")  # no optimizer: what identify ships
            save_checkpoint({**checkpoint, "optimizer": optimizer.state_dict(), "rng": _rng_states(),
                             "total_steps": total_steps}, run_dir / "last.pt", keep_previous=True)
            runs.append_metrics(run_dir, row)
    return best_state if best_state is not None else {**base, "state_dict": model.state_dict(), "epoch": epoch,
                                                     "step": step, "best": best}


def train(
    config: TrainConfig | None,
    run_dir: str | Path | None = None,
    on_progress: Callable[..., None] | None = None,
    *,
    runs_dir: str | Path = runs.RUNS_DIR,
    name: str | None = None,
    clips: ClipSet | None = None,
) -> Path:
    """Train ``config`` in a run directory and return it.

    ``run_dir=None`` creates a new run under ``runs_dir`` (named ``name`` or by time); an
    existing ``run_dir`` (made by :func:`core.runs.create_run` with ``{"train": asdict(config)}``)
    is trained, or resumed from its last.pt, with its stored config: the caller's ``config`` is
    ignored (may be None), as the stored architecture must win. ``on_progress(done, total, epoch=, epochs=, loss=)``.
    A KeyboardInterrupt marks the run stopped and is re-raised; any other error marks it failed.
    """
    if run_dir is None:
        run_dir = runs.create_run("identify", {"train": asdict(config)}, runs_dir, name=name)
    else:
        run_dir = Path(run_dir)
        stored = runs.read_json(run_dir / "config.json")
        if stored is None:
            raise DeepLanguageError(f"{run_dir} is not a training run (no config.json). Check the path.")
        config = TrainConfig.from_dict(stored["train"])
    main = distributed.current().is_main  # under torchrun only rank 0 owns the run directory
    set_status = runs.set_status if main else (lambda *args, **kwargs: None)
    with runs.RunLock(run_dir) if main else contextlib.nullcontext():
        set_status(run_dir, "running")
        try:
            clips = clips or load_clips(config)
            if main:
                runs.write_json(run_dir / "data.json", {"labels": clips.labels, "clips": int(len(clips)),
                                                        "splits": clips.manifest["split"].value_counts().to_dict()})
            best = fit(config, clips, clips.rows("train"), clips.rows("validation"), run_dir, on_progress)
        except KeyboardInterrupt:
            set_status(run_dir, "stopped", error=f"interrupted; resume with: python -m core train --resume {run_dir}")
            raise
        except BaseException as error:
            set_status(run_dir, "failed", error=f"{type(error).__name__}: {error}")
            raise
        set_status(run_dir, "finished", best_epoch=best["best"]["epoch"], best_value=best["best"]["value"])
    return run_dir


def describe_run(run_dir: Path) -> str:
    """One line on a finished run: best epoch and validation figures."""
    metrics = runs.read_metrics(run_dir)
    if not metrics:
        return f"{run_dir}: no epoch finished"
    best = max(metrics, key=lambda r: (r["val_balanced_accuracy"], -r["val_loss"]))
    return (f"best epoch {best['epoch']}/{len(metrics)}: validation accuracy {best['val_accuracy']:.1%}, "
            f"balanced {best['val_balanced_accuracy']:.1%}, loss {best['val_loss']:.3f}")


__all__ = ["TrainConfig", "ClipSet", "load_clips", "learning_rate", "make_batch", "fit", "train",
           "evaluate_clips", "epoch_generator", "describe_run", "count_parameters"]
