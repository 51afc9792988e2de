"""How training and evaluation grow with the data: wall time and peak memory per size, and growth exponents.

    python bench/scale.py --sizes 1,2,4,8 [--jobs gmm,whisper-head,evaluate] [--reuse-encodings MAIN_CACHE]

Builds datasets of ``size`` times the embedded sample in a temporary folder: copy 0 is the sample's files,
copy j > 0 each clip decoded, scaled by a tiny distinct gain (1 + j/1000, so duplicate detection does not fold
them) and written as WAV, under new speaker ids. Each job runs in a child process (``python -m core ...``)
whose peak resident memory is read from ``ru_maxrss``; the dataset's features are prepared first and timed
apart. Exponents: log(time ratio) / log(size ratio) between consecutive sizes (1.0 = linear).

``--reuse-encodings CACHE``: a whisper-head's rows for copies are the sample's rows from CACHE (a cache folder
that holds ``whisper-<key>/``, e.g. another checkout's data/cache/cv-sample-*), so whisper-head's time is its
fitting alone; encoding is 0.1 s a clip on 2 cores and linear (it runs on Dask workers: time / workers).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data.cache import clip_key  # noqa: E402
from core.data.datasets import read_dataset  # noqa: E402
from core.identify.recipes import SHIPPED_GMM  # noqa: E402

SAMPLE = ROOT / "data" / "cv-sample"
MEASURE = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
           "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
           "print(rc.returncode, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
           "print(rc.stderr[-800:] if rc.returncode else '', file=sys.stderr)")


def replicate(size: int, out: Path) -> Path:
    """``size`` copies of the sample in Common Voice layout under ``out``; returns the dataset folder."""
    for locale_dir in sorted(p.parent for p in SAMPLE.glob("*/validated.tsv")):
        table = pd.read_csv(locale_dir / "validated.tsv", sep="\t", dtype=str, keep_default_na=False)
        clips = out / locale_dir.name / "clips"
        clips.mkdir(parents=True, exist_ok=True)
        tables = []
        for copy in range(size):
            part = table.copy()
            for i, name in enumerate(table["path"]):
                source = locale_dir / "clips" / name
                if not source.exists():
                    continue
                if copy == 0:
                    (clips / name).write_bytes(source.read_bytes())
                    continue
                audio, rate = soundfile.read(source, dtype="float32")
                part.loc[i, "path"] = f"{Path(name).stem}-copy{copy}.wav"
                soundfile.write(clips / part.loc[i, "path"], audio * (1 + copy / 1000), rate)
            part["client_id"] = part["client_id"] + (f"-copy{copy}" if copy else "")
            tables.append(part)
        pd.concat(tables).to_csv(out / locale_dir.name / "validated.tsv", sep="\t", index=False)
    return out


def seed_encodings(data: Path, cache: Path, main_cache: Path) -> None:
    """Rows of every copy = the sample's row of its clip, read from ``main_cache`` (keyed by the sample's files)."""
    from core.identify.embeddings import EmbeddingCache
    from core.identify.whisper import load_encoder

    encoder = load_encoder("base")
    source, target = EmbeddingCache(main_cache, encoder), EmbeddingCache(cache, encoder)
    origin = {Path(p).stem: p for p in read_dataset(Path(main_cache).parent.parent / "cv-sample")["path"]}
    for path in read_dataset(data)["path"]:
        row = source.read(clip_key(origin[Path(path).stem.split("-copy")[0]]))
        if row is not None:
            target.path(clip_key(path)).parent.mkdir(parents=True, exist_ok=True)
            np.save(target.path(clip_key(path)), row)


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident GB of ``command`` run in a child of a fresh process."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, cwd=ROOT)
    rc, seconds, kb = done.stdout.split()
    if rc != "0":
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return float(seconds), int(kb) / 1024 ** 2


def jobs(data: Path, cache: Path, runs: Path) -> dict[str, list[str]]:
    core = [sys.executable, "-m", "core"]
    common = ["--data", str(data), "--cache", str(cache), "--threads", "2"]
    return {
        "gmm": core + ["train", *common, "--model", "gmm-supervector", "--out", str(runs / "gmm"),
                       "--model-config", json.dumps(SHIPPED_GMM)],
        "whisper-head": core + ["train", *common, "--model", "whisper-head", "--out", str(runs / "head")],
        "evaluate": core + ["evaluate", "--data", str(data), "--checkpoint",
                            str(ROOT / "checkpoints" / "identify-gmm" / "best.pt"), "--split", "all"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,2,4,8", help="multiples of the sample (default %(default)s)")
    parser.add_argument("--jobs", default="gmm,whisper-head,evaluate")
    parser.add_argument("--reuse-encodings", type=Path, metavar="CACHE")
    args = parser.parse_args()
    sizes, names = [int(s) for s in args.sizes.split(",")], args.jobs.split(",")
    results = {}
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        for size in sizes:
            data, cache, runs = Path(tmp) / f"x{size}", Path(tmp) / f"cache{size}", Path(tmp) / f"runs{size}"
            replicate(size, data)
            seconds, gb = measure([sys.executable, "-m", "core", "prepare", "--data", str(data), "--cache", str(cache)])
            results[("prepare", size)] = (seconds, gb)
            print(f"{size}x: prepare {seconds:.0f} s, {gb:.2f} GB", flush=True)
            if args.reuse_encodings:
                seed_encodings(data, cache, args.reuse_encodings)
            commands = jobs(data, cache, runs)
            for name in names:
                results[(name, size)] = measure(commands[name])
                print(f"{size}x: {name} {results[(name, size)][0]:.0f} s, {results[(name, size)][1]:.2f} GB", flush=True)
    print("\njob          size   seconds   peak GB   time exponent vs previous size")
    for name in ["prepare", *names]:
        for a, b in zip([None, *sizes], sizes):
            seconds, gb = results[(name, b)]
            exponent = "" if a is None else \
                f"{math.log(seconds / results[(name, a)][0]) / math.log(b / a):.2f}"
            print(f"{name:12s} {b:4d}x {seconds:9.0f} {gb:9.2f}   {exponent}")


if __name__ == "__main__":
    main()
