"""Training a study's models: shared pretrainings, then target groups, then the autoencoders.

* :func:`pretrain_group` trains the models of some (condition, seed) pairs on the condition's
  sound (low-pass, full band, in-utero or noise) for the longest dose, saving each model after
  every shorter dose: ``<study>/pretrain/<condition>__s<seed>__e<epochs>.pt``. Every target
  starts from those files, so a pretraining is computed once, not once per target.
* :func:`train_group` trains runs of one target together for the fixed budget of steps, from
  their pretrained (or, for "none", fresh) weights, and writes each run's curve, result and
  latents. A member's data order depends only on its seed, and its initial weights only on its
  seed and condition, so a run's result never depends on which runs it was grouped with.

Pretraining is a fresh start for the optimiser: the target phase begins with a new Adam.
"""

from __future__ import annotations

import contextlib

import time
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core import progress, runs
from core.checkpoint import load_checkpoint, save_checkpoint
from core.data.cache import FeatureCache
from core.study import autoencoder, nextframe
from core.study.autoencoder import AutoencoderConfig, ConvAutoencoder
from core.study.grouped import make_members
from core.study.latents import extract_run_latents
from core.study.layout import (NOISE, NONE, StudyConfig, feature_config, load_study, parse_condition,
                               parse_run_name, pretrain_name, resolve)
from core.study.nextframe import NextFrameConfig, NextFrameLSTM
from core.study.noise import noise_clips
from core.study.normalization import study_normalizer

MODEL_FILE = "last.pt"  # the frozen model of a finished run (latents read it)


class StudyData:
    """The clips a study trains on, as ``(n_frames, n_mels)`` float32 log-mels normalised as the
    study says (core.study.normalization): ``clips(language, split, variant)``.

    Loaded on each call and kept by nobody but the caller: a job holds a list only while it trains on it (a cache
    of every list a process ever loaded grew by about 11 MB per 1x of the sample in the largest process).
    """

    def __init__(self, study: dict):
        self.study = study
        self.config: StudyConfig = study["config"]
        self.manifest = pd.read_csv(study["dir"] / "manifest.tsv", sep="\t", dtype={"key": str})
        self.normalize = study_normalizer(study)

    def clips(self, language: str, split: str, variant: str = "full") -> list[np.ndarray]:
        """``variant``: "full" (full band), "lowpass" (the Butterworth) or "utero"."""
        features = feature_config(self.config, self.study["features"], variant)
        cache = FeatureCache(resolve(self.study["cache_dir"]), features)
        rows = self.manifest[(self.manifest["language"] == language) & (self.manifest["split"] == split)]
        return [self.normalize(cache.load(k, lowpass=variant != "full", normalize=False)).T.copy()
                for k in rows["key"]]

    def condition_clips(self, condition: str) -> list[np.ndarray]:
        """What a condition's pretraining hears: its language's training speakers, filtered, or noise."""
        if condition == NOISE:
            return noise_clips(self.study)
        language, variant = parse_condition(condition)
        return self.clips(language, "train", variant)


def batch_stream(clips: list[np.ndarray], rng: np.random.Generator, length: int, crops_per_clip: int,
                 batch_size: int):
    """Endless full batches ``(batch_size, length, n_mels)`` of random crops: epoch after epoch,
    ``crops_per_clip`` crops of every clip in a shuffled order; a batch may straddle two epochs
    (every batch is full, so members with different clip counts still stack)."""
    def indices():
        while True:
            yield from rng.permutation(np.repeat(np.arange(len(clips)), crops_per_clip))

    order = indices()
    while True:
        batch = []
        for _ in range(batch_size):
            clip = clips[next(order)]
            offset = rng.integers(0, max(1, len(clip) - length + 1))
            crop = clip[offset:offset + length]
            if len(crop) < length:  # only a clip shorter than one crop: pad with zeros (its mean)
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


def initial_model(config: StudyConfig, n_mels: int, seed: int) -> NextFrameLSTM:
    """A run's weights before any training: those ``torch.manual_seed(seed)`` gives."""
    import torch

    torch.manual_seed(seed)
    return NextFrameLSTM(NextFrameConfig(n_mels=n_mels, hidden_size=config.hidden_size, n_layers=config.n_layers))


def member_rng(seed: int, stream: str) -> np.random.Generator:
    """A member's own data order: a function of its seed and stream name only, never of its group."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode())])


def pretrain_group(study_dir: str | Path, members: list[tuple[str, int]],
                   on_progress: Callable[..., None] | None = None) -> None:
    """Pretrain each (condition, seed) for the longest dose; save a model after every dose."""
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    config: StudyConfig = study["config"]
    doses = sorted(e for e in config.pretrain_epochs if e > 0)
    data = StudyData(study)
    models = [initial_model(config, study["features"].n_mels, seed) for _, seed in members]
    heard = {c: data.condition_clips(c) for c in dict.fromkeys(c for c, _ in members)}  # once per condition
    streams = [batch_stream(heard[c], member_rng(s, f"pretrain:{c}"), config.crop_frames + 1,
                            config.crops_per_clip, config.batch_size) for c, s in members]
    group = make_members(models, config.learning_rate, config.group_backend)
    n_steps = doses[-1] * config.pretrain_epoch_steps
    for step in range(1, n_steps + 1):
        group.step(np.stack([next(s) for s in streams]))
        if step % config.pretrain_epoch_steps == 0 and step // config.pretrain_epoch_steps in doses:
            for k, (condition, seed) in enumerate(members):
                path = study_dir / "pretrain" / pretrain_name(condition, seed, step // config.pretrain_epoch_steps)
                save_checkpoint({**nextframe.save_dict(group.member(k)), "condition": condition, "seed": seed},
                                path)
        if on_progress:
            on_progress(step, n_steps)


def pretrained_model(study_dir: Path, condition: str, seed: int, epochs: int) -> NextFrameLSTM:
    return nextframe.from_checkpoint(load_checkpoint(study_dir / "pretrain" / pretrain_name(condition, seed, epochs)))


def train_group(study_dir: str | Path, run_names: list[str], on_progress: Callable[..., None] | None = None
                ) -> None:
    """Train runs of one target together for ``budget_steps``; write each run's files; resumes
    nothing (a group is short): an interrupted group is redone."""
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    config: StudyConfig = study["config"]
    specs = [parse_run_name(name) for name in run_names]
    target = specs[0]["target"]
    data = StudyData(study)
    run_dirs = [study_dir / "runs" / name for name in run_names]
    with contextlib.ExitStack() as stack:  # every run of the group owned, and finished or failed, together
        for run_dir in run_dirs:
            stack.enter_context(runs.lifecycle(run_dir))
        models = [initial_model(config, study["features"].n_mels, s["seed"]) if s["pretrain"] == NONE else
                  pretrained_model(study_dir, s["pretrain"], s["seed"], s["pretrain_epochs"]) for s in specs]
        curve = _train_members(config, data, target, models, [s["seed"] for s in specs], run_dirs, on_progress)
        for k, (run_dir, spec) in enumerate(zip(run_dirs, specs)):
            _finish_run(run_dir, spec, curve["members"][k], curve, study, config)


def _train_members(config: StudyConfig, data: StudyData, target: str, models: list, seeds: list[int],
                   run_dirs: list[Path], on_progress) -> dict:
    """The target phase of a group: fixed budget, validation every ``eval_every`` steps."""
    import torch

    group = make_members(models, config.learning_rate, config.group_backend)
    clips = data.clips(target, "train", "full")
    # Members with the same seed see the same batches: draw each seed's stream once.
    streams = {s: batch_stream(clips, member_rng(s, "target"), config.crop_frames + 1, config.crops_per_clip,
                               config.batch_size) for s in dict.fromkeys(seeds)}
    val = torch.from_numpy(fixed_crops(data.clips(target, "validation", "full"), config.crop_frames + 1))
    steps, val_losses, train_losses = [0], [group.evaluate(val)], []
    seconds, last_report = 0.0, 0.0
    for step in range(1, config.budget_steps + 1):
        batches = {s: next(stream) for s, stream in streams.items()}
        started = time.perf_counter()
        train_losses.append(group.step(np.stack([batches[s] for s in seeds])))
        seconds += time.perf_counter() - started
        if step % config.eval_every == 0 or step == config.budget_steps:
            steps.append(step)
            val_losses.append(group.evaluate(val))
        if time.perf_counter() - last_report > progress.PROGRESS_EVERY_S:
            last_report = time.perf_counter()
            for k, run_dir in enumerate(run_dirs):
                runs.write_json(run_dir / "progress.json", {"done": step, "total": config.budget_steps,
                                                            "phase": "target", "val_loss": float(val_losses[-1][k])})
            if on_progress:
                on_progress(step, config.budget_steps)
    val_losses, train_losses = np.array(val_losses), np.array(train_losses)
    members = [{"model": group.member(k), "val_loss": [round(float(v), 6) for v in val_losses[:, k]],
                "train_loss": [round(float(v), 5) for v in train_losses[:, k]]} for k in range(len(models))]
    # Each member's share of the group's training time: what one step of one run costs here.
    return {"members": members, "step": steps, "seconds_per_step": seconds / config.budget_steps / len(models)}


def _finish_run(run_dir: Path, spec: dict, member: dict, curve: dict, study: dict, config: StudyConfig) -> None:
    runs.write_json(run_dir / "curve.json", {"step": curve["step"], "val_loss": member["val_loss"],
                                             "train_loss": member["train_loss"],
                                             "seconds_per_step": curve["seconds_per_step"]})
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    for i, (start, step) in enumerate(zip(curve["step"], curve["step"][1:]), 1):  # for the run registry
        runs.append_metrics(run_dir, {"epoch": i, "phase": "target", "step": step, "val_loss": member["val_loss"][i],
                                      "loss": float(np.mean(member["train_loss"][start:step]))})
    save_checkpoint({**nextframe.save_dict(member["model"]), **{k: spec[k] for k in spec}},
                    run_dir / MODEL_FILE)
    extract_run_latents(run_dir)
    if not config.keep_models:
        (run_dir / MODEL_FILE).unlink()
    runs.write_json(run_dir / "result.json", {**spec, "kind": "study-lstm", "start_val_loss": member["val_loss"][0],
                                              "final_val_loss": member["val_loss"][-1]})
    runs.write_json(run_dir / "progress.json", {"done": config.budget_steps, "total": config.budget_steps,
                                                "phase": "done", "val_loss": member["val_loss"][-1]})


def train_autoencoder(run_dir: str | Path, on_progress: Callable[..., None] | None = None) -> None:
    """The conv autoencoder reference of one seed, on the targets' training clips (full band)."""
    import torch

    run_dir = Path(run_dir)
    study = load_study(run_dir.parent.parent)
    config: StudyConfig = study["config"]
    seed = parse_run_name(run_dir.name)["seed"]
    data = StudyData(study)
    with runs.lifecycle(run_dir):
        torch.manual_seed(seed)
        model = ConvAutoencoder(AutoencoderConfig(n_mels=study["features"].n_mels))
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        clips = [c for t in config.targets for c in data.clips(t, "train", "full")]
        stream = batch_stream(clips, member_rng(seed, "autoencoder"), model.config.patch_frames,
                              config.crops_per_clip, config.batch_size)
        n_steps = config.ae_epochs * -(-len(clips) * config.crops_per_clip // config.batch_size)
        for step in range(1, n_steps + 1):
            loss = model.loss(torch.from_numpy(next(stream)).transpose(1, 2).unsqueeze(1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if on_progress:
                on_progress(step, n_steps)
        save_checkpoint({**autoencoder.save_dict(model), "seed": seed}, run_dir / MODEL_FILE)
        extract_run_latents(run_dir)
        if not config.keep_models:
            (run_dir / MODEL_FILE).unlink()
        runs.write_json(run_dir / "result.json", {"kind": "study-ae", "seed": seed, "final_loss": loss.item()})


def train_run(run_dir: str | Path, on_progress: Callable[..., None] | None = None) -> dict:
    """Train one run folder of a study on its own (its pretraining too, unless already on disk):
    the entry point for a launcher that runs one job per run (core.jobs). Returns its result."""
    run_dir = Path(run_dir)
    study_dir = run_dir.parent.parent
    spec = parse_run_name(run_dir.name)
    if runs.run_status(run_dir)["state"] != "finished":
        if spec["kind"] == "lstm" and spec["pretrain"] != NONE and not (
                study_dir / "pretrain" / pretrain_name(spec["pretrain"], spec["seed"], spec["pretrain_epochs"])).exists():
            pretrain_group(study_dir, [(spec["pretrain"], spec["seed"])])
        if spec["kind"] == "lstm":
            train_group(study_dir, [run_dir.name], on_progress)
        else:
            train_autoencoder(run_dir, on_progress)
    return {**runs.read_json(run_dir / "result.json", {}), "condition": spec["pretrain"] or "ae"}
