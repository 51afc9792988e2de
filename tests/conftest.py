"""Shared fixtures: synthetic clips in every format, and the shared Common Voice sample."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.paths import CV_SAMPLE_DIR  # noqa: E402

SR = 16000


def speechlike(seconds: float = 2.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-rate modulated harmonic signal with pauses: passes as speech for the VAD."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2  # 4 syllables a second, silent gaps
    return (0.3 * voiced * envelope + 1e-4 * rng.standard_normal(len(t))).astype(np.float32)


def tone_clip(language: str, rng: np.random.Generator, seconds: float = 2.0) -> np.ndarray:
    """'low' speakers hum a 120-250 Hz harmonic tone, 'high' ones hiss in a 2-4 kHz band: easy to tell apart."""
    t = np.arange(int(seconds * SR)) / SR
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t)
    if language == "low":
        f0 = rng.uniform(120, 250)
        signal = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    else:
        spectrum = np.fft.rfft(rng.standard_normal(len(t)))
        freqs = np.fft.rfftfreq(len(t), 1 / SR)
        spectrum[(freqs < 2000) | (freqs > 4000)] = 0
        signal = np.fft.irfft(spectrum, len(t))
    signal = signal * envelope
    return (0.3 * signal / np.abs(signal).max() + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def tone_dataset(root: Path, rng: np.random.Generator, seconds: float = 2.0) -> Path:
    """A folder-per-language dataset of tone "languages": low/ and high/, 6 speakers each, 2 clips each."""
    from core.audio.decode import write_wav

    for language in ("low", "high"):
        for speaker in range(6):
            folder = root / language / f"{language}{speaker}"
            folder.mkdir(parents=True)
            for i in range(2):
                write_wav(folder / f"{i}.wav", tone_clip(language, rng, seconds))
    return root


@pytest.fixture(scope="session")
def cv_sample() -> Path:
    """The embedded real Common Voice sample (data/cv-sample, tracked in the repository)."""
    return CV_SAMPLE_DIR


@pytest.fixture(scope="session")
def clip_files(tmp_path_factory) -> dict[str, Path]:
    """The same 2 s clip written in every format the project reads."""
    folder = tmp_path_factory.mktemp("formats")
    audio = speechlike()
    files = {}
    for suffix, kwargs in {
        "wav": {"format": "WAV", "subtype": "PCM_16"},
        "flac": {"format": "FLAC"},
        "mp3": {"format": "MP3"},
        "ogg": {"format": "OGG", "subtype": "VORBIS"},
        "opus": {"format": "OGG", "subtype": "OPUS"},
    }.items():
        path = folder / f"clip.{suffix}"
        rate = 48000 if suffix == "opus" else SR  # opus only runs at 48 kHz
        data = audio if rate == SR else np.interp(np.arange(len(audio) * 3) / 3, np.arange(len(audio)), audio)
        sf.write(path, data.astype(np.float32), rate, **kwargs)
        files[suffix] = path
    if shutil.which("ffmpeg"):
        for suffix, codec in {"m4a": "aac", "webm": "libopus"}.items():
            path = folder / f"clip.{suffix}"
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(files["wav"]), "-c:a", codec, str(path)],
                           check=True)
            files[suffix] = path
    return files


@pytest.fixture(autouse=True)
def _keep_main_module():
    """AppTest runs a page as ``__main__`` and leaves it there; worker processes started with
    'spawn' would then re-run that page. Put pytest's own ``__main__`` back after every test."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture()
def one_thread():
    """Tiny models: torch threads only add overhead, and other jobs share the 2 cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def train_steps(model, x, n_steps: int, lr: float) -> tuple[float, float]:
    """Adam on one fixed batch with ``model.loss``: the loss before and after ``n_steps``."""
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    first = model.loss(x).item()
    for _ in range(n_steps):
        loss = model.loss(x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return first, loss.item()
