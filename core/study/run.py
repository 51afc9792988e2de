"""Running a study: its runs in parallel, then latents and probes."""


from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Callable


from core import progress, runs
from core.errors import DeepLanguageError
from core.paths import REPO_ROOT
from core.study.layout import (AE, NONE, StudyConfig, default_study_dir, load_study, parse_run_name,
                               pretrain_name, study_runs)
from core.study.plan import plan_study
from core.study.trainer import pretrain_group, train_autoencoder, train_group
from core.study.latents import extract_identify_latents
from core.study.probes import N_PERMUTATIONS, probe_study, study_report

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
    """Plan, pretrain, train every unfinished run (groups in parallel, one core each), probe.

    Resumable: a finished pretraining or run is never redone; an interrupted one is. The study's
    status turns "finished" only once its probes are written. ``on_progress(done, total,
    finished=, failed=)`` counts runs finished (pretrainings count as runs of the training phase).
    """
    study_dir = plan_study(config, data_dir, study_dir, cache_dir=cache_dir, workers=workers)
    with runs.lifecycle(study_dir, what="study") as outcome:
        _train_all(study_dir, workers, on_progress)
        _set_phase(study_dir, "latents")
        extract_identify_latents(study_dir)  # the language identifier's embedding, when one exists
        if probe:
            _set_phase(study_dir, "probes")
            probe_study(study_dir, n_permutations or N_PERMUTATIONS, on_progress=_probe_progress(study_dir, on_progress))
            study_report(study_dir)  # summary.json
        failed = [p.name for p in study_runs(study_dir) if runs.run_status(p)["state"] != "finished"]
        _set_phase(study_dir, "finished")
        if failed:
            outcome.update(state="failed", error=f"runs failed: {', '.join(failed)}")
    return study_dir


def _probe_progress(study_dir: Path, on_progress: Callable[..., None] | None) -> Callable[..., None]:
    """Probing is minutes of a big study: its count goes to progress.json (the page) and the caller."""
    last = [0.0]

    def report(done: int, total: int) -> None:
        if time.time() - last[0] > progress.PROGRESS_EVERY_S or done == total:
            last[0] = time.time()
            runs.write_json(study_dir / "progress.json", {"phase": "probes", "done": done, "total": total,
                                                          "time": time.time()})
        if on_progress:
            on_progress(done, total, phase="probes")
    return report


def _set_phase(study_dir: Path, phase: str) -> None:
    progress_now = runs.read_json(study_dir / "progress.json", {})
    runs.write_json(study_dir / "progress.json", {**progress_now, "phase": phase, "time": time.time()})


def chunks(items: list, size: int, workers: int) -> list[list]:
    """``items`` in near-equal chunks of at most ``size``, their count a multiple of ``workers``
    where there are enough items (so no worker idles while another finishes a big chunk)."""
    if not items:
        return []
    n = -(-len(items) // size)
    n = min(len(items), -(-n // workers) * workers)
    return [items[i * len(items) // n:(i + 1) * len(items) // n] for i in range(n)]


def plan_jobs(study_dir: Path, workers: int = 1) -> tuple[list[tuple[str, list]], list[tuple[str, list]]]:
    """The unfinished work in two phases. First the pretrainings (lists of (condition, seed)), the
    autoencoders and the "none" runs, which need no pretraining; then every other run (lists of
    run names of one target). Groups hold at most ``group_size`` members."""
    config: StudyConfig = load_study(study_dir)["config"]
    todo = [p.name for p in study_runs(study_dir) if runs.run_status(p)["state"] != "finished"]
    specs = {name: parse_run_name(name) for name in todo}
    needed = sorted({(s["pretrain"], s["seed"]) for s in specs.values()
                     if s["kind"] == "lstm" and s["pretrain"] != NONE
                     and not all((study_dir / "pretrain" / pretrain_name(s["pretrain"], s["seed"], e)).exists()
                                 for e in config.pretrain_epochs if e > 0)}, key=lambda cs: (cs[1], cs[0]))
    first = [("pretrain", chunk) for chunk in chunks(needed, config.group_size, workers)]
    # The autoencoders are the longest jobs and need no pretraining: started early, they don't
    # leave one worker busy while the other idles at the end (longest jobs first).
    first += [("ae", [n]) for n, s in specs.items() if s["kind"] == AE]
    second = []
    for target in config.targets:
        # Seed by seed, conditions interleaved: a group holds whole seeds where it can.
        names = sorted((n for n, s in specs.items() if s["kind"] == "lstm" and s["target"] == target),
                       key=lambda n: (specs[n]["seed"], n))
        first += [("train", c) for c in chunks([n for n in names if specs[n]["pretrain"] == NONE],
                                                config.group_size, 1)]
        second += [("train", c) for c in chunks([n for n in names if specs[n]["pretrain"] != NONE],
                                                 config.group_size, workers)]
    return first, second


def _run_job(study_dir: Path, kind: str, items: list) -> None:
    if kind == "pretrain":
        pretrain_group(study_dir, items)
    elif kind == "train":
        train_group(study_dir, items)
    else:
        train_autoencoder(study_dir / "runs" / items[0])


def _needs(kind: str, items: list, pending_pretrain: set) -> set:
    """The (condition, seed) pretrainings a job waits for: those of its runs not yet on disk."""
    if kind != "train":
        return set()
    specs = [parse_run_name(name) for name in items]
    return {(s["pretrain"], s["seed"]) for s in specs} & pending_pretrain


def _train_all(study_dir: Path, workers: int | None, on_progress: Callable[..., None] | None) -> None:
    """Every unfinished job on a pool of ``workers`` processes; a group starts as soon as the
    pretrainings it starts from are on disk (no barrier between the phases)."""
    workers = max(1, workers or os.cpu_count() or 1)
    first, second = plan_jobs(study_dir, workers)
    waiting = first + second
    pending_pretrain = {item for kind, items in first if kind == "pretrain" for item in items}
    total = len(study_runs(study_dir)) + sum(kind == "pretrain" for kind, _ in first)
    failures: list[str] = []
    finished_pretrain = 0
    # Counted from the jobs as they end, not by reading every run's status (hundreds of files, every
    # couple of seconds, on a core the workers need).
    finished = sum(runs.run_status(p)["state"] == "finished" for p in study_runs(study_dir))

    def report() -> None:
        done = finished + finished_pretrain
        runs.write_json(study_dir / "progress.json", {"phase": "training", "done": done, "total": total,
                                                      "failed": failures, "time": time.time()})
        if on_progress:
            on_progress(done, total, finished=finished, failed=len(failures))

    context = get_context("spawn")  # a clean interpreter per worker: no inherited torch threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        pending = {}
        try:
            while waiting or pending:
                ready = [job for job in waiting if not _needs(*job, pending_pretrain)]
                for kind, items in ready:
                    waiting.remove((kind, items))
                    pending[pool.submit(_run_job, study_dir, kind, items)] = (kind, items)
                if not pending:  # what waits needs a pretraining that failed
                    break
                done, _ = wait(pending, timeout=progress.PROGRESS_EVERY_S, return_when=FIRST_COMPLETED)
                for future in done:
                    kind, items = pending.pop(future)
                    if future.exception() is not None:
                        failures.append(f"{kind} {items}: {future.exception()}")
                    elif kind == "pretrain":
                        finished_pretrain += 1
                        pending_pretrain -= set(items)
                    else:
                        finished += len(items)
                report()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    report()
    if failures:
        raise DeepLanguageError("some runs failed: " + "; ".join(failures)
                                + ". Run the same command again to retry them.")


def _init_worker() -> None:
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool; finished runs are kept
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
    runs.reap_when_done(process)  # no zombie left behind in the server
    return study_dir, process.pid


def study_arguments(config: StudyConfig) -> list[str]:
    """The CLI options that rebuild ``config`` (see core/commands/study.py)."""
    return ["--targets", ",".join(config.targets), "--pretrain", ",".join(config.pretrain),
            "--seeds", str(config.seeds), "--pretrain-epochs", ",".join(map(str, config.pretrain_epochs)),
            *(["--threshold", str(config.threshold)] if config.threshold is not None else []),
            "--threshold-step", str(config.threshold_step), "--threshold-ratio", str(config.threshold_ratio),
            "--budget", str(config.budget_steps), "--cutoff", str(config.cutoff_hz),
            "--hidden-size", str(config.hidden_size), "--normalization", config.normalization,
            *([] if config.autoencoder else ["--no-autoencoder"]),
            *(["--latent-languages", ",".join(config.latent_languages)] if config.latent_languages else []),
            *([] if config.keep_models else ["--no-keep-models"])]


