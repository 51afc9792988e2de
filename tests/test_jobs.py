"""core.jobs: launch, stop, kill -9 and resume real training processes; corrupt checkpoints fall back."""

import contextlib
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core import runs
from core.jobs import launch
from core.jobs import registry
from core.audio.decode import SAMPLE_RATE, write_wav
from core.checkpoint import load_checkpoint, load_checkpoint_or_previous, model_record, save_checkpoint
from core.errors import DeepLanguageError

TINY_MODEL = {"channels": [4, 8], "hidden": 16, "dropout": 0.1}


def make_tiny_dataset(root: Path, n_speakers: int = 6, n_clips: int = 3) -> Path:
    """<lang>/<speaker>/*.wav: a low hum and a high whistle, easy to tell apart; 1.6 s clips."""
    rng = np.random.default_rng(0)
    t = np.arange(int(1.6 * SAMPLE_RATE)) / SAMPLE_RATE
    for language, scale in (("low", 1), ("high", 8)):
        for speaker in range(n_speakers):
            folder = root / language / f"s{speaker}"
            folder.mkdir(parents=True)
            for i in range(n_clips):
                f0 = rng.uniform(120, 250) * scale
                tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 4))
                tone *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t)
                write_wav(folder / f"{i}.wav", (0.3 * tone / np.abs(tone).max()
                                                + 0.003 * rng.standard_normal(len(t))).astype(np.float32))
    return root


def tiny_config(data_dir: Path, cache_dir: Path, **overrides):
    from core.identify.clips import TrainConfig

    values = dict(data_dir=str(data_dir), cache_dir=str(cache_dir), model="cnn-baseline", model_config=TINY_MODEL,
                  epochs=3, batch_size=4, lr=3e-3, crop_seconds=1.0, time_mask_frames=10, window_seconds=1.0,
                  hop_seconds=0.5, patience=0, threads=1)
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("jobs")
    return make_tiny_dataset(root / "data", n_speakers=6, n_clips=6), root / "cache"


def _comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def _wait_for_epochs(run_dir: Path, n_epochs: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(runs.read_metrics(run_dir)) < n_epochs:
        assert registry.run_state(run_dir)["state"] in ("starting", "running"), launch.read_log(run_dir)
        assert time.monotonic() < deadline, "the run did not reach its epoch in time"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_launch_reads_as_starting_though_the_wall_clock_stepped_back(tiny, tmp_path, monkeypatch):
    from dataclasses import asdict

    run_dir = runs.create_run("identify", {"train": {**asdict(tiny_config(*tiny, epochs=1)), "model": "cnn-baseline"}},
                              tmp_path)
    created = runs.read_json(run_dir / "status.json")["created"]
    with monkeypatch.context() as clock:  # NTP stepped the clock back between the run's creation and its launch
        clock.setattr(launch.time, "time", lambda: created - 0.5)
        launch.start(run_dir)
    assert registry.run_state(run_dir)["state"] in ("starting", "running")  # was "created": wait() returned at once
    assert launch.wait(run_dir, timeout=90) == "finished", launch.read_log(run_dir)


@pytest.mark.slow
def test_launch_trains_in_a_detached_process_to_the_end(tiny, tmp_path):
    run_dir = launch.launch("cnn-baseline", tiny_config(*tiny, epochs=2), runs_dir=tmp_path)
    assert registry.run_state(run_dir)["state"] in ("starting", "running")
    job = runs.read_json(run_dir / registry.JOB_FILE)
    assert os.getpgid(job["pid"]) == job["pid"]  # its own session: a page reload or server restart can't take it
    assert launch.wait(run_dir, timeout=90) == "finished", launch.read_log(run_dir)
    record = registry.run_record(run_dir)
    assert record["epochs_done"] == 2 and record["model"] == "cnn-baseline" and (run_dir / "best.pt").exists()
    assert "python" in launch.read_log(run_dir)
    with pytest.raises(DeepLanguageError, match="has finished"):
        launch.resume(run_dir)
    with pytest.raises(DeepLanguageError, match="unknown model kind"):
        launch.launch("gpt", tiny_config(*tiny), runs_dir=tmp_path)


@pytest.mark.slow
def test_the_gmm_identifier_trains_as_a_job_in_one_pass(tiny, tmp_path):
    config = tiny_config(*tiny, model="gmm-supervector", epochs=1,
                         model_config={"n_components": 8, "relevance": 4, "fit_on": "clips"})
    run_dir = launch.launch("gmm-supervector", config, runs_dir=tmp_path)
    assert launch.wait(run_dir, timeout=90) == "finished", launch.read_log(run_dir)
    record = registry.run_record(run_dir)
    assert record["model"] == "gmm-supervector" and record["epochs_done"] == 1
    assert record["final_val_accuracy"] > 0.8  # a hum and a whistle: trivially told apart


@pytest.mark.slow
def test_stop_keeps_the_last_epoch_and_resume_finishes(tiny, tmp_path):
    run_dir = launch.launch("cnn-baseline", tiny_config(*tiny, epochs=400), runs_dir=tmp_path)
    _wait_for_epochs(run_dir, 1)
    assert launch.stop(run_dir, timeout=20) == "stopped"
    done = len(runs.read_metrics(run_dir))
    assert 1 <= done < 400 and load_checkpoint(run_dir / "last.pt")["epoch"] == done
    assert registry.run_record(run_dir)["state"] == "stopped"
    launch.resume(run_dir)
    assert not (run_dir / registry.STOP_FILE).exists()
    _wait_for_epochs(run_dir, done + 1)
    assert launch.stop(run_dir, timeout=20) == "stopped"
    assert len(runs.read_metrics(run_dir)) > done
    launches = [line for line in launch.read_log(run_dir, 10**6).splitlines() if line.startswith("== ")]
    assert len(launches) == 2 and "--start" in launches[0] and "--resume" in launches[1], launches


def test_a_job_launched_by_a_server_started_in_the_background_still_stops_on_sigint(tiny, tmp_path):
    """`nohup`, `&`: the server starts with SIGINT ignored and its jobs inherit that; Stop's SIGINT must still stop."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run_dir = launch.launch("cnn-baseline", tiny_config(*tiny, epochs=400), runs_dir=tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        _wait_for_epochs(run_dir, 1)
        os.killpg(runs.read_json(run_dir / registry.JOB_FILE)["pgid"], signal.SIGINT)  # SIGINT only
        deadline = time.monotonic() + 60
        while registry.run_state(run_dir)["state"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert registry.run_state(run_dir)["state"] == "stopped", launch.read_log(run_dir)
    finally:
        launch.stop(run_dir, timeout=20)


@pytest.mark.slow
def test_kill9_mid_epoch_then_resume_equals_an_uninterrupted_run(tiny, tmp_path):
    from core.identify.train import train

    config = tiny_config(*tiny, epochs=12)
    crashed = launch.launch("cnn-baseline", config, runs_dir=tmp_path / "crashed")
    _wait_for_epochs(crashed, 2)
    os.killpg(runs.read_json(crashed / registry.JOB_FILE)["pgid"], signal.SIGKILL)
    deadline = time.monotonic() + 10  # the kernel drops the lock once the killed process is gone
    while (status := registry.run_state(crashed))["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status["state"] == "failed" and "died" in status["error"]
    kept = load_checkpoint(crashed / "last.pt")["epoch"]
    assert 2 <= kept < 12 and len(runs.read_metrics(crashed)) - kept <= 1  # at most one epoch lost

    reference = runs.create_run("identify", {"train": runs.read_json(crashed / "config.json")["train"]},
                                tmp_path / "reference")
    launch.resume(crashed)
    train(None, reference)  # meanwhile, the same run without a crash, in this process
    assert launch.wait(crashed, timeout=90) == "finished", launch.read_log(crashed)
    assert _comparable(runs.read_metrics(crashed)) == _comparable(runs.read_metrics(reference))


def test_a_corrupt_checkpoint_is_a_clear_error_and_resume_falls_back(tmp_path):
    path = tmp_path / "last.pt"
    for epoch in (1, 2):
        save_checkpoint({**model_record("cnn-baseline", TINY_MODEL, {"w": torch.ones(3)}), "epoch": epoch}, path,
                        keep_previous=True)
    assert load_checkpoint(tmp_path / "last-prev.pt")["epoch"] == 1
    path.write_bytes(path.read_bytes()[:100])  # truncated, as by a full disk
    with pytest.raises(DeepLanguageError, match="truncated or corrupt"):
        load_checkpoint(path)
    checkpoint, used = load_checkpoint_or_previous(path)
    assert checkpoint["epoch"] == 1 and used.name == "last-prev.pt"
    assert launch.recover_checkpoint(tmp_path) == "last-prev.pt"
    assert load_checkpoint(path)["epoch"] == 1 and (tmp_path / "last.pt.corrupt").exists()
    path.write_bytes(b"garbage")
    assert launch.recover_checkpoint(tmp_path) is None and not path.exists()  # nothing good: start over


@pytest.mark.slow
def test_a_corrupt_last_checkpoint_in_a_real_run_resumes_from_the_previous(tiny, tmp_path):
    from core.identify.train import train

    config = tiny_config(*tiny, epochs=3)
    reference = train(replace(config), runs_dir=tmp_path / "reference")
    run_dir = runs.create_run("identify", {"train": runs.read_json(reference / "config.json")["train"]},
                              tmp_path / "runs")
    with pytest.raises(KeyboardInterrupt):
        train(None, run_dir, on_progress=_interrupt_in_epoch(3))
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 2
    (run_dir / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(KeyboardInterrupt):  # falls back to last-prev.pt (epoch 1), saves epoch 2, stops in 3
        train(None, run_dir, on_progress=_interrupt_in_epoch(3))
    assert load_checkpoint(run_dir / "last-prev.pt")["epoch"] == 1  # the corrupt file was not rotated in
    (run_dir / "last.pt").write_bytes(b"corrupt again")
    train(None, run_dir)  # still a good fallback: epoch 1 again, then 2 and 3
    assert _comparable(runs.read_metrics(run_dir)) == _comparable(runs.read_metrics(reference))


def _interrupt_in_epoch(epoch: int):
    def on_progress(done, total, **live):
        if live.get("epoch") == epoch:
            raise KeyboardInterrupt

    return on_progress


@pytest.mark.slow
def test_a_study_run_launches_like_any_other(tiny, tmp_path):
    config = launch.study_run_config(tiny[0], "high", 0, target="low", hidden_size=8, max_epochs=2, crops_per_clip=1,
                                   pretrain_epochs=1)
    run_dir = launch.launch("nextframe", config, runs_dir=tmp_path)
    assert launch.wait(run_dir, timeout=120) == "finished", launch.read_log(run_dir)
    record = registry.run_record(run_dir)
    assert record["model"] == "nextframe" and record["epochs_done"] >= 2 and record["best_metric"] == "val_loss"
    assert runs.read_json(run_dir / "result.json")["condition"] == "high"


def test_the_log_shows_each_progress_bar_once_as_a_terminal_would(tmp_path):
    (tmp_path / launch.LOG_FILE).write_text("== started\nprepare:  10%|#  | 1/10\rprepare:  50%|#####  | 5/10\r"
                                            "prepare: 100%|##########| 10/10\r\nepoch 1 done\n")
    assert launch.read_log(tmp_path) == "== started\nprepare: 100%|##########| 10/10\nepoch 1 done\n"


def test_a_run_s_chance_level_comes_from_its_languages(tmp_path):
    assert registry.run_chance(tmp_path) is None  # its data not read yet
    runs.write_json(tmp_path / "data.json", {"labels": ["es", "fr", "ja", "de"], "clips": 40})
    assert registry.run_chance(tmp_path) == 0.25


# A job that lets go of its run at once on SIGINT (stopped, lock free), then takes its time to exit, as a
# Python process with torch loaded does (seconds of interpreter teardown after training stopped).
SLOW_TO_EXIT = """
import sys, time
from core import runs
try:
    with runs.lifecycle(sys.argv[1]):
        print("training", flush=True)
        time.sleep(600)
except KeyboardInterrupt:
    pass
time.sleep(600)
"""


def test_stop_is_done_when_the_run_is_let_go_not_when_its_process_has_exited(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    run_dir = runs.create_run("identify", {"train": {}}, tmp_path)
    job = subprocess.Popen([sys.executable, "-c", SLOW_TO_EXIT, str(run_dir)], cwd=ROOT, start_new_session=True,
                           stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline() == "training\n"
        runs.write_json(run_dir / registry.JOB_FILE, {"pid": job.pid, "pgid": job.pid, "started": time.time(),
                                                      "proc_start": registry.process_start_time(job.pid)})
        assert launch.stop(run_dir, timeout=60) == "stopped"
        assert job.poll() is None  # still exiting: waiting for it would have taken its teardown, or a kill
        report = launch.stop_report(run_dir)  # a second Stop: already stopped, nothing kept
        assert "stopped" in report and "no epoch had finished" in report
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)
        job.wait()


def test_a_first_launch_says_start_and_a_resume_says_resume(tmp_path):
    run_dir = runs.create_run("identify", {"train": {}}, tmp_path)
    assert "--start" in launch.command(run_dir) and "--resume" not in launch.command(run_dir)
    runs.set_status(run_dir, "stopped")
    assert "--resume" in launch.command(run_dir) and "--start" not in launch.command(run_dir)
