"""How long identifying a 10 s clip takes (decode, features, model) on 2 threads, after warm-up.

    .venv/bin/python bench/identify_latency.py [--checkpoint PATH] [--repeats 30]

Prints the median latency, its ratio to the 50 ms budget, and the ratios of its parts
(decode, log-mel, model forward on the clip's windows) measured in the same run.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.audio.decode import SAMPLE_RATE, load_audio, write_wav
from core.audio.features import log_mel  # noqa: E402
from core.identify.predict import DEFAULT_CHECKPOINT, identify, load_identifier  # noqa: E402
from core.identify.models import clip_windows, predict_batches  # noqa: E402
from core.paths import CV_SAMPLE_DIR  # noqa: E402

BUDGET_MS = 50.0


def ten_seconds() -> np.ndarray:
    """Real speech when the Common Voice sample is there (clips joined), else a syllable-like tone."""
    clips = sorted((CV_SAMPLE_DIR / "es" / "clips").glob("*.mp3"))[:4]
    if clips:
        audio = np.concatenate([load_audio(p) for p in clips])
        return np.resize(audio, 10 * SAMPLE_RATE)
    t = np.arange(10 * SAMPLE_RATE) / SAMPLE_RATE
    return (0.2 * np.sin(2 * np.pi * 140 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)


def median_ms(function, repeats: int) -> float:
    for _ in range(3):  # warm-up: allocator, caches, lazy imports
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_identifier(args.checkpoint)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ten_seconds.wav"
        write_wav(path, ten_seconds())
        audio = load_audio(path)
        features = torch.from_numpy(log_mel(audio, bundle.features))
        _, windows = clip_windows(features, bundle.window, bundle.hop)
        total = median_ms(lambda: identify(path, bundle), args.repeats)
        decode = median_ms(lambda: load_audio(path), args.repeats)
        mel = median_ms(lambda: log_mel(audio, bundle.features), args.repeats)
        forward = median_ms(lambda: predict_batches(bundle.model, windows), args.repeats)
    kind = bundle.checkpoint["model"]["kind"]
    print(f"identify a 10 s wav ({kind}, {len(windows)} windows, {args.threads} threads): {total:.1f} ms median "
          f"= {total / BUDGET_MS:.2f} x the {BUDGET_MS:.0f} ms budget "
          f"({'within' if total <= BUDGET_MS else 'OVER'} budget)")
    print(f"  decode {decode:.1f} ms, log-mel {mel:.1f} ms, model forward {forward:.1f} ms; "
          f"identify = {total / forward:.2f} x the bare forward")


if __name__ == "__main__":
    main()
