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
from core.study.layout import AE, StudyConfig, default_study_dir, study_runs
from core.study.plan import plan_study
from core.study.trainer import train_run
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
    """Plan, train every unfinished run in parallel (one core each), then probe; resumable.

    The study's status turns "finished" only once its probes are written.

    ``on_progress(done, total, finished=, failed=)`` counts optimisation steps over all runs.
    """
    study_dir = plan_study(config, data_dir, study_dir, cache_dir=cache_dir, workers=workers)
    busy = f"study already running: {study_dir} is held by another process; wait for it to end or stop it first."
    with runs.RunLock(study_dir, busy=busy):
        runs.set_status(study_dir, "running")
        try:
            _train_all(study_dir, workers, on_progress)

            extract_identify_latents(study_dir)  # the language identifier's embedding, when one exists
            if probe:

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
                finished, _ = wait(pending, timeout=progress.PROGRESS_EVERY_S, return_when=FIRST_COMPLETED)
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
        raise DeepLanguageError(f"study already running: {study_dir.name}; wait for it to end or stop it first.")
    command = [sys.executable, "-m", "core", "study", "--data", str(data_dir), "--out", str(study_dir),
               *study_arguments(config)]
    if workers:
        command += ["--workers", str(workers)]
    with open(study_dir / "study.log", "ab") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    runs.reap_when_done(process)
    return study_dir, process.pid


def study_arguments(config: StudyConfig) -> list[str]:
    """The CLI options that rebuild ``config`` (see core/commands/study.py)."""
    return ["--target", config.target, "--pretrain", ",".join(config.pretrain), "--seeds", str(config.seeds),
            *(["--threshold", str(config.threshold)] if config.threshold is not None else
              ["--threshold-ratio", str(config.threshold_ratio)]), "--cutoff", str(config.cutoff_hz),
            "--pretrain-epochs", str(config.pretrain_epochs), "--max-epochs", str(config.max_epochs),
            "--hidden-size", str(config.hidden_size), *([] if config.autoencoder else ["--no-autoencoder"])]


