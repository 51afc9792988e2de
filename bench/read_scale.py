"""Reading a dataset at 1x/4x/16x/64x the embedded sample: cold (no manifest cache) and warm.

Run: nice -n 10 .venv/bin/python bench/read_scale.py [--sizes 1,4,16,64] [--root /tmp/deeplanguage-scale]
     [--drop-os-cache]   (root only: empties the OS's page cache before each cold read, as after a reboot)

The replicated datasets are built once under ``--root`` (64x: 57k clips, about 2.2 GB): each copy of a
locale is a new locale folder with new speaker ids, and each clip gets a few distinct trailing bytes so no
two copies are the same audio (the reader keeps one of identical clips). Cold = the manifest cache of that
dataset deleted first; the OS file cache stays warm unless --drop-os-cache. Prints seconds,
the growth exponent against 1x measured in this run, the 5 s target at 64x, and each read against a baseline
measured beside it: one header read per clip, one clip at a time (what a read cost before, for durations alone).
"""

import argparse
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.data import clipscan, datasets, manifests  # noqa: E402
from core.paths import CV_SAMPLE_DIR  # noqa: E402

TARGET_64X_S = 5.0


def replicate(source: Path, out: Path, factor: int, full: Path | None = None) -> Path:
    """``factor`` copies of each locale of ``source`` under ``out`` (``<locale>_r<k>``); built once. With ``full``
    (a bigger replica already built), the copies are symlinks to its locale folders: no disk spent twice."""
    done = out / ".complete"
    if done.exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    if full is not None:
        out.mkdir(parents=True)
        for locale in sorted(p.parent for p in source.glob("*/validated.tsv")):
            for k in range(factor):
                (out / f"{locale.name}_r{k}").symlink_to(full / f"{locale.name}_r{k}", target_is_directory=True)
        done.touch()
        return out
    for locale in sorted(p.parent for p in source.glob("*/validated.tsv")):
        lines = (locale / "validated.tsv").read_text(encoding="utf-8").splitlines()
        header = lines[0].split("\t")
        speaker = header.index("client_id")
        for k in range(factor):
            copy = out / f"{locale.name}_r{k}"
            (copy / "clips").mkdir(parents=True)
            rows = [line.split("\t") for line in lines[1:]]
            for row in rows:
                row[speaker] = f"{row[speaker]}-r{k}"
            (copy / "validated.tsv").write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n",
                                                encoding="utf-8")
            for clip in (locale / "clips").iterdir():
                # Trailing bytes after the last mp3 frame are ignored by decoders; they make each copy distinct.
                (copy / "clips" / clip.name).write_bytes(clip.read_bytes() + b"\0" * (k + 1))
    done.touch()
    return out


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16,64")
    parser.add_argument("--root", type=Path, default=Path("/tmp/deeplanguage-scale"))
    parser.add_argument("--drop-os-cache", action="store_true", help="empty the OS page cache before each cold read")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    biggest = replicate(CV_SAMPLE_DIR, args.root / f"cv-{max(sizes)}x", max(sizes))
    for size in sizes:
        folder = replicate(CV_SAMPLE_DIR, args.root / f"cv-{size}x", size, biggest)
        manifests.clear(folder)
        if args.drop_os_cache:
            subprocess.run("sync; echo 1 > /proc/sys/vm/drop_caches", shell=True, check=True)
        cold, manifest = timed(datasets.read_dataset, folder)
        clipscan.remember(clipscan._remembered.iloc[:0])  # the next read as in a new process: from disk alone
        warm, kept = timed(datasets.read_dataset, folder)
        splits, _ = timed(datasets.assign_splits, kept)  # its leak check: the scan kept with the manifest
        clipscan.remember(clipscan._remembered.iloc[:0])
        rescan, _ = timed(clipscan.content_keys, kept["path"])  # what that check cost before: every clip opened
        baseline, _ = timed(lambda: [sf.info(p).duration for p in manifest["path"]])
        rows.append((size, len(manifest), cold, warm))
        print(f"{size:3d}x {len(manifest):6d} clips  cold {cold:6.2f} s  warm {warm:6.3f} s  baseline (headers one by "
              f"one) {baseline:6.2f} s: cold {cold / baseline:.2f}x, warm {warm / baseline:.3f}x of it; splits and "
              f"their leak check {splits:.2f} s (opening every clip again: {rescan:.2f} s for the keys alone)", flush=True)
    base = next((row for row in rows if row[0] == 4), rows[0])  # the target's exponent is from 4x up
    base_size, _, base_cold, base_warm = base
    print(f"growth exponents against {base_size}x (1.0 = linear):")
    for size, n, cold, warm in rows[rows.index(base) + 1:]:
        ratio = math.log(size / base_size)
        print(f"  {size:3d}x  cold {math.log(cold / base_cold) / ratio:5.2f}  warm {math.log(warm / base_warm) / ratio:5.2f}"
              f"  cold = {cold / base_cold:6.1f}x the {base_size}x read")
    for size, n, cold, warm in rows:
        if size == 64:
            print(f"64x cold read: {cold:.2f} s = {cold / TARGET_64X_S:.2f}x the {TARGET_64X_S:.0f} s target")


if __name__ == "__main__":
    main()
