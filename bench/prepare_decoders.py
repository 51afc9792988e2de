"""Benchmark: would a lossy mp3 decode make `prepare` 3x the naive loop? mpg123's own 2:1 synthesis vs full rate.

`prepare` decodes Common Voice's 48 kHz mp3s with libmpg123 (through soundfile) and resamples to 16 kHz with
soxr HQ. mpg123 can synthesise at half rate (24 kHz) itself; if that were much cheaper, a faster but
slightly different `prepare` would be possible. This times, per clip and on one thread, libmpg123 at full and
at half rate (called directly through ctypes: needs the system's libmpg123.so.0, which Debian's ffmpeg brings),
the soxr HQ resampling of each to 16 kHz, and how far the half-rate log-mels are from today's.

    .venv/bin/python bench/prepare_decoders.py [--every 4]
"""

import argparse
import ctypes
import ctypes.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soxr  # noqa: E402

from core.audio import load_audio  # noqa: E402
from core.audio.features import FeatureConfig, log_mel  # noqa: E402
from core.paths import CV_SAMPLE_DIR  # noqa: E402

FLAGS, DOWN_SAMPLE = 1, 4  # mpg123_param keys
FORCE_MONO, QUIET, FORCE_FLOAT = 0x7, 0x20, 0x400
OK, NEW_FORMAT = 0, -11


class Mpg123:
    def __init__(self):
        name = ctypes.util.find_library("mpg123") or "libmpg123.so.0"
        self.lib = ctypes.CDLL(name)
        self.lib.mpg123_new.restype = ctypes.c_void_p
        self.lib.mpg123_init()

    def decode(self, path: str, down_sample: int) -> tuple[np.ndarray, int]:
        """Mono float32 samples and their rate; ``down_sample`` 1 = mpg123's 2:1 synthesis."""
        lib, handle = self.lib, ctypes.c_void_p(self.lib.mpg123_new(None, None))
        lib.mpg123_param(handle, FLAGS, FORCE_MONO | QUIET | FORCE_FLOAT, ctypes.c_double(0))
        lib.mpg123_param(handle, DOWN_SAMPLE, down_sample, ctypes.c_double(0))
        lib.mpg123_open(handle, path.encode())
        rate, channels, encoding = ctypes.c_long(), ctypes.c_int(), ctypes.c_int()
        lib.mpg123_getformat(handle, ctypes.byref(rate), ctypes.byref(channels), ctypes.byref(encoding))
        chunks, buffer, done = [], ctypes.create_string_buffer(1 << 16), ctypes.c_size_t()
        while True:
            status = lib.mpg123_read(handle, buffer, len(buffer), ctypes.byref(done))
            if done.value:
                chunks.append(np.frombuffer(buffer.raw[:done.value], np.float32).copy())
            if status not in (OK, NEW_FORMAT):
                break
        lib.mpg123_close(handle)
        lib.mpg123_delete(handle)
        return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), rate.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=4, help="time every k-th clip of the sample (default 4)")
    args = parser.parse_args()
    decoder, config = Mpg123(), FeatureConfig()
    paths = sorted(str(p) for p in CV_SAMPLE_DIR.glob("*/clips/*.mp3"))[::args.every]
    cpu = {"decode, full rate (48 kHz)": 0.0, "decode, mpg123 2:1 (24 kHz)": 0.0,
           "soxr HQ 48 -> 16 kHz": 0.0, "soxr HQ 24 -> 16 kHz": 0.0}
    names, gaps = list(cpu), []
    for path in paths:
        timings = []
        for step in (lambda: decoder.decode(path, 0), lambda: decoder.decode(path, 1)):
            started = time.process_time()
            out = step()
            timings.append((time.process_time() - started, out))
        (t_full, (full, full_rate)), (t_half, (half, half_rate)) = timings
        started = time.process_time()
        full16 = soxr.resample(full, full_rate, 16000)
        t_resample_full = time.process_time() - started
        started = time.process_time()
        half16 = soxr.resample(half, half_rate, 16000)
        t_resample_half = time.process_time() - started
        for name, seconds in zip(names, (t_full, t_half, t_resample_full, t_resample_half)):
            cpu[name] += seconds
        half16 = np.pad(half16, (0, max(0, len(full16) - len(half16))))[:len(full16)]
        today, lossy = log_mel(load_audio(path), config), log_mel(half16, config)
        n = min(today.shape[1], lossy.shape[1])
        gaps.append(np.abs(today[:, :n] - lossy[:, :n]))
    print(f"{len(paths)} clips of {CV_SAMPLE_DIR.name}, CPU per clip on one thread:")
    for name, seconds in cpu.items():
        print(f"  {name:30s} {1000 * seconds / len(paths):5.2f} ms")
    ratio = (cpu[names[1]] + cpu[names[3]]) / (cpu[names[0]] + cpu[names[2]])
    gap = np.concatenate([g.ravel() for g in gaps])
    print(f"half-rate decode + resample costs {ratio:.2f}x today's; its log-mels differ from today's by "
          f"median {np.median(gap):.4f}, 99th percentile {np.quantile(gap, 0.99):.4f}, max {gap.max():.2f} (natural log)")


if __name__ == "__main__":
    main()
