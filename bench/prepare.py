"""Benchmark: `python -m core prepare` on the embedded Common Voice sample vs a naive loop, and its cost by stage.

The naive baseline is what a first script does: one process, for each clip
`librosa.load(sr=16000)` + `librosa.feature.melspectrogram` + `np.save` (full band only).
`prepare` is timed as the whole command (interpreter start, imports, manifest, full band
and low-pass for every clip, index), on a fresh cache. Both run here, in this same run,
alternately, and the best of each is kept (the machine is shared: compare side by side).

The stage table times one clip at a time in this process, one thread, CPU time per clip:
what `prepare`'s workers do (decode, resample, STFT, mel + log of both variants, speech
detection, the float16 atomic write) beside the naive loop's steps on the same clips (librosa
warmed up first, so its one-off lazy imports are not charged to the first clip).

Two prepares started together on one cache share its clips: their CPU time together (interpreters,
imports and all) is printed against one prepare's, measured in the same run.

    .venv/bin/python bench/prepare.py [--data DIR] [--repeat N] [--every K] [--concurrent-only]
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


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process so far, their pool workers included."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def concurrent_cpu(data: Path) -> tuple[float, float]:
    """CPU seconds of one `prepare` on a fresh cache, and of two started together on another one."""
    command = [sys.executable, "-m", "core", "prepare", "--data", str(data), "--cache"]
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
        before = children_cpu()
        subprocess.run([*command, one], cwd=ROOT, check=True, capture_output=True)
        alone = children_cpu() - before
        before = children_cpu()
        pair = [subprocess.Popen([*command, two], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for _ in range(2)]
        if any(process.wait() for process in pair):
            sys.exit("a concurrent prepare failed")
        return alone, children_cpu() - before


class Stages:
    """CPU seconds summed per named stage."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.last = time.process_time()

    def mark(self, name: str) -> None:
        now = time.process_time()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.last = now


def stage_costs(paths: list[str], out: Path) -> tuple[dict, dict]:
    """Per-clip CPU ms of each stage of prepare's worker and of the naive loop, on the same clips."""
    import librosa
    import soundfile as sf
    from threadpoolctl import threadpool_limits

    from core.audio import features, load_audio, speech_seconds
    from core.data.cache import _save_clip

    config = features.FeatureConfig()
    features.log_mel_pair(np.zeros(16000, np.float32), config)  # filterbank and window built once
    # librosa loads its submodules (and soxr) on first use: about 2 s that would be charged to the first clip.
    librosa.feature.melspectrogram(y=librosa.load(paths[0], sr=16000)[0], sr=16000, n_fft=512, hop_length=160,
                                   win_length=400, n_mels=64)
    ours, theirs = Stages(), Stages()
    with threadpool_limits(1):  # as prepare's workers: one process per core, one thread each
        for i, path in enumerate(paths):
            ours.last = time.process_time()
            rate = sf.info(path).samplerate
            samples = load_audio(path, sample_rate=rate)
            ours.mark("decode")
            clip = load_audio(samples, source_rate=rate)
            ours.mark("resample")
            power = features._power_frames(clip, config)
            ours.mark("STFT (power)")
            full, low = features._frame_major_bases(config)
            pair = features._log(power @ full).T, features._log(power[:, : low.shape[0]] @ low).T
            ours.mark("mel + log, both variants")
            speech_seconds(clip)
            ours.mark("speech detection")
            _save_clip(str(out / f"ours-{i}.npy"), *pair)
            ours.mark("write (float16, atomic)")

            theirs.last = time.process_time()
            clip, _ = librosa.load(path, sr=16000)
            theirs.mark("librosa.load (decode + resample)")
            mel = librosa.feature.melspectrogram(y=clip, sr=16000, n_fft=512, hop_length=160, win_length=400,
                                                 n_mels=64)
            theirs.mark("melspectrogram (full band)")
            np.save(out / f"naive-{i}.npy", np.log10(np.maximum(mel, 1e-10)))
            theirs.mark("log + write")
    per_clip = lambda stages: {k: 1000 * v / len(paths) for k, v in stages.seconds.items()}  # noqa: E731
    return per_clip(ours), per_clip(theirs)


def print_stages(title: str, costs: dict) -> None:
    print(f"{title}: {sum(costs.values()):.2f} ms CPU per clip")
    for name, ms in costs.items():
        print(f"    {name:34s} {ms:6.2f} ms  {100 * ms / sum(costs.values()):4.0f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=CV_SAMPLE_DIR)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each whole job; the best is kept")
    parser.add_argument("--every", type=int, default=4, help="stage table on every K-th clip")
    parser.add_argument("--concurrent-only", action="store_true", help="only the two-prepares-at-once measure")
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"no dataset at {args.data}: pass --data DIR")
    paths = sorted(str(p) for p in args.data.glob("*/clips/*.mp3"))
    prepare_command(args.data, Path(tempfile.mkdtemp()))  # warm the page cache and the filterbank file

    for alone, pair in (concurrent_cpu(args.data) for _ in range(args.repeat)):
        print(f"two prepares started together on one cache: {pair:.2f} s CPU in all, one alone {alone:.2f} s: "
              f"{pair / alone:.2f}x (target <= 1.2x: they share the clips)")
    if args.concurrent_only:
        return

    with tempfile.TemporaryDirectory() as out:
        ours, theirs = stage_costs(paths[:: args.every], Path(out))
    print(f"by stage, {len(paths[:: args.every])} clips, one process, one thread:")
    print_stages("  prepare's worker (full band + low-pass)", ours)
    print_stages("  naive loop (full band only)", theirs)
    floor = ours["decode"] + ours["resample"]
    print(f"  decode + resample alone: {floor:.2f} ms of the naive loop's {sum(theirs.values()):.2f} ms per clip, so "
          f"2 workers can be at most {2 * sum(theirs.values()) / floor:.1f}x the naive loop if nothing else cost "
          f"anything, and {2 * sum(theirs.values()) / sum(ours.values()):.2f}x with prepare's per-clip cost "
          f"before start-up")

    naive_s, ours_s = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as out:
            naive_s.append(naive(paths, Path(out)))
        with tempfile.TemporaryDirectory() as cache:
            ours_s.append(prepare_command(args.data, Path(cache)))
    import soundfile as sf

    audio_s = sum(sf.info(p).duration for p in paths)
    best_naive, best_ours = min(naive_s), min(ours_s)
    print(f"whole job, {len(paths)} clips, {audio_s:.0f} s of audio, best of {args.repeat}:")
    print(f"  naive loop (1 process, full band only): {best_naive:.2f} s  ({audio_s / best_naive:.0f}x real time)")
    print(f"  prepare, whole command (full + low-pass): {best_ours:.2f} s  ({audio_s / best_ours:.0f}x real time)")
    print(f"  speed-up: {best_naive / best_ours:.2f}x the naive loop (target >= 3x)")


if __name__ == "__main__":
    main()
