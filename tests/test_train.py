"""core.identify.train and core.identify.evaluate on a tiny synthetic two-language dataset: learning, exact resume,
safe checkpoints."""

import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core import runs
from core.audio.decode import write_wav
from core.checkpoint import load_checkpoint
from core.errors import DeepLanguageError
from core.identify.clips import TrainConfig, load_clips
from core.identify.train import learning_rate, train
from tests.conftest import tone_clip

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = {"channels": [4, 8], "hidden": 16, "dropout": 0.1}


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """<lang>/<speaker>/*.wav: 2 languages x 6 speakers x 3 clips."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for language in ("low", "high"):
        for speaker in range(6):
            folder = root / language / f"s{speaker}"
            folder.mkdir(parents=True)
            for i in range(3):
                write_wav(folder / f"{i}.wav", tone_clip(language, rng, seconds=1.6))
    return root


@pytest.fixture
def config(tiny_dataset, tmp_path) -> TrainConfig:
    return TrainConfig(data_dir=str(tiny_dataset), cache_dir=str(tmp_path / "cache"), model="cnn-baseline",
                       model_config=TINY_MODEL, epochs=3, batch_size=4, lr=3e-3, crop_seconds=1.0,
                       time_mask_frames=10, window_seconds=1.0, hop_seconds=0.5, patience=0, threads=1)


def _comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_learning_rate_is_a_pure_function_of_the_step():
    config = TrainConfig(lr=0.01, warmup_epochs=1, min_lr_ratio=0.1)
    lrs = [learning_rate(step, 100, 10, config) for step in range(100)]
    assert lrs[9] == pytest.approx(0.01) and lrs[0] == pytest.approx(0.001)
    assert lrs[-1] == pytest.approx(0.001, rel=0.05) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs == [learning_rate(step, 100, 10, config) for step in range(100)]


def test_splits_are_speaker_disjoint(config):
    clips = load_clips(config)
    by_split = clips.manifest.groupby("split")["speaker"].apply(set)
    assert set(by_split.index) == {"train", "validation", "test"}
    assert not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["validation"])


@pytest.mark.slow
def test_loss_falls_and_run_directory_is_complete(config, tmp_path):
    run_dir = train(replace(config, epochs=6), runs_dir=tmp_path / "runs", name="learn")
    metrics = runs.read_metrics(run_dir)
    assert len(metrics) == 6
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert max(m["val_accuracy"] for m in metrics) >= 0.75
    assert runs.run_status(run_dir)["state"] == "finished"
    for name in ("last.pt", "best.pt", "progress.json", "config.json"):
        assert (run_dir / name).exists(), name
    best = load_checkpoint(run_dir / "best.pt")
    assert best["labels"] == ["high", "low"] and best["model"]["kind"] == "cnn-baseline"
    assert "optimizer" not in best  # best.pt is what gets shipped: weights and metadata only
    assert set(best["data"]["test_speakers"]).isdisjoint(best["data"]["train_speakers"])
    # Plain data only: both files load with weights_only=True.
    for name in ("last.pt", "best.pt"):
        torch.load(run_dir / name, weights_only=True)


@pytest.mark.slow
def test_resume_after_interruption_reproduces_the_uninterrupted_run(config, tmp_path):
    clips = load_clips(config)
    whole = train(config, runs_dir=tmp_path, name="whole", clips=clips)

    def stop_in_epoch_2(done, total, epoch, **_):
        if epoch == 2:
            raise KeyboardInterrupt

    interrupted = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(config, runs_dir=tmp_path, name="interrupted", on_progress=stop_in_epoch_2, clips=clips)
    assert runs.run_status(interrupted)["state"] == "stopped"
    assert runs.run_status(interrupted)["error"] == runs.STOPPED  # no CLI command: the page has a Resume button
    assert len(runs.read_metrics(interrupted)) == 1
    train(None, interrupted)  # its stored config wins; data is loaded again from the cache
    assert _comparable(runs.read_metrics(interrupted)) == _comparable(runs.read_metrics(whole))
    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(interrupted / "last.pt")
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_second_trainer_on_the_same_run_is_refused(config, tmp_path):
    run_dir = runs.create_run("identify", {"train": asdict(config)}, tmp_path, name="busy")
    with runs.RunLock(run_dir), pytest.raises(DeepLanguageError, match="already running"):
        train(None, run_dir)


def test_pickle_that_runs_code_is_refused(tmp_path):
    from core.identify.predict import load_identifier

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"model": {"kind": "cnn-baseline", "config": {}}, "state_dict": {}, "payload": Evil()}, path)
    with pytest.raises(DeepLanguageError, match="refused"):
        load_identifier(path)
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    from core.identify.predict import load_identifier

    path = tmp_path / "cut.pt"
    torch.save({"x": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DeepLanguageError, match="truncated or corrupt"):
        load_identifier(path)


@pytest.mark.slow  # prepares the dataset with worker processes
def test_resume_from_a_malformed_checkpoint_is_a_clear_error(config, tmp_path, capsys):
    import signal

    from core.__main__ import main

    run_dir = runs.create_run("identify", {"train": asdict(config)}, tmp_path, name="malformed")
    torch.save({"format": 1, "model": {"kind": "cnn-baseline"}, "state_dict": {}, "labels": ["high", "low"],
                "features": {}}, run_dir / "last.pt")
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["train", "--resume", str(run_dir), "--threads", "1"]) == 1
    finally:
        signal.signal(signal.SIGTERM, handler)
    err = capsys.readouterr().err
    assert str(run_dir / "last.pt") in err and "model.config" in err and "internal error" not in err
    status = runs.run_status(run_dir)
    assert status["state"] == "failed" and "model.config" in status["error"]


def test_checkpoints_store_paths_relative_to_the_repository(tmp_path):
    import pandas as pd

    from core.identify.clips import ClipSet, base_checkpoint
    from core.paths import CV_SAMPLE_DIR, REPO_ROOT, portable, resolve

    assert portable(CV_SAMPLE_DIR) == "data/cv-sample" and resolve("data/cv-sample") == CV_SAMPLE_DIR
    assert portable(tmp_path) == str(tmp_path.resolve()) and resolve(str(tmp_path)) == tmp_path
    assert portable("") == "" and resolve(portable(REPO_ROOT / "data" / ".." / "data")) == REPO_ROOT / "data"
    manifest = pd.DataFrame({"language": ["en", "es", "es"], "speaker": ["a", "b", "c"],
                             "split": ["train", "validation", "test"]})
    clips = ClipSet(manifest, [np.zeros((64, 10), np.float32)] * 3, ["en", "es"], 10)
    config = TrainConfig(data_dir=str(CV_SAMPLE_DIR), cache_dir=str(tmp_path / "cache"), model="cnn-baseline")
    base = base_checkpoint(config, clips, clips.rows("train"), clips.rows("validation"), {"n_classes": 2})
    assert base["data"]["dir"] == base["train_config"]["data_dir"] == "data/cv-sample"
    assert base["train_config"]["cache_dir"] == str((tmp_path / "cache").resolve())
    assert base["data"]["test_speakers"] == ["c"] and base["model"] == {"kind": "cnn-baseline",
                                                                        "config": {"n_classes": 2}}


@pytest.mark.slow
def test_evaluate_scores_only_unseen_speakers(config, tmp_path):
    from core.identify.evaluate import evaluate_checkpoint

    run_dir = train(replace(config, epochs=4), runs_dir=tmp_path / "runs", name="scored")
    seen = []
    report = evaluate_checkpoint(run_dir / "best.pt", config.data_dir, "test",
                                 on_progress=lambda done, total, **m: seen.append((m.get("phase"), done, total)))
    # Each phase reports under its own name and total: the clips scored one by one, then the bootstrap.
    assert list(dict.fromkeys(phase for phase, _, _ in seen))[-2:] == ["scoring", "report (bootstrap over speakers)"]
    assert [s for s in seen if s[0] == "scoring"][-1] == ("scoring", report["n_clips"], report["n_clips"])
    best = load_checkpoint(run_dir / "best.pt")
    assert report["n_speakers"] == len(best["data"]["test_speakers"])
    assert report["dropped_seen_speaker_clips"] == 0
    assert 0 <= report["accuracy"] <= 1 and np.array(report["confusion"]).sum() == report["n_clips"]
    everything = evaluate_checkpoint(run_dir / "best.pt", config.data_dir, "all")
    assert everything["n_clips"] == report["n_clips"]  # all = every clip of speakers it never heard
    assert everything["dropped_seen_speaker_clips"] > 0


@pytest.mark.slow
def test_cross_validation_reports_folds_and_interval(config):
    from core.identify.evaluate import cross_validate

    report = cross_validate(replace(config, epochs=2), n_folds=2)
    assert len(report["fold_accuracies"]) == 2 and report["n_clips"] == 36
    low, high = report["accuracy_ci95"]
    assert 0 <= low <= report["accuracy"] <= high <= 1


@pytest.mark.slow
def test_cli_trains_and_resume_of_a_non_run_is_an_error(tiny_dataset, tmp_path):
    out = tmp_path / "cli-run"
    command = [sys.executable, "-m", "core", "train", "--data", str(tiny_dataset), "--model", "cnn-baseline",
               "--model-config", json.dumps(TINY_MODEL), "--epochs", "2", "--batch-size", "4",
               "--crop-seconds", "1", "--threads", "1", "--out", str(out),
               "--cache", str(tmp_path / "cache")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (out / "best.pt").exists() and "best epoch" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "core", "train", "--resume", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "not a run directory" in bad.stderr and "Traceback" not in bad.stderr
