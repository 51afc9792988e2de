"""A study's runs on Dask: a real scheduler and two workers on 127.0.0.1 give the in-process results,
survive a killed worker, and bad clusters get a message saying what to do."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time

import numpy as np
import pytest

from core import runs
from core.errors import DeepLanguageError
from core.study.cluster import connect
from core.study.layout import StudyConfig, study_runs
from core.study.run import run_study
from tests.conftest import ROOT
from tests.test_study import make_corpus

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

# One target, none + one pretrained condition, 3 seeds, a group per run: 9 jobs of a few seconds.
SMALL = StudyConfig(targets=("aa",), pretrain=("none", "bb"), seeds=3, pretrain_epochs=(1,), pretrain_epoch_steps=3,
                    budget_steps=20, loss_budgets=(10, 20), threshold_step=10, hidden_size=16, crop_frames=50,
                    crops_per_clip=2, batch_size=8, eval_every=5, group_size=1, split_fractions=(0.35, 0.15, 0.5),
                    autoencoder=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(module: str, *args: str, cwd=ROOT, env_path: str | None = str(ROOT), extra_env: dict | None = None
          ) -> subprocess.Popen:
    """``python -m module`` with the project on PYTHONPATH; with ``env_path=None``, a Python that has the
    dependencies but not the project, as on a machine without it: site's .pth files (the editable install of
    `make setup`) are skipped by ``-S``, and the site-packages folders are given by hand."""
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **(extra_env or {})}
    flags = []
    if env_path:
        env["PYTHONPATH"] = env_path
    else:
        flags = ["-S"]
        env["PYTHONPATH"] = os.pathsep.join(sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}))
    return subprocess.Popen([sys.executable, *flags, "-m", module, *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture
def cluster():
    """A scheduler and a way to add workers (each its own process, no nanny: killing it kills the worker)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                       "--no-dashboard")]

    def add_worker(**kwargs) -> subprocess.Popen:
        worker = start("distributed.cli.dask_worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                       "--host", "127.0.0.1", **kwargs)
        processes.append(worker)
        return worker

    yield address, add_worker
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
            process.wait(10)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """The SMALL study run in this process: (study folder, corpus, cache)."""
    root = tmp_path_factory.mktemp("cluster")
    make_corpus(root / "corpus")
    run_study(SMALL, root / "corpus", root / "alone", cache_dir=root / "cache", workers=1, probe=False)
    return root / "alone", root / "corpus", root / "cache"


def curves(study) -> dict:
    return {p.name: runs.read_json(p / "curve.json")["val_loss"] for p in study_runs(study)}


def wait_for_workers(address: str, n: int) -> None:
    client = connect(address)
    client.wait_for_workers(n, timeout=60)
    client.close()


def test_a_study_on_a_scheduler_with_two_workers_equals_the_in_process_one(in_process, cluster, tmp_path):
    alone, corpus, cache = in_process
    address, add_worker = cluster
    add_worker(), add_worker()
    wait_for_workers(address, 2)
    study = run_study(SMALL, corpus, tmp_path / "dask", cache_dir=cache, scheduler=address, probe=False)
    assert set(curves(study)) == set(curves(alone))
    for name, losses in curves(alone).items():
        np.testing.assert_allclose(curves(study)[name], losses, rtol=1e-4, err_msg=name)
    workers = runs.read_json(study / "progress.json")["workers"]
    assert len(workers) == 2  # both took jobs


def test_a_killed_worker_s_runs_are_redone_elsewhere_and_every_run_finishes_once(in_process, cluster, tmp_path):
    alone, corpus, cache = in_process
    address, add_worker = cluster
    victim = add_worker()
    add_worker()
    wait_for_workers(address, 2)
    done = threading.Event()
    errors = []

    def study() -> None:
        try:
            run_study(SMALL, corpus, tmp_path / "dask", cache_dir=cache, scheduler=address, probe=False)
        except BaseException as error:  # noqa: BLE001 (reported below, in the test's thread)
            errors.append(error)
        done.set()

    thread = threading.Thread(target=study)
    thread.start()
    deadline = time.time() + 120
    while runs.read_json(tmp_path / "dask" / "progress.json", {}).get("done", 0) < 1 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)  # mid-study: the first job is back, the others in flight or waiting
    thread.join(300)
    assert done.is_set() and not errors, errors
    progress = runs.read_json(tmp_path / "dask" / "progress.json")
    n_jobs = len(study_runs(alone)) + SMALL.seeds  # every run, and one pretraining per seed
    assert progress["done"] == progress["total"] == n_jobs and not progress["failed"]
    assert sum(progress["workers"].values()) == n_jobs  # each job's result recorded exactly once
    assert all(runs.run_status(p)["state"] == "finished" for p in study_runs(tmp_path / "dask"))
    for name, losses in curves(alone).items():
        np.testing.assert_allclose(curves(tmp_path / "dask")[name], losses, rtol=1e-4, err_msg=name)


def test_an_unreachable_scheduler_is_named_with_the_fix_within_10_s():
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(DeepLanguageError, match=f"could not reach the Dask scheduler at {address}.*dask scheduler"):
        connect(address)
    assert time.monotonic() - started < 10


def test_workers_without_the_project_are_told_what_a_worker_needs(in_process, cluster, tmp_path):
    _, corpus, cache = in_process
    address, add_worker = cluster
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    add_worker(cwd=elsewhere, env_path=None)  # started outside the repository: no `core` to import
    wait_for_workers(address, 1)
    with pytest.raises(DeepLanguageError, match="lacks this project's code.*PYTHONPATH"):
        run_study(SMALL, corpus, tmp_path / "dask", cache_dir=cache, scheduler=address, probe=False)
    shutil.rmtree(tmp_path / "dask")


def test_the_cli_names_an_unreachable_scheduler_before_planning(in_process, tmp_path, capsys):
    from core.__main__ import main

    _, corpus, _ = in_process
    address = f"tcp://127.0.0.1:{free_port()}"
    code = main(["study", "--data", str(corpus), "--target", "aa", "--pretrain", "none", "--out", str(tmp_path / "s"),
                 "--scheduler", address])
    assert code != 0 and f"could not reach the Dask scheduler at {address}" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # refused before any work


def test_the_local_cluster_s_workers_keep_glibc_s_own_malloc_thresholds():
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers, which pins glibc's mmap threshold: every tensor
    above 128 kB was then mapped and unmapped again, and a study's training ran 2.5x slower on the local cluster
    than in one process. The local cluster leaves it unset, in its workers and in this process."""
    from core.study import cluster as study_cluster

    with study_cluster.session(None, 2) as client:
        seen = client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.getpid()))
        threads = [w["nthreads"] for w in client.scheduler_info(n_workers=-1)["workers"].values()]
    assert len(seen) == 2 and threads == [1, 1]
    assert [value for value, _ in seen.values()] == [None, None]
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ


@pytest.mark.parametrize("with_config", [False, True])
def test_workers_started_with_dask_s_malloc_setting_are_named_with_the_config_that_fixes_it(with_config, capfd):
    from core.study.cluster import check_workers

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {"DASK_CONFIG": str(ROOT / "core" / "study" / "dask.yaml")} if with_config else {}  # as the README says
    processes = [start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")]
    try:
        processes.append(start("distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard",
                               "--host", "127.0.0.1", extra_env=env))  # with a nanny, as `dask worker` starts
        client = connect(address)
        try:
            check_workers(client, [ROOT])
        finally:
            client.close()
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(10)
    warned = "MALLOC_TRIM_THRESHOLD_=65536" in capfd.readouterr().err
    assert warned != with_config
