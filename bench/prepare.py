"""Benchmark: `python -m core prepare` on the shared Common Voice sample vs a naive loop.

The naive baseline is what a first script does: one process, for each clip
`librosa.load(sr=16000)` + `librosa.feature.melspectrogram` + `np.save` (full band only).
`prepare` is timed as the whole command (interpreter start, imports, manifest, full band
and low-pass for every clip, index), on a fresh cache. Both run here, in this same run.

    .venv/bin/python bench/prepare.py [--data DIR] [--repeat N]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.paths import CV_SAMPLE_DIR  # noqa: E402


def naive(paths: list[str], out: Path) -> float:
    import librosa

    started = time.perf_counter()
    for i, path in enumerate(paths):
        clip, _ = librosa.load(path, sr=16000)
        mel = librosa.feature.melspectrogram(y=clip, sr=16000, n_fft=512, hop_length=160, win_length=400,
                                             n_mels=64)
        np.save(out / f"{i}.npy", np.log10(np.maximum(mel, 1e-10)))
    return time.perf_counter() - started


def prepare_command(data: Path, cache: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "core", "prepare", "--data", str(data), "--cache", str(cache)],
                   cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=CV_SAMPLE_DIR)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is kept")
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"no dataset at {args.data}: pass --data DIR")
    paths = sorted(str(p) for p in args.data.glob("*/clips/*.mp3"))
    prepare_command(args.data, Path(tempfile.mkdtemp()))  # warm the page cache and the filterbank file
    naive_s, ours_s = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as out:
            naive_s.append(naive(paths, Path(out)))
        with tempfile.TemporaryDirectory() as cache:
            ours_s.append(prepare_command(args.data, Path(cache)))
    import soundfile as sf

    audio_s = sum(sf.info(p).duration for p in paths)
    best_naive, best_ours = min(naive_s), min(ours_s)
    print(f"clips: {len(paths)}, audio: {audio_s:.0f} s")
    print(f"naive loop (1 process, full band only): {best_naive:.2f} s  ({audio_s / best_naive:.0f}x real time)")
    print(f"prepare, whole command (full + low-pass): {best_ours:.2f} s  ({audio_s / best_ours:.0f}x real time)")
    print(f"speed-up: {best_naive / best_ours:.2f}x the naive loop (target >= 3x)")


if __name__ == "__main__":
    main()
