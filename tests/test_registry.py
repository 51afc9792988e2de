"""core.registry: a run's state read from disk without guessing, even after kill -9."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from core import runs
from core.jobs import registry
from core.errors import DeepLanguageError
from tests.conftest import ROOT

# A stand-in trainer: owns the run through the one lifecycle, then sleeps until killed.
HOLDER = textwrap.dedent("""
    import sys, time
    from core import runs
    with runs.lifecycle(sys.argv[1]):
        print("ready", flush=True)
        time.sleep(60)
""")


def _hold(run_dir) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def _kill9(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_created_running_then_killed_reads_failed(tmp_path):
    run_dir = runs.create_run("identify", {"train": {"epochs": 3}}, tmp_path)
    assert registry.run_state(run_dir)["state"] == "created"
    holder = _hold(run_dir)
    assert registry.run_state(run_dir)["state"] == "running"
    _kill9(holder)
    status = registry.run_state(run_dir)
    assert status["state"] == "failed" and "died" in status["error"]


@pytest.mark.slow
def test_killed_after_a_stop_request_reads_stopped(tmp_path):
    run_dir = runs.create_run("identify", {"train": {}}, tmp_path)
    holder = _hold(run_dir)
    (run_dir / registry.STOP_FILE).write_text("now")
    assert registry.run_state(run_dir)["state"] == "running"  # asked, not yet gone
    _kill9(holder)
    assert registry.run_state(run_dir)["state"] == "stopped"


@pytest.mark.slow
def test_a_launched_process_is_starting_until_it_locks_and_failed_if_it_dies_first(tmp_path):
    run_dir = runs.create_run("identify", {"train": {}}, tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    runs.write_json(run_dir / registry.JOB_FILE, {"pid": sleeper.pid, "started": time.time(),
                                                  "proc_start": registry.process_start_time(sleeper.pid)})
    assert registry.run_state(run_dir)["state"] == "starting"
    _kill9(sleeper)
    status = registry.run_state(run_dir)
    assert status["state"] == "failed" and "log.txt" in status["error"]


def test_a_recycled_pid_is_not_taken_for_the_job(tmp_path):
    run_dir = runs.create_run("identify", {"train": {}}, tmp_path)
    runs.write_json(run_dir / registry.JOB_FILE, {"pid": os.getpid(), "started": time.time(), "proc_start": -1.0})
    assert registry.run_state(run_dir)["state"] == "failed"


def test_two_launches_at_once_never_share_a_directory(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda i: runs.create_run("identify", {"i": i}, tmp_path), range(32)))
    assert len(set(made)) == 32
    with pytest.raises(DeepLanguageError, match="already exists"):
        runs.create_run("identify", {}, tmp_path, name=made[0].name)


def test_a_generated_name_taken_in_the_same_second_is_drawn_again(tmp_path, monkeypatch):
    draws = iter(["aaaaaa", "aaaaaa", "bbbbbb"])  # the second launch draws the first one's token
    monkeypatch.setattr(runs.secrets, "token_hex", lambda n: next(draws))
    monkeypatch.setattr(runs.time, "strftime", lambda fmt: "20261203-120000")
    first = runs.create_run("identify", {}, tmp_path)
    second = runs.create_run("identify", {}, tmp_path)
    assert (first.name, second.name) == ("identify-20261203-120000-aaaaaa", "identify-20261203-120000-bbbbbb")


@pytest.mark.slow
def test_a_run_cannot_be_trained_twice_at_once(tmp_path):
    run_dir = runs.create_run("identify", {"train": {}}, tmp_path)
    holder = _hold(run_dir)
    try:
        with pytest.raises(DeepLanguageError, match="already running"):
            with runs.RunLock(run_dir):
                pass
    finally:
        _kill9(holder)
    with runs.RunLock(run_dir):  # free again once the holder is gone
        pass


def test_lifecycle_marks_finished_stopped_and_failed(tmp_path):
    done = runs.create_run("identify", {}, tmp_path, name="done")
    with runs.lifecycle(done) as outcome:
        assert runs.run_status(done)["state"] == "running" and runs.is_locked(done)
        outcome.update(best_epoch=3)
    status = runs.run_status(done)
    assert status["state"] == "finished" and status["best_epoch"] == 3 and not runs.is_locked(done)

    stopped = runs.create_run("identify", {}, tmp_path, name="stopped")
    with pytest.raises(KeyboardInterrupt), runs.lifecycle(stopped, resume="python -m core train --resume x"):
        raise KeyboardInterrupt
    status = runs.run_status(stopped)
    assert status["state"] == "stopped" and "--resume x" in status["error"]

    failed = runs.create_run("identify", {}, tmp_path, name="failed")
    with pytest.raises(ZeroDivisionError), runs.lifecycle(failed):
        1 / 0
    status = runs.run_status(failed)
    assert status["state"] == "failed" and status["error"].startswith("ZeroDivisionError")

    pruned = runs.create_run("identify", {}, tmp_path, name="pruned")
    with pytest.raises(TimeoutError), runs.lifecycle(pruned, resume="", stop_on=(TimeoutError,)):
        raise TimeoutError("pruned after epoch 2")
    assert runs.run_status(pruned)["error"] == "pruned after epoch 2"

    outcome_failed = runs.create_run("study", {}, tmp_path, name="partial")
    with runs.lifecycle(outcome_failed, what="study") as outcome:
        outcome.update(state="failed", error="runs failed: es-s0")
    assert runs.run_status(outcome_failed)["state"] == "failed"


def test_lifecycle_of_a_rank_that_does_not_own_the_run_writes_nothing(tmp_path):
    run_dir = runs.create_run("identify", {}, tmp_path)
    with pytest.raises(KeyboardInterrupt), runs.lifecycle(run_dir, own=False):
        assert not runs.is_locked(run_dir)
        raise KeyboardInterrupt
    assert runs.run_status(run_dir)["state"] == "created"


@pytest.mark.slow
def test_sigterm_stops_a_run(tmp_path):
    run_dir = runs.create_run("identify", {"train": {}}, tmp_path)
    holder = _hold(run_dir)
    holder.send_signal(signal.SIGTERM)
    holder.wait(timeout=20)
    status = runs.run_status(run_dir)
    assert status["state"] == "stopped" and status["error"] == runs.STOPPED


def test_records_summarise_state_metrics_and_config(tmp_path):
    finished = runs.create_run("identify", {"train": {"model": "cnn-baseline", "epochs": 2, "lr": 0.01,
                                                      "data_dir": "/data/cv", "seed": 3}}, tmp_path, name="a")
    for epoch, (acc, loss) in enumerate([(0.5, 1.0), (0.8, 0.6)], start=1):
        runs.append_metrics(finished, {"epoch": epoch, "step": 4 * epoch, "train_loss": loss, "val_loss": loss,
                                       "val_accuracy": acc, "val_balanced_accuracy": acc, "seconds": 2.0})
    runs.set_status(finished, "finished")
    runs.create_run("nextframe", {"condition": "es", "seed": 0}, tmp_path, name="b")
    table = registry.list_run_records(tmp_path)
    assert list(table.columns) == registry.RECORD_COLUMNS and set(table["run"]) == {"a", "b"}
    row = table.set_index("run").loc["a"]
    assert row["state"] == "finished" and row["epochs_done"] == 2 and row["best_epoch"] == 2
    assert row["best_value"] == pytest.approx(0.8) and row["final_val_loss"] == pytest.approx(0.6)
    assert "lr=0.01" in row["config"] and "seed=3" in row["config"] and row["model"] == "cnn-baseline"
    assert table.set_index("run").loc["b", "state"] == "created"
    curves = registry.run_curves([finished])
    assert set(curves["metric"]) >= {"val_accuracy", "train_loss"} and len(curves) == 8


def test_progress_gives_an_eta_from_finished_epochs(tmp_path):
    run_dir = runs.create_run("identify", {"train": {}}, tmp_path)
    runs.append_metrics(run_dir, {"epoch": 1, "step": 10, "seconds": 5.0})
    runs.write_json(run_dir / "progress.json", {"done": 15, "total": 30, "epoch": 2, "epochs": 3, "loss": 0.5})
    progress = registry.run_progress(run_dir)
    assert progress["fraction"] == 0.5 and progress["eta_seconds"] == pytest.approx(7.5)
