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

import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from core import distributed, progress, runs
from core.checkpoint import load_checkpoint, load_checkpoint_or_previous, save_checkpoint
from core.errors import DeepLanguageError
from core.audio.features import FeatureConfig
from core.identify.models import build_model, count_parameters, model_config
from core.identify import gmm, pretrained, pretrained_fit, supervector
from core.identify.clips import (ClipSet, TrainConfig, base_checkpoint, epoch_generator, evaluate_clips, load_clips,
                                 make_batch)

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


RESUME_FIELDS = {"labels": list, "optimizer": dict, "epoch": int, "step": int, "best": dict, "rng": dict}


@dataclass
class _Loop:
    """One identifier's training between two epochs: what it trains and how far it got."""

    config: TrainConfig
    clips: ClipSet
    train_rows: torch.Tensor
    val_rows: torch.Tensor
    run_dir: Path | None
    ddp: distributed.DistInfo
    net: torch.nn.Module  # what trains: DDP when distributed
    model: torch.nn.Module  # what is saved and evaluated
    optimizer: torch.optim.Optimizer
    weights: torch.Tensor | None  # the loss's class weights
    crop: int  # frames per training crop
    per_epoch: int  # optimizer steps per epoch
    total_steps: int
    base: dict  # the checkpoint but weights and training state (core.identify.clips.base_checkpoint)
    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps taken
    best: dict = field(default_factory=lambda: {"metric": "val_balanced_accuracy", "value": -1.0,
                                                "loss": math.inf, "epoch": 0})
    best_state: dict | None = None  # the checkpoint of the best epoch so far
    last_report: float = 0.0  # perf_counter of the last progress report
    epoch_started: float = 0.0  # perf_counter at the start of this epoch: its measured pace gives the ETA

    def should_continue(self) -> bool:
        patience = self.config.patience
        return self.epoch < self.config.epochs and not (patience and self.epoch - self.best["epoch"] >= patience)


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
    loop = _start(config, clips, train_rows, val_rows, run_dir)
    if run_dir and (run_dir / "last.pt").exists():
        _resume(loop, run_dir / "last.pt")
    loop.net.train()
    while loop.should_continue():
        started = loop.epoch_started = time.perf_counter()
        totals = _train_epoch(loop, on_progress)
        _end_epoch(loop, totals, time.perf_counter() - started)
    if loop.best_state is not None:
        return loop.best_state
    return {**loop.base, "state_dict": loop.model.state_dict(), "epoch": loop.epoch, "step": loop.step,
            "best": loop.best}


def _start(config: TrainConfig, clips: ClipSet, train_rows: torch.Tensor, val_rows: torch.Tensor,
           run_dir: Path | None) -> _Loop:
    """A fresh model (initial weights from ``config.seed``), its optimizer and the checkpoint's fixed part."""
    features = FeatureConfig.from_dict(config.features)
    n_classes = len(clips.labels)
    model_values = {**asdict(model_config(config.model, config.model_config)),
                    "n_mels": features.n_mels, "n_classes": n_classes}
    torch.manual_seed(config.seed)
    ddp = distributed.current()  # one process unless started by torchrun (see core.distributed)
    net = distributed.wrap(build_model(config.model, model_values), ddp)
    model = distributed.unwrap(net)
    per_epoch = max(1, len(train_rows) // config.batch_size)
    counts = torch.bincount(clips.targets[train_rows], minlength=n_classes).float()
    weights = (counts.sum() / (n_classes * counts.clamp(min=1))).to(ddp.device) if config.class_weights else None
    return _Loop(config, clips, train_rows, val_rows, run_dir, ddp, net, model, make_optimizer(model, config),
                 weights, crop=round(config.crop_seconds * features.frames_per_second), per_epoch=per_epoch,
                 total_steps=per_epoch * config.epochs,
                 base=base_checkpoint(config, clips, train_rows, val_rows, model_values))


def _resume(loop: _Loop, last_path: Path) -> None:
    """Restore model, optimizer, step, epoch, best metric and RNG states from ``last_path`` (or the one before)."""
    checkpoint, used = load_checkpoint_or_previous(last_path, RESUME_FIELDS)  # a corrupt last.pt: the one before
    if used != last_path:
        print(f"warning: {last_path} is unreadable; resuming from {used.name} (epoch {checkpoint['epoch']})",
              file=sys.stderr)
    if checkpoint["labels"] != loop.clips.labels:
        raise DeepLanguageError(f"{used} was trained on {checkpoint['labels']}, but the data now has "
                                f"{loop.clips.labels}; resume with the same dataset and --languages.")
    try:
        loop.model.load_state_dict(checkpoint["state_dict"])
        loop.optimizer.load_state_dict(checkpoint["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise DeepLanguageError(f"checkpoint {used} does not fit this run's model ({type(error).__name__}: "
                                f"{str(error).splitlines()[0]}). Start a new run.") from None
    loop.epoch, loop.step, loop.best = checkpoint["epoch"], checkpoint["step"], checkpoint["best"]
    _restore_rng(checkpoint["rng"])
    runs.truncate_metrics(loop.run_dir, loop.epoch)
    if (loop.run_dir / "best.pt").exists():
        loop.best_state = load_checkpoint(loop.run_dir / "best.pt")


def _train_epoch(loop: _Loop, on_progress: Callable[..., None] | None) -> dict:
    """One epoch of optimizer steps; returns the global batch's loss and accuracy sums and the last lr."""
    config, clips, ddp = loop.config, loop.clips, loop.ddp
    generator = epoch_generator(config.seed, loop.epoch)
    torch.manual_seed(config.seed * 1_000_003 + loop.epoch + 1)  # dropout: also a function of (seed, epoch)
    order = loop.train_rows[torch.randperm(len(loop.train_rows), generator=generator)]
    batches = order[: loop.per_epoch * config.batch_size].view(loop.per_epoch, -1) \
        if len(order) >= config.batch_size else order[None]
    loss_sum = correct = seen = 0.0
    for i, rows in enumerate(batches):
        lr = learning_rate(loop.step, loop.total_steps, loop.per_epoch, config)
        for group in loop.optimizer.param_groups:
            group["lr"] = lr
        x = make_batch(clips, rows, loop.crop, config, generator)  # the global batch: same RNG use on every rank
        mine = distributed.shard(torch.arange(len(rows)), ddp)
        x, y = x[mine].to(ddp.device), clips.targets[rows][mine].to(ddp.device)
        logits = loop.net(x)
        loss = F.cross_entropy(logits, y, weight=loop.weights, label_smoothing=config.label_smoothing)
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.optimizer.step()
        loop.step += 1
        loss_sum += float(loss.detach()) * len(y)
        correct += float((logits.argmax(1) == y).sum())
        seen += len(y)
        _report(loop, i + 1, loss_sum / seen, i == len(batches) - 1, on_progress)
    loss_sum, correct, seen = distributed.all_reduce_sum([loss_sum, correct, seen], ddp)  # the global batch's
    return {"loss_sum": loss_sum, "correct": correct, "seen": seen, "lr": lr}


def _report(loop: _Loop, epoch_steps: int, loss: float, last: bool, on_progress: Callable[..., None] | None) -> None:
    """Progress to the callback and progress.json, at most every PROGRESS_EVERY_S (and at an epoch's end)."""
    now = time.perf_counter()
    if now - loop.last_report < progress.PROGRESS_EVERY_S and not last:
        return
    loop.last_report = now
    done = loop.epoch * loop.per_epoch + epoch_steps
    # epoch_steps/epoch_seconds: this epoch's measured pace, what the first ETA is computed from
    live = {"epoch": loop.epoch + 1, "epochs": loop.config.epochs, "loss": loss,
            "epoch_steps": epoch_steps, "epoch_seconds": now - loop.epoch_started}
    if on_progress and loop.ddp.is_main:
        on_progress(done, loop.total_steps, **live)
    if loop.run_dir and loop.ddp.is_main:
        runs.write_json(loop.run_dir / "progress.json", {"done": done, "total": loop.total_steps, **live})


def _end_epoch(loop: _Loop, totals: dict, seconds: float) -> None:
    """Validate, keep the best epoch, and (rank 0) save last.pt, best.pt and the epoch's metrics."""
    loop.epoch += 1
    val = evaluate_clips(loop.model, loop.clips, loop.val_rows, loop.config)  # every rank: the same decision
    row = {"epoch": loop.epoch, "step": loop.step, "lr": totals["lr"], "train_loss": totals["loss_sum"] / totals["seen"],
           "train_accuracy": totals["correct"] / totals["seen"], "val_loss": val["loss"],
           "val_accuracy": val["accuracy"], "val_balanced_accuracy": val["balanced_accuracy"], "seconds": seconds}
    improved = (val["balanced_accuracy"], -val["loss"]) > (loop.best["value"], -loop.best["loss"])
    if improved:
        loop.best = {"metric": "val_balanced_accuracy", "value": val["balanced_accuracy"], "loss": val["loss"],
                     "epoch": loop.epoch}
    state = {k: v.clone() for k, v in loop.model.state_dict().items()}
    checkpoint = {**loop.base, "state_dict": state, "epoch": loop.epoch, "step": loop.step, "best": loop.best,
                  "metrics": row}
    if improved:
        loop.best_state = checkpoint
    if loop.run_dir and loop.ddp.is_main:
        if improved:
            save_checkpoint(checkpoint, loop.run_dir / "best.pt")  # no optimizer: what identify ships
        save_checkpoint({**checkpoint, "optimizer": loop.optimizer.state_dict(), "rng": _rng_states(),
                         "total_steps": loop.total_steps}, loop.run_dir / "last.pt", keep_previous=True)
        runs.append_metrics(loop.run_dir, row)


def train(
    config: TrainConfig | None,
    run_dir: str | Path | None = None,
    on_progress: Callable[..., None] | None = None,
    *,
    runs_dir: str | Path = runs.RUNS_DIR,
    name: str | None = None,
    clips: ClipSet | None = None,
    scheduler: str | None = None,
) -> Path:
    """Train ``config`` in a run directory and return it.

    ``run_dir=None`` creates a new run under ``runs_dir`` (named ``name`` or by time); an
    existing ``run_dir`` (made by :func:`core.runs.create_run` with ``{"train": asdict(config)}``)
    is trained, or resumed from its last.pt, with its stored config: the caller's ``config`` is
    ignored (may be None), as the stored architecture must win. ``on_progress(done, total, epoch=, epochs=, loss=)``,
    with ``phase=`` for the phases before epochs (decoding, statistics, fitting). ``scheduler``: the Dask
    scheduler whose workers encode a whisper run's clips (else a local cluster, :mod:`core.identify.embeddings`).
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
    with runs.lifecycle(run_dir, own=main) as outcome:  # stopped: runs.STOPPED (the CLI prints --resume)
        report = progress.PhaseProgress(run_dir if main else None, on_progress)
        if config.model in pretrained.KINDS:  # rows of a pretrained encoder, not log-mels; resumes from its cache
            best = pretrained_fit.fit(config, run_dir, report, scheduler)
            outcome.update(best_epoch=1, best_value=best["best"]["value"])
            return run_dir
        def preparing(done: int, total: int, **counts) -> None:
            report(done, total, phase=f"decoding and caching {total} clips", **counts)

        # The GMM supervector reads each clip from the cache when it needs it: nothing of the dataset in RAM.
        clips = clips or load_clips(config, preparing, in_ram=config.model not in supervector.KINDS)
        if main:
            runs.write_json(run_dir / "data.json", {"labels": clips.labels, "clips": int(len(clips)),
                                                    "splits": clips.manifest["split"].value_counts().to_dict()})
        # Epochs report their own progress (epoch, loss) to progress.json; closed-form fits report phases.
        best = fit(config, clips, clips.rows("train"), clips.rows("validation"), run_dir,
                   report if config.model in supervector.KINDS else on_progress)
        outcome.update(best_epoch=best["best"]["epoch"], best_value=best["best"]["value"])
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
