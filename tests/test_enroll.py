"""core.identify.enroll: a trained model learns a new language from clips, refuses what it should, says why."""

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from core.audio.decode import SAMPLE_RATE, write_wav
from core.checkpoint import load_checkpoint, save_checkpoint
from core.errors import DeepLanguageError
from core.audio.features import FeatureConfig
from core.identify.enroll import clip_files, enroll
from core.identify.models import build_model
from core.identify.predict import identify, load_identifier

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"n_components": 8, "ubm_frames": 5000, "ubm_iterations": 10, "backend_dim": 16}  # regression + Gaussian
PATTERNS = ("low", "high", "mid")  # a tone sweeping up, sweeping down, or hopping: only the dynamics differ


def _sweep_clip(language: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A harmonic tone whose pitch repeatedly rises ('low'), falls ('high') or hops between two notes ('mid')."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = (t / rng.uniform(0.15, 0.25)) % 1.0
    shape = {"low": phase, "high": 1 - phase, "mid": (phase > 0.5).astype(float)}[language]
    f0 = rng.uniform(150, 250) * (1 + 1.5 * shape)
    angle = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t), 0, None) ** 2  # pauses, as the VAD expects
    signal = sum(np.sin(k * angle) / k for k in range(1, 6)) * syllables
    return (0.3 * signal / np.abs(signal).max() + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def _write_clips(folder: Path, language: str, n: int, seconds: float, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{language}{i}.wav" for i in range(n)]
    for path in paths:
        write_wav(path, _sweep_clip(language, rng, seconds))
    return paths


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model of "low" and "high" (answered by a regression, with a Gaussian backend kept for enrolment) and clips
    of "mid" it never heard."""
    from core.identify.clips import TrainConfig
    from core.identify.train import train

    root = tmp_path_factory.mktemp("enroll")
    for language, seed in (("low", 0), ("high", 1)):
        for speaker in range(6):
            _write_clips(root / "data" / language / f"{language}{speaker}", language, 2, 3.0, seed * 100 + speaker)
    config = TrainConfig(data_dir=str(root / "data"), cache_dir=str(root / "cache"), model="gmm-supervector",
                         model_config=SMALL, window_seconds=1.0, hop_seconds=0.5, threads=1)
    run_dir = train(config, runs_dir=root / "runs")
    _write_clips(root / "teach", "mid", 24, 3.0, 7)
    write_wav(root / "teach" / "silence.wav", np.zeros(SAMPLE_RATE, np.float32))
    unseen = {lang: _write_clips(root / "unseen" / lang, lang, 4, 3.0, 50 + i) for i, lang in enumerate(PATTERNS)}
    return {"root": root, "checkpoint": run_dir / "best.pt", "teach": root / "teach", "unseen": unseen}


@pytest.mark.slow
def test_enrolled_language_is_recognised_and_the_others_still_are(trained):
    out = trained["root"] / "with-mid.pt"
    report = enroll(trained["checkpoint"], "mid", clip_files([trained["teach"]]), out)
    assert report["n_used"] == 24 and report["n_skipped"] == 1 and report["languages"] == ["high", "low", "mid"]
    assert report["seconds_of_speech"] >= 30
    bundle = load_identifier(out)
    assert bundle.labels == ["high", "low", "mid"] and bundle.model.classifier.out_features == 3
    for language, paths in trained["unseen"].items():
        answers = [max(identify(p, bundle)["probabilities"].items(), key=lambda kv: kv[1])[0] for p in paths]
        assert answers.count(language) >= 3, (language, answers)
    record = load_checkpoint(out)["enrolled"][0]
    assert record["language"] == "mid" and len(record["clips"]) == 24 and record["n_skipped"] == 1
    assert {c["clip"] for c in record["clips"]} == {f"mid{i}.wav" for i in range(24)}


@pytest.mark.slow
def test_a_known_language_needs_replace_and_too_little_speech_says_how_much_more(trained):
    with pytest.raises(DeepLanguageError, match="--replace"):
        enroll(trained["checkpoint"], "low", clip_files([trained["teach"]]), trained["root"] / "x.pt")
    replaced = enroll(trained["checkpoint"], "low", clip_files([trained["teach"]]), trained["root"] / "y.pt",
                      replace=True)
    assert replaced["languages"] == ["high", "low"]
    few = sorted(trained["teach"].glob("mid*.wav"))[:2]
    with pytest.raises(DeepLanguageError, match=r"add about \d+ s more"):
        enroll(trained["checkpoint"], "mid", few, trained["root"] / "z.pt")
    assert not (trained["root"] / "z.pt").exists()
    uploads = [(p.name, p.read_bytes()) for p in sorted(trained["teach"].glob("*.wav"))]
    assert enroll(trained["checkpoint"], "mid", uploads, trained["root"] / "w.pt")["n_used"] == 24


def test_bad_codes_and_models_without_a_gaussian_backend_are_refused(tmp_path):
    model = build_model("cnn-baseline", {"n_classes": 2, "channels": (4, 8), "hidden": 16})
    path = save_checkpoint({"format": 1, "model": {"kind": "cnn-baseline", "config": asdict(model.config)},
                            "state_dict": model.state_dict(), "labels": ["a", "b"],
                            "features": asdict(FeatureConfig())}, tmp_path / "cnn.pt")
    with pytest.raises(DeepLanguageError, match="not a language code"):
        enroll(path, "not a code!", [], tmp_path / "out.pt")
    with pytest.raises(DeepLanguageError, match="Gaussian backend"):
        enroll(path, "eu", [], tmp_path / "out.pt")


def test_cli_reports_a_refusal_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "core", "enroll", "--checkpoint", str(tmp_path / "none.pt"),
                             "--language", "eu", "--clips", str(tmp_path), "--out", str(tmp_path / "o.pt")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "does not exist" in result.stderr and "Traceback" not in result.stderr
