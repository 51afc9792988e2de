"""The pretrained identifier's speed, against baselines measured in the same run.

    .venv/bin/python bench/identify_whisper.py [--repeats 5] [--clips 64]

1. ``identify`` of a 10 s clip of real speech with the shipped whisper-head, after warm-up, against
   faster-whisper's own ``WhisperModel.detect_language`` on the same clip (it pads to 30 s). Target: <= 0.3x.
2. Encoding clips for training: one clip at a time (what ``core.identify.embeddings`` does) against padded
   batches of 8 and length-bucketed batches of 8 (clips sorted by length, so each batch pads little), on
   ``--clips`` clips of the embedded sample; and the projected time for all of it. Target: the sample in <= 2 min.
3. The resident memory of this process with the model loaded (what the dashboard adds by loading it).
"""

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ctranslate2  # noqa: E402
import numpy as np  # noqa: E402

from core.audio.decode import load_audio  # noqa: E402
from core.data.datasets import read_dataset  # noqa: E402
from core.identify.predict import DEFAULT_CHECKPOINT, identify, load_identifier  # noqa: E402
from core.identify.pretrained import encoder_of  # noqa: E402
from core.paths import CV_SAMPLE_DIR  # noqa: E402


def ten_seconds() -> np.ndarray:
    """Ten seconds of real speech: sample clips of one language joined."""
    clips = read_dataset(CV_SAMPLE_DIR, durations=False)
    audio = np.concatenate([load_audio(p) for p in clips[clips["language"] == "es"]["path"].head(4)])
    return audio[: 16000 * 10]


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def encode_batches(encoder, features: list[np.ndarray], size: int) -> None:
    for i in range(0, len(features), size):
        batch = features[i: i + size]
        longest = max(f.shape[1] for f in batch)
        padded = np.stack([np.pad(f, ((0, 0), (0, longest - f.shape[1])), constant_values=f.min()) for f in batch])
        np.array(encoder.model.model.encode(ctranslate2.StorageView.from_array(padded.astype(np.float32))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clips", type=int, default=64)
    args = parser.parse_args()
    bundle = load_identifier(DEFAULT_CHECKPOINT)
    encoder = encoder_of(bundle.model)
    audio = ten_seconds()
    ours = median_seconds(lambda: identify(audio, bundle), args.repeats)
    theirs = median_seconds(lambda: encoder.model.detect_language(audio), args.repeats)
    print(f"identify, 10 s clip: {ours * 1000:.0f} ms; WhisperModel.detect_language: {theirs * 1000:.0f} ms; "
          f"ratio {ours / theirs:.2f}x (target <= 0.3x)")

    manifest = read_dataset(CV_SAMPLE_DIR, durations=False).sample(args.clips, random_state=0)
    clips = [load_audio(p) for p in manifest["path"]]
    features = [encoder.model.feature_extractor(a) for a in clips]
    one = median_seconds(lambda: [encoder.states(a) for a in clips], 1)
    padded = median_seconds(lambda: encode_batches(encoder, features, 8), 1)
    bucketed_features = sorted(features, key=lambda f: f.shape[1])
    bucketed = median_seconds(lambda: encode_batches(encoder, bucketed_features, 8), 1)
    per_clip = one / len(clips)
    print(f"encoding {len(clips)} clips: one at a time {one:.1f} s; padded batches of 8 {padded:.1f} s "
          f"({padded / one:.2f}x); length-bucketed batches of 8 {bucketed:.1f} s ({bucketed / one:.2f}x)")
    print(f"whole sample ({len(read_dataset(CV_SAMPLE_DIR, durations=False))} clips) one at a time, encoder only: "
          f"about {per_clip * 895:.0f} s (target <= 120 s, decoding and language-ID add about a third)")
    print(f"resident memory with the model loaded: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
