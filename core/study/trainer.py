"""One run of the study: pretrain on a low-pass language, train to the threshold."""


from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core import progress, runs
from core.audio.features import FeatureConfig
from core.paths import resolve
from core.study.layout import AE, NONE, StudyConfig, load_study
from core.study.latents import extract_run_latents
from core.checkpoint import load_checkpoint, save_checkpoint
from core.study.autoencoder import AutoencoderConfig, ConvAutoencoder
from core.study.nextframe import NextFrameConfig, NextFrameLSTM
from core.study import autoencoder
from core.study import nextframe
from core.data.cache import FeatureCache

def train_run(run_dir: str | Path, on_progress: Callable[..., None] | None = None) -> dict:
    """Train one run of a study to the end (resuming from ``last.pt``), then extract its latents.

    The clean callable behind every run: the study's process pool and any other launcher use it.
    Returns the run's result (also in ``result.json``).
    """
    run_dir = Path(run_dir)
    if runs.run_status(run_dir)["state"] == "finished" and (run_dir / "result.json").exists():
        return runs.read_json(run_dir / "result.json")  # finished is final: no lock needed to read it
    with runs.lifecycle(run_dir):
        result = _train(run_dir, on_progress)
        extract_run_latents(run_dir)
        runs.write_json(run_dir / "result.json", result)
    return result


def _train(run_dir: Path, on_progress: Callable[..., None] | None) -> dict:
    """The epoch loop shared by both kinds of run: checkpoint each epoch, resume from the last.

    In the target phase the validation loss is measured every ``eval_every`` steps; the first
    measurement at or below the threshold ends the run and fixes its steps, training seconds
    (evaluation excluded) and epochs to threshold.
    """
    import torch


    spec = runs.read_json(run_dir / "config.json")
    study = load_study(run_dir.parent.parent)
    config: StudyConfig = study["config"]
    threshold = study["threshold"]
    condition, seed, is_ae = spec["condition"], int(spec["seed"]), spec["kind"] == "study-ae"
    data = RunData(study, condition)
    torch.manual_seed(seed)  # before the model is built: its initial weights belong to the seed
    model = _build_model(config, study["features"], is_ae)
    n_pretrain = 0 if is_ae or condition == NONE else config.pretrain_epochs
    n_epochs = n_pretrain + (config.ae_epochs if is_ae else config.max_epochs)
    length = model.config.patch_frames if is_ae else config.crop_frames + 1
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    rng = np.random.default_rng(seed)
    state = {"epoch": 0, "steps": 0, "seconds": {}, "crossed": None, "start_val_loss": None, "val_loss": None}
    if (run_dir / "last.pt").exists():
        checkpoint = load_checkpoint(run_dir / "last.pt")
        model.load_state_dict(checkpoint["state_dict"])
        state = json.loads(checkpoint["state"])
        if "optimizer" in checkpoint:  # absent once training has ended: the loop below then does nothing
            optimizer.load_state_dict(checkpoint["optimizer"])
            rng.bit_generator.state = json.loads(checkpoint["numpy_rng"])
            torch.set_rng_state(checkpoint["torch_rng"])
    runs.truncate_metrics(run_dir, state["epoch"])
    val = torch.from_numpy(fixed_crops(data.validation, length))
    steps_per_epoch = {p: -(-len(data.clips(p)) * config.crops_per_clip // config.batch_size)
                       for p in ("pretrain", "target") if data.clips(p)}
    n_pretrain_steps = n_pretrain * steps_per_epoch.get("pretrain", 0)
    total = n_pretrain_steps + (n_epochs - n_pretrain) * steps_per_epoch["target"]
    last_report = 0.0

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            losses = [_loss(model, val[i:i + 256], is_ae).item() * len(val[i:i + 256])
                      for i in range(0, len(val), 256)]
        model.train()
        return float(sum(losses) / len(val))

    model.train()
    for epoch in range(state["epoch"] + 1, n_epochs + 1):
        if state["crossed"]:
            break
        phase = "pretrain" if epoch <= n_pretrain else "target"
        checks = phase == "target" and not is_ae  # only the target phase races to the threshold
        target_epoch = epoch - n_pretrain if phase == "target" else epoch - n_pretrain - 1
        if phase == "target" and state["start_val_loss"] is None:
            state["start_val_loss"] = evaluate()
        seconds = state["seconds"].get(phase, 0.0)
        step_losses, val_steps = [], []
        for batch in _batches(data.clips(phase), rng, length, config.crops_per_clip, config.batch_size):
            started = time.perf_counter()
            loss = _loss(model, torch.from_numpy(batch), is_ae)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # LSTMs spike early on; keep steps sane
            optimizer.step()
            seconds += time.perf_counter() - started
            step_losses.append(round(loss.item(), 5))
            state["steps"] += 1
            if checks and (state["steps"] - n_pretrain_steps) % config.eval_every == 0:
                val_steps.append([state["steps"] - n_pretrain_steps, round(evaluate(), 5)])
                if val_steps[-1][1] <= threshold:
                    state["crossed"] = {"epochs": target_epoch, "steps": val_steps[-1][0], "seconds": seconds}
                    break
            if time.perf_counter() - last_report > progress.PROGRESS_EVERY_S:
                last_report = time.perf_counter()
                runs.write_json(run_dir / "progress.json", {
                    "done": state["steps"], "total": total, "phase": phase, "epoch": epoch,
                    "loss": step_losses[-1], "val_loss": state["val_loss"]})
                if on_progress:
                    on_progress(state["steps"], total, loss=step_losses[-1])
        val_loss = evaluate()
        if checks and not state["crossed"] and val_loss <= threshold:
            state["crossed"] = {"epochs": target_epoch, "steps": state["steps"] - n_pretrain_steps,
                                "seconds": seconds}
        state.update(epoch=epoch, val_loss=val_loss)
        state["seconds"][phase] = seconds
        runs.append_metrics(run_dir, {
            "epoch": epoch, "phase": phase, "target_epoch": target_epoch, "loss": float(np.mean(step_losses)),
            "val_loss": val_loss, "start_val_loss": state["start_val_loss"], "steps": state["steps"],
            "seconds": seconds, "step_losses": step_losses, "val_steps": val_steps, "time": time.time()})
        save_checkpoint({**_save_dict(model, is_ae), "optimizer": optimizer.state_dict(),
                         "numpy_rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state(),
                         "state": json.dumps(state), "condition": condition, "seed": seed,
                         "features": asdict(study["features"])}, run_dir / "last.pt")
    # Finished: the optimizer and RNG states are only for resuming; dropping them makes the frozen
    # model a third of the size (the shipped demo study must stay small).
    save_checkpoint({**_save_dict(model, is_ae), "state": json.dumps(state), "condition": condition, "seed": seed,
                     "features": asdict(study["features"])}, run_dir / "last.pt")
    runs.write_json(run_dir / "progress.json", {"done": total, "total": total, "phase": "done",
                                                "val_loss": state["val_loss"]})
    crossed = state["crossed"] or {}
    return {"kind": spec["kind"], "condition": condition, "seed": seed, "converged": bool(crossed),
            "epochs_to_threshold": crossed.get("epochs"), "steps_to_threshold": crossed.get("steps"),
            "seconds_to_threshold": crossed.get("seconds"), "pretrain_seconds": state["seconds"].get("pretrain", 0.0),
            "start_val_loss": state["start_val_loss"], "final_val_loss": state["val_loss"],
            "epochs": state["epoch"], "threshold": None if is_ae else threshold}


def _build_model(config: StudyConfig, features: FeatureConfig, is_ae: bool):
    if is_ae:

        return ConvAutoencoder(AutoencoderConfig(n_mels=features.n_mels))

    return NextFrameLSTM(NextFrameConfig(n_mels=features.n_mels, hidden_size=config.hidden_size,
                                         n_layers=config.n_layers))


def _save_dict(model, is_ae: bool) -> dict:

    return (autoencoder if is_ae else nextframe).save_dict(model)


def _loss(model, crops, is_ae: bool):
    """``crops`` are ``(batch, frames, n_mels)``; the autoencoder wants ``(batch, 1, n_mels, frames)``."""
    return model.loss(crops.transpose(1, 2).unsqueeze(1) if is_ae else crops)


class RunData:
    """The clips one run learns from, as ``(n_frames, n_mels)`` float32 arrays (normalised log-mels).

    ``pretrain``: the condition's language, training speakers, low-pass. ``target``: the target
    language's training speakers, full band. ``validation``: its validation speakers, full band.
    """

    def __init__(self, study: dict, condition: str):

        config: StudyConfig = study["config"]
        cache = FeatureCache(resolve(study["cache_dir"]), study["features"])
        manifest = pd.read_csv(study["dir"] / "manifest.tsv", sep="\t", dtype={"key": str})

        def load(language: str, split: str, lowpass: bool) -> list[np.ndarray]:
            rows = manifest[(manifest["language"] == language) & (manifest["split"] == split)]
            return [cache.load(key, lowpass=lowpass).T.copy() for key in rows["key"]]

        self.pretrain = [] if condition in (NONE, AE) else load(condition, "train", lowpass=True)
        self.target = load(config.target, "train", lowpass=False)
        self.validation = load(config.target, "validation", lowpass=False)

    def clips(self, phase: str) -> list[np.ndarray]:
        return self.pretrain if phase == "pretrain" else self.target


def _batches(clips: list[np.ndarray], rng: np.random.Generator, length: int, crops_per_clip: int,
             batch_size: int):
    """One epoch: ``crops_per_clip`` random crops of every clip, shuffled, ``(batch, length, n_mels)``."""
    order = rng.permutation(np.repeat(np.arange(len(clips)), crops_per_clip))
    for start in range(0, len(order), batch_size):
        batch = []
        for i in order[start:start + batch_size]:
            clip = clips[i]
            offset = rng.integers(0, max(1, len(clip) - length + 1))
            crop = clip[offset:offset + length]
            if len(crop) < length:  # only a clip shorter than one crop: pad with zeros (the normalised mean)
                crop = np.pad(crop, ((0, length - len(crop)), (0, 0)))
            batch.append(crop)
        yield np.stack(batch)


def fixed_crops(clips: list[np.ndarray], length: int, per_clip: int = 4) -> np.ndarray:
    """Deterministic evaluation crops: up to ``per_clip`` consecutive windows from each clip's start."""
    crops = []
    for clip in clips:
        n = max(1, min(per_clip, len(clip) // length))
        for i in range(n):
            crop = clip[i * length:(i + 1) * length]
            crops.append(np.pad(crop, ((0, length - len(crop)), (0, 0))))
    return np.stack(crops).astype(np.float32)
