"""Runs on disk: one directory per training run under ``checkpoints/runs/``.

A run directory holds::

    config.json     what was asked: kind, model, training and feature configs, dataset
    metrics.jsonl   one JSON line per epoch, appended as each ends
    progress.json   the latest step: done, total, live metrics (rewritten, throttled)
    status.json     state (running, finished, failed, stopped), pid, times, error
    last.pt         checkpoint after every epoch; best.pt on each improvement
    lock            held (flock) by the process training it, for as long as it lives

The lock is what makes a run's state known without guessing: the kernel drops it when the
process dies, even by kill -9, so "running" with a free lock means the run died.

Every kind of run (an identifier's training, a study and each of its runs, a launched job, a
tuning trial) goes through one lifecycle, :func:`lifecycle`: lock, "running", then "finished",
"stopped" (Ctrl-C, SIGTERM) or "failed" (any other exception, with its message).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core.errors import DeepLanguageError, UsageError
from core.files import write_json, write_text
from core.paths import CHECKPOINTS_DIR

# $DEEPLANGUAGE_RUNS_DIR moves them, e.g. to keep a test server's runs out of the checkout.
RUNS_DIR = Path(os.environ.get("DEEPLANGUAGE_RUNS_DIR", CHECKPOINTS_DIR / "runs"))
STATES = ("running", "finished", "failed", "stopped")
# Why a stopped run stopped, as status.json keeps it. No command in it: the page offers a Resume
# button, and the CLI prints its own `--resume` line when interrupted.
STOPPED = "stopped: the last finished epoch is kept, the unfinished one discarded; resume to continue from it"
# The one rule for a name the user gives a run, a study, a search or a taught model: one path component that can
# never leave its folder, hide as a dotfile or read as a command-line option ("-x"). "+": a study run's "es+full".
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def check_name(name: str, what: str = "--run") -> str:
    """``name`` if it is a safe single folder name, else a UsageError naming ``what``."""
    if not RUN_NAME.fullmatch(name or ""):
        raise UsageError(f"{what} {name!r} is not a valid name: use 1-100 letters, digits, '.', '_', '+' or '-', "
                         f"starting with a letter or digit (one folder name, no '/').")
    return name


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def create_run(kind: str, config: dict, runs_dir: str | Path = RUNS_DIR, name: str | None = None) -> Path:
    """Make a new, never shared run directory ``<kind>-<time>-<random>`` and store its config."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    if name is not None:
        run_dir = runs_dir / check_name(name)
        try:
            run_dir.mkdir()  # atomic: two launches at once can never both get it
        except FileExistsError:
            raise DeepLanguageError(f"run {run_dir} already exists; choose another name or resume it.") from None
    else:  # a generated name that another launch took in the same second is drawn again, never refused
        while True:
            run_dir = runs_dir / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            try:
                run_dir.mkdir()
                break
            except FileExistsError:
                continue
    write_json(run_dir / "config.json", {"kind": kind, **config})
    write_json(run_dir / "status.json", {"state": "created", "created": time.time()})
    return run_dir


class RunLock:
    """Exclusive ownership of a run by one live process (``with RunLock(run_dir): train...``).

    ``what`` names the run in the refusal ("run", "study").
    """

    def __init__(self, run_dir: str | Path, what: str = "run"):
        self.run_dir = Path(run_dir)
        self.what = what
        self.handle = None

    def __enter__(self) -> "RunLock":
        self.handle = open(self.run_dir / "lock", "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise DeepLanguageError(
                f"study already running: {self.run_dir} is held by another process; wait for it to end or stop it "
                f"first." if self.what == "study" else
                f"{self.what} {self.run_dir.name} is already running (being trained by another process); "
                f"stop it first, or wait for it to finish.") from None
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()  # closing releases the lock


def reap_when_done(process: subprocess.Popen) -> None:
    """Collect a detached job's exit status as soon as it ends, from a daemon thread.

    Without it a finished job stays a zombie child of the launcher (the Streamlit server) until
    the next Popen happens to reap it; a SIGCHLD handler would instead steal other code's children.
    """
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()


def is_locked(run_dir: str | Path) -> bool:
    """True while some live process holds the run's lock."""
    lock = Path(run_dir) / "lock"
    if not lock.exists():
        return False
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def set_status(run_dir: str | Path, state: str, **extra) -> None:
    run_dir = Path(run_dir)
    status = read_json(run_dir / "status.json", {})
    status.update(extra, state=state, updated=time.time())
    if state == "running":
        status.update(pid=os.getpid(), host=socket.gethostname(), error="")
    write_json(run_dir / "status.json", status)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def lifecycle(run_dir: str | Path, *, what: str = "run", resume: str = "",
              stop_on: tuple[type[BaseException], ...] = (), own: bool = True) -> Iterator[dict]:
    """Own ``run_dir`` for the block: the one place where a run's state changes.

    Takes the run's lock (a second process is refused with a :class:`DeepLanguageError`) and
    marks the run "running". Leaving the block marks it:

    * "finished", with the fields the block put in the yielded dict (``state`` and ``error``
      there override, e.g. a study whose runs failed);
    * "stopped" on KeyboardInterrupt, on SIGTERM (turned into one while the block runs, in the
      main thread) or on an exception of ``stop_on`` (e.g. a pruned tuning trial), its error
      :data:`STOPPED` (or the ``stop_on`` exception's message), plus ``resume``, a command to run, if given;
    * "failed" on any other exception, its error the message (``"<Type>: <message>"`` for a bug).

    The exception is re-raised. ``own=False`` (a DDP rank other than 0) does none of this: only
    one process writes a run's files.
    """
    outcome: dict = {}
    if not own:
        yield outcome
        return
    run_dir = Path(run_dir)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
    try:
        with RunLock(run_dir, what):
            set_status(run_dir, "running")
            try:
                yield outcome
            except (KeyboardInterrupt, *stop_on) as error:
                detail = str(error) if isinstance(error, stop_on) and str(error) else STOPPED
                set_status(run_dir, "stopped", error=f"{detail}; resume with: {resume}" if resume else detail)
                raise
            except BaseException as error:  # a user's error reads as it is; a bug says what kind it is
                set_status(run_dir, "failed", error=str(error) if isinstance(error, DeepLanguageError)
                           else f"{type(error).__name__}: {error}")
                raise
            set_status(run_dir, outcome.pop("state", "finished"), **outcome)
    finally:
        if in_main:  # None: the previous handler was not set from Python; the default is the closest
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def run_status(run_dir: str | Path) -> dict:
    """The run's status, corrected by its lock: a 'running' run nobody holds has died."""
    run_dir = Path(run_dir)
    status = read_json(run_dir / "status.json", {"state": "created"})
    if status.get("state") == "running" and not is_locked(run_dir):
        status = {**status, "state": "failed",
                  "error": status.get("error") or "the training process died (killed or crashed); resume it"}
    return status


def append_metrics(run_dir: str | Path, row: dict) -> None:
    with open(Path(run_dir) / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(row, default=float) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every complete metrics line; a line cut short by a crash is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def truncate_metrics(run_dir: str | Path, n_epochs: int) -> None:
    """Keep only the first ``n_epochs`` lines: on resume, epochs after the checkpoint are redone."""
    rows = [r for r in read_metrics(run_dir) if r.get("epoch", 0) <= n_epochs]
    write_text(Path(run_dir) / "metrics.jsonl", "".join(json.dumps(r, default=float) + "\n" for r in rows))


def list_runs(runs_dir: str | Path = RUNS_DIR) -> list[Path]:
    """Every run directory, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.exists():
        return []
    runs = [p for p in runs_dir.iterdir() if (p / "config.json").exists()]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)
