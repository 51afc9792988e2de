"""Training jobs: launch, stop and resume runs as separate, detached processes.

A job is ``python -m core train --start RUN_DIR`` (``--resume RUN_DIR`` once it has trained; or
``torchrun ... -m core train ...`` for several processes) started in its own session with its output in ``RUN_DIR/log.txt``: it
survives a page reload and a restart of the Streamlit server, and nothing but the run
directory ties it to whoever launched it. ``job.json`` records the process; the trainer
takes the run's lock, so :func:`core.jobs.registry.run_state` always knows whether it lives.

Stopping sends SIGINT to the job's process group: the trainer abandons the current step,
keeps the last finished epoch in ``last.pt``, marks the run "stopped" and lets go of its lock. A stop
is done then, though the process may take seconds more to exit (Python and torch tearing down); a job
that has not let go within ``timeout`` seconds gets SIGTERM, then SIGKILL; it still reads as "stopped".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

from core import runs
from core.jobs import registry
from core.identify.kinds import KINDS as IDENTIFY_MODELS  # the identifier kinds, trained by core.identify.train
from core.errors import DeepLanguageError
from core.paths import REPO_ROOT

STUDY_KINDS = ("nextframe", "autoencoder")  # one run of the pretraining study's models (core.jobs.study_job)
KINDS = IDENTIFY_MODELS + STUDY_KINDS
LOG_FILE = "log.txt"
LIVE_STATES = ("starting", "running")
# Training jobs alive at once, at most: a shared dashboard has no login, so anyone who reaches it could
# otherwise start any number of them. $DEEPLANGUAGE_MAX_JOBS changes it (read when a job starts).
MAX_JOBS = 2


def max_jobs() -> int:
    value = os.environ.get("DEEPLANGUAGE_MAX_JOBS", "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_JOBS


def job_limit_message(runs_dir: str | Path = runs.RUNS_DIR) -> str:
    """Why no training job may start now (the cap is reached, naming the live runs), or "" when one may."""
    live = [p.name for p in runs.list_runs(runs_dir) if registry.run_state(p)["state"] in LIVE_STATES]
    if len(live) < max_jobs():
        return ""
    return (f"{len(live)} training job(s) are running ({', '.join(live[:3])}), the most this server allows at "
            f"once ({max_jobs()}, set by DEEPLANGUAGE_MAX_JOBS). Stop one or wait for one to finish.")


def launch(kind: str, config, *, runs_dir: str | Path = runs.RUNS_DIR, name: str | None = None,
           threads: int = 1, nproc: int = 1) -> Path:
    """Create a run for ``config`` and start training it in the background; returns the run directory.

    ``kind``: a model of :data:`KINDS`. For the identify models ``config`` is a
    :class:`core.identify.clips.TrainConfig` (or its dict); its ``model`` is set to ``kind``. For the
    study kinds it is the dict :func:`study_run_config` makes. ``nproc`` > 1
    trains with that many processes under torchrun (DDP). ``threads``: torch threads per process.
    """
    if kind not in KINDS:
        raise DeepLanguageError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}.")
    if busy := job_limit_message(runs_dir):  # before the run's folder exists: a refused launch leaves nothing
        raise DeepLanguageError(busy)
    values = asdict(config) if is_dataclass(config) else dict(config)
    if kind in IDENTIFY_MODELS:
        values["model"] = kind
        if not values.get("data_dir"):
            raise DeepLanguageError("no dataset chosen: give the training config a data_dir.")
        run_dir = runs.create_run("identify", {"train": values}, runs_dir, name=name)
    else:
        run_dir = runs.create_run(kind, values, runs_dir, name=name)
    return start(run_dir, threads=threads, nproc=nproc)


def command(run_dir: Path, threads: int = 1, nproc: int = 1) -> list[str]:
    """The command line that trains ``run_dir`` (``--start``: never trained yet) or resumes it; its stored
    config says what to train."""
    first = runs.read_json(run_dir / "status.json", {}).get("state", "created") == "created"
    train = ["core", "train", "--start" if first else "--resume", str(run_dir), "--threads", str(threads)]
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                "-m", *train]
    return [sys.executable, "-m", *train]


def start(run_dir: str | Path, threads: int = 1, nproc: int = 1) -> Path:
    """Start the training process of an existing run, detached; refused while one is alive."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "config.json").exists():
        raise DeepLanguageError(f"{run_dir} is not a run directory (no config.json).")
    state = registry.run_state(run_dir)["state"]
    if state in LIVE_STATES:
        raise DeepLanguageError(f"run {run_dir.name} is already {state}; stop it first.")
    if busy := job_limit_message(run_dir.parent):
        raise DeepLanguageError(busy)
    if runs.read_json(run_dir / "config.json", {}).get("kind") in STUDY_KINDS:
        nproc = 1  # the study's runs are single-process by design (one core each)
    args = command(run_dir, threads, nproc)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)}
    # The status this job is launched over, read before the child exists: until the child writes its own, the
    # registry sees this job as "starting" (not "created"). Compared by identity, never by clock: the wall clock
    # can step back between the run's creation and its launch, and "launched after" must not depend on it.
    over = registry.status_stamp(runs.read_json(run_dir / "status.json", {}))
    started = time.time()
    with open(run_dir / LOG_FILE, "ab") as log:
        log.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(args)}\n".encode())
        log.flush()
        process = subprocess.Popen(args, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    runs.reap_when_done(process)
    runs.write_json(run_dir / registry.JOB_FILE, {
        "pid": process.pid, "pgid": process.pid, "proc_start": registry.process_start_time(process.pid),
        "command": args, "started": started, "over": over, "threads": threads, "nproc": nproc})
    return run_dir


def stop(run_dir: str | Path, timeout: float = 30.0) -> str:
    """Ask the run's training process to stop and wait up to ``timeout`` s for it; returns the run's state.

    SIGINT first (the trainer keeps its last finished epoch and marks the run stopped), then
    SIGTERM and SIGKILL if it lingers. Done as soon as the run is no longer live and its lock is free:
    the process may still be exiting, but it no longer touches the run (a resume may start at once).
    A run that is not running is left as it is.
    """
    run_dir = Path(run_dir)
    state = registry.run_state(run_dir)["state"]
    if state not in ("running", "starting"):
        return state
    (run_dir / registry.STOP_FILE).write_text(str(time.time()))
    targets = _targets(run_dir)
    deadline = time.monotonic() + timeout
    for sig, share in ((signal.SIGINT, 0.7), (signal.SIGTERM, 0.2), (signal.SIGKILL, 0.1)):
        _signal(targets, sig)
        until = min(deadline, time.monotonic() + max(timeout * share, 0.5))
        while time.monotonic() < until:
            if _let_go(run_dir, targets):
                return registry.run_state(run_dir)["state"]
            time.sleep(0.1)
    return registry.run_state(run_dir)["state"]


def _let_go(run_dir: Path, targets: list[tuple[int, bool]]) -> bool:
    """True once the run is no longer the job's: its lock free and its state final (stopped, failed,
    finished), or its processes gone (one stopped before it took the lock)."""
    if runs.is_locked(run_dir):
        return False
    return (registry.run_state(run_dir)["state"] not in LIVE_STATES
            or not any(registry.process_alive(pid) for pid, _ in targets))


def stop_report(run_dir: str | Path, timeout: float = 30.0) -> str:
    """Stop the run (:func:`stop`) and say what happened, for the page: how long it took and what is kept."""
    started = time.monotonic()
    state = stop(run_dir, timeout)
    seconds, kept = time.monotonic() - started, len(runs.read_metrics(run_dir))
    if state != "stopped":
        return f"{Path(run_dir).name} is {state} ({seconds:.1f} s after the stop was asked for)."
    return (f"{Path(run_dir).name} stopped {seconds:.1f} s after the request: "
            + (f"{kept} finished epoch(s) kept; Resume continues from epoch {kept + 1}." if kept
               else "no epoch had finished; Resume starts it over."))


def _targets(run_dir: Path) -> list[tuple[int, bool]]:
    """(pid, is_group) to signal: the launched job's process group, else the trainer's own pid."""
    job = runs.read_json(run_dir / registry.JOB_FILE, {})
    if job and registry.process_alive(job.get("pid"), job.get("proc_start")):
        return [(job["pgid"], True)]
    status = runs.read_json(run_dir / "status.json", {})
    return [(status["pid"], False)] if status.get("pid") and runs.is_locked(run_dir) else []


def _signal(targets: list[tuple[int, bool]], sig: int) -> None:
    for pid, is_group in targets:
        try:
            os.killpg(pid, sig) if is_group else os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def resume(run_dir: str | Path, threads: int = 1, nproc: int = 1) -> Path:
    """Continue a stopped or failed run from its last good checkpoint, in a new background process."""
    run_dir = Path(run_dir)
    state = registry.run_state(run_dir)["state"]
    if state == "finished":
        raise DeepLanguageError(f"run {run_dir.name} has finished; launch a new run to train more.")
    recover_checkpoint(run_dir)
    (run_dir / registry.STOP_FILE).unlink(missing_ok=True)
    return start(run_dir, threads=threads, nproc=nproc)


def recover_checkpoint(run_dir: str | Path) -> str | None:
    """Make ``last.pt`` loadable before a resume: a corrupt one is replaced by ``last-prev.pt``.

    Returns the name of the checkpoint training will resume from, or None (from scratch). With
    neither loadable, both are moved aside (``*.corrupt``) and the run starts over.
    """
    # Here, not at the top: core.checkpoint loads torch, and the Train page imports this module on its first load.
    from core.checkpoint import load_checkpoint, previous_path

    run_dir = Path(run_dir)
    last = run_dir / "last.pt"
    previous = previous_path(last)
    for path in (last, previous):
        if not path.exists():
            continue
        try:
            load_checkpoint(path)
        except DeepLanguageError:
            os.replace(path, path.with_name(path.name + ".corrupt"))
            continue
        if path != last:
            os.replace(path, last)
        return path.name
    return None


def wait(run_dir: str | Path, timeout: float = 600.0, poll: float = 0.2) -> str:
    """Block until the run is no longer starting or running (or ``timeout`` s pass); returns its state."""
    deadline = time.monotonic() + timeout
    while True:
        state = registry.run_state(run_dir)["state"]
        if state not in ("starting", "running") or time.monotonic() > deadline:
            return state
        time.sleep(poll)


def read_log(run_dir: str | Path, n_chars: int = 4000) -> str:
    """The end of a run's log.txt (what its process printed), as a terminal shows it: a progress bar
    redraws its line with carriage returns, so only the last drawing of each line is kept."""
    path = Path(run_dir) / LOG_FILE
    if not path.exists():
        return ""
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - n_chars))
        text = handle.read().decode(errors="replace")
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))


def study_run_config(data_dir: str | Path, condition: str = "none", seed: int = 0, **study) -> dict:
    """The config of a one-run job of the pretraining study: a next-frame LSTM pretrained (low-pass)
    on ``condition`` ("none" or a language) then trained on ``study["target"]``, or the autoencoder.

    ``study``: :class:`core.study.layout.StudyConfig` fields (target, hidden_size, max_epochs, ...).
    """
    return {"data_dir": str(Path(data_dir).resolve()), "condition": condition, "seed": int(seed), "study": study}
