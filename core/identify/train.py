"""Train a language identifier on cached log-mels, resumably and deterministically from a seed.

``train(config, run_dir, on_progress)`` is the one entry point (CLI, Train page, tuning).
A run directory (see :mod:`core.runs`) gets ``last.pt`` after every epoch, ``best.pt`` on
each improvement of the validation metric, ``metrics.jsonl`` and ``progress.json``.
Calling ``train`` again on a run that has a ``last.pt`` resumes it: model, optimizer, step,
epoch, best metric and RNG states are restored, and because each epoch's data order, crops
and masks come from a generator seeded by ``(seed, epoch)``, an interrupted run ends with
exactly the metrics of an uninterrupted one.

The loop itself: neural models train by epochs (DDP under torchrun, see :mod:`core.distributed`);
the GMM-supervector model is fitted in closed form by :mod:`core.identify.gmm`.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from core import distributed, progress, runs
from core.checkpoint import load_checkpoint, load_checkpoint_or_previous, save_checkpoint
from core.errors import DeepLanguageError
from core.audio.features import FeatureConfig
from core.identify.models import (build_model, count_parameters, model_config)
from core.identify import gmm, supervector
from core.runs import STOPPED
from core.identify.clips import CHECKPOINT_FORMAT, ClipSet, NORMALIZATION, TrainConfig, epoch_generator, evaluate_clips, load_clips, make_batch

def learning_rate(step: int, total_steps: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to ``min_lr_ratio * lr``: a pure function of the step."""
    warmup = max(1, round(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))



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

    if config.model in supervector.KINDS:  # fitted in closed form (GMM + regression), not by epochs
        return gmm.fit(config, clips, train_rows, val_rows, run_dir, on_progress)
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
            if now - last_report >= progress.PROGRESS_EVERY_S or i == len(batches) - 1:
                last_report = now
                # epoch_steps/epoch_seconds: this epoch's measured pace, what the first ETA is computed from
                live = {"epoch": epoch + 1, "epochs": config.epochs, "loss": loss_sum / seen,
                        "epoch_steps": i + 1, "epoch_seconds": now - started}
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
            set_status(run_dir, "stopped", error=STOPPED)
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
