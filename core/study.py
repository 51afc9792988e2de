"""The pretraining study: does hearing a language first (low-pass, < 500 Hz) speed up learning another?

Each *condition* is a pretraining language (or ``none``). For every condition and seed one
next-frame LSTM (``core.nextframe``) is trained on the condition's language, low-pass
filtered, for ``pretrain_epochs``; then on the full-band target language until its
validation loss falls below ``threshold`` (or ``max_epochs`` pass). Time, steps and epochs
to threshold are recorded, the model is frozen, and ``core.latents`` extracts its state on
held-out speakers of every language for ``core.probes``. A conv autoencoder per seed is
trained beside them, as a reference code.

A study on disk::

    <study>/study.json            StudyConfig, feature config, dataset and cache folders
    <study>/manifest.tsv          every usable clip with its speaker-disjoint split
    <study>/latent_manifest.tsv   the balanced held-out (test-split) sample whose latents are probed
    <study>/status.json, lock     the study process (core.runs helpers)
    <study>/progress.json         runs finished / total, for the Convergence page
    <study>/runs/<condition>-s<seed>/  one run each (config, metrics.jsonl, last.pt, result.json,
                                       latents.npz + latents.tsv), and runs/ae-s<seed>/

Splits never share a speaker and do not depend on the seed, so every run of a study trains,
stops and is probed on the same clips. Rerunning the same command skips finished runs and
resumes unfinished ones from their last epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core import runs
from core.configs import known_fields
from core.errors import DeepLanguageError
from core.features import FeatureConfig
from core.files import atomic_path
from core.paths import CHECKPOINTS_DIR, REPO_ROOT

STUDIES_DIR = CHECKPOINTS_DIR / "studies"
DEMO_STUDY_DIR = CHECKPOINTS_DIR / "demo-study"
NONE = "none"  # the condition without pretraining
AE = "ae"  # the autoencoder's runs: runs/ae-s<seed>
PROGRESS_EVERY_S = 1.0  # progress.json is rewritten at most this often


@dataclass(frozen=True)
class StudyConfig:
    target: str = "es"  # the language learnt after pretraining (full band)
    pretrain: tuple[str, ...] = (NONE, "es", "it", "ja")  # conditions: "none" or a language
    seeds: int = 3  # runs per condition
    # Validation MSE (normalised log-mel) that counts as learnt. None: threshold_ratio times the
    # loss of repeating the last frame on the target's validation clips (the copy baseline), so
    # one default suits any dataset; 0.85 takes ~150 steps (~10 s) on the demo corpus.
    threshold: float | None = None
    threshold_ratio: float = 0.85
    cutoff_hz: float = 500.0  # low-pass cutoff of the pretraining features, Hz
    pretrain_epochs: int = 1
    max_epochs: int = 30  # target-language epochs before a run that never crosses stops
    hidden_size: int = 128
    n_layers: int = 1
    crop_frames: int = 100  # frames per training example (1 s at 10 ms)
    crops_per_clip: int = 8  # random crops of every training clip per epoch
    batch_size: int = 32
    eval_every: int = 10  # target-phase steps between validation checks against the threshold
    learning_rate: float = 2e-3
    split_fractions: tuple[float, float, float] = (0.6, 0.1, 0.3)  # train/validation/test, by speaker
    split_seed: int = 0  # splits are shared by every run of the study
    min_seconds: float = 1.5  # shorter clips (one-word prompts) are left out
    autoencoder: bool = True  # train one conv autoencoder per seed as a reference code
    ae_epochs: int = 8
    latent_languages: tuple[str, ...] = ()  # languages whose latents are probed; () = all
    n_per_language: int | None = None  # latent sample per language; None = the smallest test split

    @classmethod
    def from_dict(cls, values: dict) -> "StudyConfig":
        values = known_fields(cls, values)
        for key in ("pretrain", "split_fractions", "latent_languages"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def conditions(self) -> list[str]:
        return list(dict.fromkeys(self.pretrain))

    def run_names(self) -> list[str]:
        names = [f"{c}-s{s}" for s in range(self.seeds) for c in self.conditions()]
        return names + ([f"{AE}-s{s}" for s in range(self.seeds)] if self.autoencoder else [])

    def key(self) -> str:
        """Hash of what makes runs comparable; conditions and seeds may grow within one study."""
        fixed = {k: v for k, v in asdict(self).items() if k not in ("pretrain", "seeds")}
        return hashlib.sha1(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:8]


def feature_config(config: StudyConfig, base: FeatureConfig = FeatureConfig()) -> FeatureConfig:
    return replace(base, lowpass_hz=config.cutoff_hz)


def default_study_dir(data_dir: str | Path, config: StudyConfig) -> Path:
    """Same dataset and settings -> same folder, so rerunning a command resumes its study."""
    return STUDIES_DIR / f"{Path(data_dir).resolve().name}-{config.target}-{config.key()}"


def _portable(path: str | Path) -> str:
    """A path relative to the repository when inside it, so a shipped study works from any clone."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def resolve(path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


# ---------------------------------------------------------------- planning


def plan_study(
    config: StudyConfig,
    data_dir: str | Path,
    study_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    on_progress: Callable[..., None] | None = None,
) -> Path:
    """Prepare the dataset, fix the splits and create every run's folder; returns the study folder.

    An existing study folder is reused when its settings match (more seeds or conditions are
    added to it); different settings are an error rather than a silent mix.
    """
    from core.cache import prepared_dataset
    from core.datasets import assign_splits, balance, filter_min_duration, select_languages
    from core.paths import default_cache_dir

    study_dir = Path(study_dir) if study_dir else default_study_dir(data_dir, config)
    features = feature_config(config)
    stored = runs.read_json(study_dir / "study.json")
    if stored:
        old = StudyConfig.from_dict(stored["study"])
        if old.key() != config.key():
            raise DeepLanguageError(
                f"study {study_dir} was made with other settings ({_diff(old, config)}); "
                f"give a new --out folder, or repeat the original settings to resume it.")
        config = replace(config, pretrain=tuple(dict.fromkeys(old.pretrain + config.pretrain)),
                         seeds=max(old.seeds, config.seeds))
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(data_dir)
    manifest = prepared_dataset(data_dir, cache_dir, features, workers=workers, on_progress=on_progress)
    languages = set(manifest["language"])
    for language in [config.target, *config.pretrain, *config.latent_languages]:
        if language != NONE and language not in languages:
            raise DeepLanguageError(f"language {language!r} is not in {data_dir}; it has "
                                    f"{', '.join(sorted(languages))}.")
    manifest = filter_min_duration(manifest.assign(duration=manifest["n_frames"] / features.frames_per_second),
                                   max(config.min_seconds, (config.crop_frames + 1) / features.frames_per_second))
    manifest = assign_splits(manifest, config.split_fractions, seed=config.split_seed)
    for split in ("train", "validation"):
        if not ((manifest["language"] == config.target) & (manifest["split"] == split)).any():
            raise DeepLanguageError(f"the target language {config.target} has no {split} speakers; it needs "
                                    f"at least three speakers with clips over {config.min_seconds} s.")
    held_out = select_languages(manifest[manifest["split"] == "test"], list(config.latent_languages))
    latent = balance(held_out, config.n_per_language, seed=config.split_seed)

    threshold = config.threshold
    if threshold is None:
        threshold = config.threshold_ratio * copy_baseline(manifest, cache_dir, features, config)
    study_dir.mkdir(parents=True, exist_ok=True)
    columns = ["key", "path", "language", "speaker", "split", "n_frames"]
    root = Path(data_dir).resolve()  # clip paths are kept relative to the dataset: it may move
    manifest["path"] = [os.path.relpath(p, root) if Path(p).is_relative_to(root) else p for p in manifest["path"]]
    latent = latent.assign(path=[os.path.relpath(p, root) if Path(p).is_relative_to(root) else p
                                 for p in latent["path"]])
    _write_tsv(study_dir / "manifest.tsv", manifest[columns])
    _write_tsv(study_dir / "latent_manifest.tsv", latent[columns])
    runs.write_json(study_dir / "study.json", {
        "study": asdict(config), "features": asdict(features), "data_dir": _portable(data_dir),
        "cache_dir": _portable(cache_dir), "threshold": float(threshold), "created": (stored or {}).get("created", time.time()),
    })
    for name in config.run_names():
        run_dir = study_dir / "runs" / name
        if not (run_dir / "config.json").exists():
            condition, seed = name.rsplit("-s", 1)
            runs.create_run("study-ae" if condition == AE else "study-lstm",
                            {"condition": condition, "seed": int(seed)}, study_dir / "runs", name=name)
    return study_dir


def copy_baseline(manifest: pd.DataFrame, cache_dir: Path, features: FeatureConfig, config: StudyConfig) -> float:
    """MSE of predicting each frame by the one before, on the target's validation crops."""
    from core.cache import FeatureCache

    cache = FeatureCache(cache_dir, features)
    rows = manifest[(manifest["language"] == config.target) & (manifest["split"] == "validation")]
    crops = _fixed_crops([cache.load(key).T for key in rows["key"]], config.crop_frames + 1)
    return float(np.mean((crops[:, 1:] - crops[:, :-1]) ** 2))


def _diff(old: StudyConfig, new: StudyConfig) -> str:
    a, b = asdict(old), asdict(new)
    return ", ".join(f"{k}: {a[k]} there, {b[k]} now" for k in a if a[k] != b[k] and k not in ("pretrain", "seeds"))


def _write_tsv(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def load_study(study_dir: str | Path) -> dict:
    """``study.json`` with ``config`` (a StudyConfig) and ``features`` (a FeatureConfig) rebuilt."""
    study_dir = Path(study_dir)
    stored = runs.read_json(study_dir / "study.json")
    if not stored:
        raise DeepLanguageError(f"{study_dir} is not a study (no study.json). Run `python -m core study` first.")
    return {**stored, "dir": study_dir, "config": StudyConfig.from_dict(stored["study"]),
            "features": FeatureConfig.from_dict(stored["features"])}


# ---------------------------------------------------------------- running


def run_study(
    config: StudyConfig,
    data_dir: str | Path,
    study_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    probe: bool = True,
    n_permutations: int | None = None,
    on_progress: Callable[..., None] | None = None,
) -> Path:
    """Plan, train every unfinished run in parallel (one core each), then probe; resumable.

    The study's status turns "finished" only once its probes are written.

    ``on_progress(done, total, finished=, failed=)`` counts optimisation steps over all runs.
    """
    study_dir = plan_study(config, data_dir, study_dir, cache_dir=cache_dir, workers=workers)
    with runs.RunLock(study_dir):
        runs.set_status(study_dir, "running")
        try:
            _train_all(study_dir, workers, on_progress)
            from core.latents import extract_identify_latents

            extract_identify_latents(study_dir)  # the language identifier's embedding, when one exists
            if probe:
                from core.probes import N_PERMUTATIONS, probe_study, study_report

                probe_study(study_dir, n_permutations or N_PERMUTATIONS)
                study_report(study_dir)  # summary.json
        except BaseException as error:
            state = "stopped" if isinstance(error, KeyboardInterrupt) else "failed"
            runs.set_status(study_dir, state, error=str(error))
            raise
        failed = [p.name for p in study_runs(study_dir) if runs.run_status(p)["state"] != "finished"]
        runs.set_status(study_dir, "failed" if failed else "finished",
                        error=f"runs failed: {', '.join(failed)}" if failed else "")
    return study_dir


def study_runs(study_dir: str | Path) -> list[Path]:
    root = Path(study_dir) / "runs"
    return sorted(p for p in root.iterdir() if (p / "config.json").exists()) if root.exists() else []


def _train_all(study_dir: Path, workers: int | None, on_progress: Callable[..., None] | None) -> None:
    todo = [p for p in study_runs(study_dir) if runs.run_status(p)["state"] != "finished"]
    total_runs = len(study_runs(study_dir))
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    failures: list[str] = []
    # Seed by seed, conditions interleaved, so every condition meets the same machine load (wall
    # times are compared across conditions); the short autoencoder runs fill in at the end.
    todo.sort(key=lambda p: (p.name.startswith(AE), int(p.name.rsplit("-s", 1)[1]), p.name))

    def report() -> None:
        progress = [runs.read_json(p / "progress.json", {}) for p in study_runs(study_dir)]
        finished = sum(runs.run_status(p)["state"] == "finished" for p in study_runs(study_dir))
        done = sum(x.get("done", 0) for x in progress)
        total = max(done, sum(x.get("total", 0) for x in progress))
        runs.write_json(study_dir / "progress.json", {"done": finished, "total": total_runs,
                                                      "steps": done, "failed": failures, "time": time.time()})
        if on_progress:
            on_progress(done, total, finished=finished, failed=len(failures))

    if not todo:
        report()
        return
    context = get_context("spawn")  # a clean interpreter per worker: no inherited torch threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        pending = {pool.submit(train_run, run_dir): run_dir for run_dir in todo}
        try:
            while pending:
                finished, _ = wait(pending, timeout=PROGRESS_EVERY_S, return_when=FIRST_COMPLETED)
                for future in finished:
                    run_dir = pending.pop(future)
                    if future.exception() is not None:
                        failures.append(f"{run_dir.name}: {future.exception()}")
                report()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    if failures:
        raise DeepLanguageError("some runs failed: " + "; ".join(failures)
                                + ". Run the same command again to retry them.")


def _init_worker() -> None:
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool; finished epochs are kept
    torch.set_num_threads(1)  # one process per core: more threads would only fight over it


def launch_study(config: StudyConfig, data_dir: str | Path, study_dir: str | Path | None = None,
                 workers: int | None = None) -> tuple[Path, int]:
    """Start ``python -m core study`` in the background, detached from the caller (a page can reload
    while it runs). Returns the study folder and the process id; its output goes to ``<study>/study.log``."""
    study_dir = Path(study_dir) if study_dir else default_study_dir(data_dir, config)
    study_dir.mkdir(parents=True, exist_ok=True)
    if runs.is_locked(study_dir):
        raise DeepLanguageError(f"study {study_dir.name} is already running.")
    command = [sys.executable, "-m", "core", "study", "--data", str(data_dir), "--out", str(study_dir),
               *study_arguments(config)]
    if workers:
        command += ["--workers", str(workers)]
    with open(study_dir / "study.log", "ab") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    return study_dir, process.pid


def study_arguments(config: StudyConfig) -> list[str]:
    """The CLI options that rebuild ``config`` (see core/commands/study.py)."""
    return ["--target", config.target, "--pretrain", ",".join(config.pretrain), "--seeds", str(config.seeds),
            *(["--threshold", str(config.threshold)] if config.threshold is not None else
              ["--threshold-ratio", str(config.threshold_ratio)]), "--cutoff", str(config.cutoff_hz),
            "--pretrain-epochs", str(config.pretrain_epochs), "--max-epochs", str(config.max_epochs),
            "--hidden-size", str(config.hidden_size), *([] if config.autoencoder else ["--no-autoencoder"])]


# ---------------------------------------------------------------- one run


def train_run(run_dir: str | Path, on_progress: Callable[..., None] | None = None) -> dict:
    """Train one run of a study to the end (resuming from ``last.pt``), then extract its latents.

    The clean callable behind every run: the study's process pool and any other launcher use it.
    Returns the run's result (also in ``result.json``).
    """
    run_dir = Path(run_dir)
    with runs.RunLock(run_dir):
        if runs.run_status(run_dir)["state"] == "finished" and (run_dir / "result.json").exists():
            return runs.read_json(run_dir / "result.json")
        runs.set_status(run_dir, "running")
        try:
            result = _train(run_dir, on_progress)
            from core.latents import extract_run_latents

            extract_run_latents(run_dir)
            runs.write_json(run_dir / "result.json", result)
        except BaseException as error:
            runs.set_status(run_dir, "stopped" if isinstance(error, KeyboardInterrupt) else "failed",
                            error=f"{type(error).__name__}: {error}")
            raise
        runs.set_status(run_dir, "finished")
    return result


def _train(run_dir: Path, on_progress: Callable[..., None] | None) -> dict:
    """The epoch loop shared by both kinds of run: checkpoint each epoch, resume from the last.

    In the target phase the validation loss is measured every ``eval_every`` steps; the first
    measurement at or below the threshold ends the run and fixes its steps, training seconds
    (evaluation excluded) and epochs to threshold.
    """
    import torch

    from core.checkpoint import load_checkpoint, save_checkpoint

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
        model.load_state_dict(checkpoint["model"])
        state = json.loads(checkpoint["state"])
        if "optimizer" in checkpoint:  # absent once training has ended: the loop below then does nothing
            optimizer.load_state_dict(checkpoint["optimizer"])
            rng.bit_generator.state = json.loads(checkpoint["numpy_rng"])
            torch.set_rng_state(checkpoint["torch_rng"])
    runs.truncate_metrics(run_dir, state["epoch"])
    val = torch.from_numpy(_fixed_crops(data.validation, length))
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
            if time.perf_counter() - last_report > PROGRESS_EVERY_S:
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
        from core.autoencoder import AutoencoderConfig, ConvAutoencoder

        return ConvAutoencoder(AutoencoderConfig(n_mels=features.n_mels))
    from core.nextframe import NextFrameConfig, NextFrameLSTM

    return NextFrameLSTM(NextFrameConfig(n_mels=features.n_mels, hidden_size=config.hidden_size,
                                         n_layers=config.n_layers))


def _save_dict(model, is_ae: bool) -> dict:
    from core import autoencoder, nextframe

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
        from core.cache import FeatureCache

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
            if len(crop) < length:  # only a clip shorter than one crop: pad with its mean
                crop = np.pad(crop, ((0, length - len(crop)), (0, 0)))
            batch.append(crop)
        yield np.stack(batch)


def _fixed_crops(clips: list[np.ndarray], length: int, per_clip: int = 4) -> np.ndarray:
    """Deterministic evaluation crops: up to ``per_clip`` consecutive windows from each clip's start."""
    crops = []
    for clip in clips:
        n = max(1, min(per_clip, len(clip) // length))
        for i in range(n):
            crop = clip[i * length:(i + 1) * length]
            crops.append(np.pad(crop, ((0, length - len(crop)), (0, 0))))
    return np.stack(crops).astype(np.float32)


# ---------------------------------------------------------------- reading results


def list_studies(extra: tuple[Path, ...] = (DEMO_STUDY_DIR,)) -> list[Path]:
    """Every study folder: under checkpoints/studies (newest first), then the shipped demo study."""
    found = [p for p in STUDIES_DIR.iterdir() if (p / "study.json").exists()] if STUDIES_DIR.exists() else []
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return found + [p for p in extra if (p / "study.json").exists()]


def study_status(study_dir: str | Path) -> dict:
    """The study process's state and its progress (runs finished of total, steps so far)."""
    study_dir = Path(study_dir)
    status = runs.run_status(study_dir)
    progress = runs.read_json(study_dir / "progress.json", {})
    return {**status, **{k: progress.get(k) for k in ("done", "total", "steps", "failed")}}


def study_results(study_dir: str | Path) -> pd.DataFrame:
    """One row per finished LSTM run: condition, seed, converged, epochs/steps/seconds to threshold."""
    rows = []
    for run_dir in study_runs(study_dir):
        result = runs.read_json(run_dir / "result.json")
        if result and result.get("kind") == "study-lstm":
            rows.append({k: result.get(k) for k in RESULT_COLUMNS})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


RESULT_COLUMNS = ["condition", "seed", "converged", "epochs_to_threshold", "steps_to_threshold",
                  "seconds_to_threshold", "pretrain_seconds", "start_val_loss", "final_val_loss", "epochs"]


def study_curves(study_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The learning curves of every LSTM run, in long form, against target-phase steps.

    Returns ``(validation, training)``: validation has run, condition, seed, step, val_loss (step 0
    is the start of the target phase, after any pretraining; then every ``eval_every`` steps and at
    each epoch's end); training has run, condition, seed, phase, step, loss per optimisation step
    (pretraining steps are numbered below zero, so every condition's target phase starts at 1).
    """
    validation, training = [], []
    for run_dir in study_runs(study_dir):
        spec = runs.read_json(run_dir / "config.json", {})
        if spec.get("kind") != "study-lstm":
            continue
        head = {"run": run_dir.name, "condition": spec["condition"], "seed": spec["seed"]}
        rows = runs.read_metrics(run_dir)
        n_pretrain = sum(len(r.get("step_losses", [])) for r in rows if r["phase"] == "pretrain")
        step = -n_pretrain
        for row in rows:
            for loss in row.get("step_losses", []):
                step += 1
                training.append({**head, "phase": row["phase"], "step": step if step > 0 else step - 1,
                                 "loss": loss})
            if row["phase"] != "target":
                continue
            if row["target_epoch"] == 1 and row.get("start_val_loss") is not None:
                validation.append({**head, "step": 0, "val_loss": row["start_val_loss"]})
            validation += [{**head, "step": s, "val_loss": v} for s, v in row.get("val_steps", [])]
            validation.append({**head, "step": row["steps"] - n_pretrain, "val_loss": row["val_loss"]})
    validation = pd.DataFrame(validation, columns=["run", "condition", "seed", "step", "val_loss"])
    return (validation.drop_duplicates(["run", "step"]).sort_values(["run", "step"]).reset_index(drop=True),
            pd.DataFrame(training, columns=["run", "condition", "seed", "phase", "step", "loss"]))


def run_progress(study_dir: str | Path) -> pd.DataFrame:
    """Each run's live state for a progress table: name, state, done, total, phase, val_loss."""
    rows = []
    for run_dir in study_runs(study_dir):
        progress = runs.read_json(run_dir / "progress.json", {})
        rows.append({"run": run_dir.name, "state": runs.run_status(run_dir)["state"],
                     "done": progress.get("done", 0), "total": progress.get("total", 0),
                     "phase": progress.get("phase", ""), "val_loss": progress.get("val_loss")})
    return pd.DataFrame(rows, columns=["run", "state", "done", "total", "phase", "val_loss"])
