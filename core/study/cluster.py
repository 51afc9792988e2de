"""Where a study's jobs run: a Dask cluster, a local one, or this process.

* ``scheduler="tcp://HOST:8786"``: an existing Dask cluster (``dask scheduler`` on one machine,
  ``dask worker tcp://HOST:8786`` on each of the others). Its workers must import this repository
  and see the dataset, its feature cache and the study folder at the same paths (a shared disk):
  :func:`check_workers` says so before anything is sent.
* no scheduler, ``workers`` > 1 (default: one per core): a :class:`distributed.LocalCluster` of
  that many single-threaded processes.
* ``workers=1``: no Dask at all; the jobs run one after the other in this process.

Dask only carries jobs: a job is a plain function of the study folder (core.study.run.run_job),
its result files are on disk, and a job whose worker dies is sent again by Dask to another.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator

from core.errors import DeepLanguageError

# The Dask settings of a study's cluster, and why (read for the local cluster; given to others by DASK_CONFIG).
SETTINGS_FILE = Path(__file__).with_name("dask.yaml")
CONNECT_TIMEOUT_S = 5  # an unreachable scheduler is reported within this (and the worker wait below)
WORKER_WAIT_S = 5  # a scheduler with no worker yet: how long to wait for the first one


@contextlib.contextmanager
def session(scheduler: str | None, workers: int | None) -> Iterator:
    """A ``distributed.Client`` on ``scheduler`` or on a new local cluster; ``None`` for one local worker."""
    n_local = max(1, workers or os.cpu_count() or 1)
    if not scheduler and n_local == 1:
        yield None
        return
    import dask
    from distributed import Client, LocalCluster

    if not scheduler:
        with dask.config.set(settings()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Port .* is already in use")  # its health-check port moves
            cluster = LocalCluster(n_workers=n_local, threads_per_worker=1, processes=True, dashboard_address=None,
                                   memory_limit=0, silence_logs=logging.ERROR)
            with cluster, Client(cluster) as client:
                yield client
        return
    client = connect(scheduler)
    try:
        yield client
    finally:
        client.close()


def settings() -> dict:
    """``SETTINGS_FILE`` as ``dask.config.set`` takes it: one dotted key per setting."""
    import yaml

    def flat(tree: dict, prefix: str = "") -> dict:
        keys = {}
        for name, child in tree.items():
            keys.update(flat(child, f"{prefix}{name}.") if isinstance(child, dict) else {prefix + name: child})
        return keys

    return flat(yaml.safe_load(SETTINGS_FILE.read_text(encoding="utf-8")))


def connect(address: str):
    """A client on the scheduler at ``address`` with at least one worker, or a message naming the fix."""
    from distributed import Client

    try:
        client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as error:
        raise DeepLanguageError(
            f"could not reach the Dask scheduler at {address} within {CONNECT_TIMEOUT_S} s ({error}). Check the "
            f"address and port, start the scheduler there (`dask scheduler --port 8786`) and let its port "
            f"through the firewall, or leave --scheduler out to run the study on this machine.") from None
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except (TimeoutError, OSError):
        client.close()
        raise DeepLanguageError(
            f"the Dask scheduler at {address} has no worker. Start one on each machine, from this repository's "
            f"root: `dask worker {address} --nthreads 1` (one per core: --nworkers N).") from None
    return client


def n_workers(client) -> int:
    return max(1, len(client.scheduler_info(n_workers=-1)["workers"])) if client else 1


def check_workers(client, paths: list[Path]) -> None:
    """Refuse, naming what is missing, when a worker cannot import the project or see the study's folders;
    warn, naming the fix, when workers were started with Dask's malloc setting (see ``SETTINGS_FILE``)."""
    def look(paths: list[str]) -> dict:  # a local function: pickled by value, so it runs without the project
        import importlib.util
        import os

        try:
            code = importlib.util.find_spec("core.study.run") is not None
        except ModuleNotFoundError:  # no "core" package at all
            code = False
        return {"code": code, "missing": [p for p in paths if not os.path.exists(p)],
                "trim": os.environ.get("MALLOC_TRIM_THRESHOLD_")}

    answers = client.run(look, [str(Path(p).resolve()) for p in paths])
    for worker, answer in answers.items():
        if not answer["code"] or answer["missing"]:
            missing = ("this project's code (No module named 'core')" if not answer["code"] else
                       "the folders " + ", ".join(answer["missing"]))
            raise DeepLanguageError(
                f"Dask worker {worker} lacks {missing}. Every worker needs this repository on its PYTHONPATH "
                f"(start `dask worker` from the repository root, or with PYTHONPATH=<repository>), the packages "
                f"of requirements.txt, and the dataset, its feature cache and the study folder at the same paths "
                f"as here (a shared disk).")
    pinned = sorted(worker for worker, answer in answers.items() if answer.get("trim"))
    if pinned:
        print(f"warning: {len(pinned)} Dask worker(s) (e.g. {pinned[0]}) run with MALLOC_TRIM_THRESHOLD_="
              f"{answers[pinned[0]]['trim']}, Dask's default, which makes the study's training about 2.5x slower "
              f"there. Start them with `DASK_CONFIG={SETTINGS_FILE} dask worker ...` (that file, at that path on "
              f"their machine).", file=sys.stderr, flush=True)
