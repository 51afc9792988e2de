"""How training and evaluation grow with the data: wall time and peak memory per size, and growth exponents.

    python bench/scale.py --sizes 1,2,4,8 [--jobs gmm,whisper-head,evaluate] [--reuse-encodings MAIN_CACHE]
                          [--largest gmm=2] [--results FILE.json]

Builds datasets of ``size`` times the embedded sample in a temporary folder: copy 0 is the sample's files,
copy j > 0 each clip decoded, scaled by a tiny distinct gain (1 + j/1000, so duplicate detection does not fold
them) and written as WAV, under new speaker ids. Each job runs in a child process (``python -m core ...``)
whose peak resident memory is read from ``ru_maxrss``; the dataset's features are prepared first and timed
apart. Exponents: log(ratio) / log(size ratio) of time and of peak memory, between consecutive sizes and
between the smallest size >= 2 and the largest (1.0 = linear; at small sizes the fixed start-up cost, about
5-10 s of imports and model loading, pulls the time exponent below 1).

``--largest JOB=SIZE`` (repeatable): run JOB only up to SIZE (the GMM recipe takes minutes a size).
``--extrapolate 10,100,1000``: each job's time and peak memory at those sizes, from the measured ones. Time:
the largest measured size's, grown by the time exponent from the smallest size >= 2 (at least 1: a lower one only
says a fixed start-up cost is being spread). Memory: the largest size's plus the least-squares slope of memory on
size (a fixed cost does not grow, a per-clip one does linearly). ``--sizes none`` with ``--results``: only the
table and the extrapolation of the measurements already in FILE.
``--results FILE``: every measurement is added to FILE (JSON) as it is made, measurements already there are kept
(a later run with other sizes adds to them; the table covers them all), and each job's stderr (its progress
bars) goes beside it as ``FILE-<job>-<size>x.log``; the phases' times read from those bars are printed.

``--reuse-encodings CACHE``: a whisper-head's rows for copies are the sample's rows from CACHE (a cache folder
that holds ``whisper-<key>/``, e.g. another checkout's data/cache/cv-sample-*), so whisper-head's time is its
fitting alone; encoding is 0.1 s a clip on 2 cores and linear (it runs on Dask workers: time / workers). A copy's
row is then its original clip's row (the copy's own row would differ by the gain's effect on the encoder): the
fit sees exact duplicates, which costs what near-duplicates cost.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
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
from core.paths import default_cache_dir  # noqa: E402

SAMPLE = ROOT / "data" / "cv-sample"
MEASURE = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
           "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
           "print(rc.returncode, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
           "print(rc.stderr, file=sys.stderr)")
BAR = re.compile(r"^(?P<phase>[^\r\n]*?): +100%\|[^\r\n]*?\[(?P<elapsed>[\d:]+)<")


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


def measure(command: list[str], log: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak resident GB of ``command`` run in a child of a fresh process (its stderr to ``log``)."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, cwd=ROOT)
    rc, seconds, kb = done.stdout.split()
    if log is not None:
        log.write_text(done.stderr)
    if rc != "0":
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return float(seconds), int(kb) / 1024 ** 2


def phase_times(stderr: str) -> dict[str, int]:
    """Seconds of each finished phase, from the last state of its tqdm bar (``phase: 100%|...| n/n [mm:ss<``)."""
    times = {}
    for part in re.split(r"[\r\n]", stderr):
        match = BAR.match(part.strip())
        if match:
            seconds = 0
            for field in match["elapsed"].split(":"):
                seconds = seconds * 60 + int(field)
            times[match["phase"]] = seconds
    return times


def exponent(results: dict, name: str, a: int, b: int, which: int) -> str:
    """log(ratio of measure ``which``) / log(b / a), or blank where a size is missing."""
    if a == b or (name, a) not in results or (name, b) not in results:
        return ""
    return f"{math.log(results[(name, b)][which] / results[(name, a)][which]) / math.log(b / a):.2f}"


def table(results: dict) -> None:
    """Every measurement, with its exponents vs the previous size and from the smallest size >= 2."""
    print("\njob          size   seconds   peak GB   exponent vs previous size (time, memory)   from >=2x (time, memory)")
    for name in dict.fromkeys(name for name, _ in results):
        sizes = sorted(size for job, size in results if job == name)
        start = min([s for s in sizes if s >= 2] or sizes)
        for a, b in zip([sizes[0], *sizes], sizes):
            seconds, gb = results[(name, b)]
            print(f"{name:12s} {b:4d}x {seconds:9.1f} {gb:9.2f}   {exponent(results, name, a, b, 0):>6s} "
                  f"{exponent(results, name, a, b, 1):>6s}                             "
                  f"{exponent(results, name, start, b, 0) if b > start else '':>6s} "
                  f"{exponent(results, name, start, b, 1) if b > start else '':>6s}")


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


def extrapolate(results: dict, targets: list[int]) -> None:
    """Each job's time and memory at ``targets`` times the sample (see the module's docstring)."""
    print(f"\nextrapolated   " + "".join(f"{t:>8d}x: hours, GB" for t in targets))
    for name in dict.fromkeys(name for name, _ in results):
        sizes = sorted(size for job, size in results if job == name)
        if len(sizes) < 2:
            continue
        start, last = min([s for s in sizes if s >= 2] or sizes), sizes[-1]
        seconds, gb = results[(name, last)]
        grow = max(1.0, math.log(seconds / results[(name, start)][0]) / math.log(last / start)) if last > start else 1.0
        slope = max(0.0, float(np.polyfit(sizes, [results[(name, s)][1] for s in sizes], 1)[0]))
        print(f"{name:12s}   " + "".join(f"{seconds * (t / last) ** grow / 3600:>10.2f} h {gb + slope * (t - last):6.1f}"
                                         for t in targets) + f"   (time exponent used {grow:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,2,4,8", help="multiples of the sample (default %(default)s)")
    parser.add_argument("--jobs", default="gmm,whisper-head,evaluate")
    parser.add_argument("--reuse-encodings", type=Path, metavar="CACHE")
    parser.add_argument("--largest", action="append", default=[], metavar="JOB=SIZE",
                        help="run JOB only up to SIZE (repeatable)")
    parser.add_argument("--results", type=Path, metavar="FILE", help="JSON file the measurements are added to")
    parser.add_argument("--extrapolate", default="10,100,1000", help="sizes to extrapolate to (default %(default)s)")
    args = parser.parse_args()
    args.sizes = "" if args.sizes == "none" else args.sizes
    sizes, names = [int(s) for s in args.sizes.split(",") if s], args.jobs.split(",")
    largest = {job: int(size) for job, size in (item.split("=") for item in args.largest)}
    results = {}
    if args.results and args.results.exists():
        results = {(r["job"], r["size"]): (r["seconds"], r["gb"]) for r in json.loads(args.results.read_text())}

    def record(name: str, size: int, measured: tuple[float, float]) -> None:
        results[(name, size)] = measured
        print(f"{size}x: {name} {measured[0]:.1f} s, {measured[1]:.2f} GB", flush=True)
        if args.results:
            rows = [{"job": j, "size": s, "seconds": t, "gb": g} for (j, s), (t, g) in results.items()]
            args.results.write_text(json.dumps(rows, indent=1))

    def log(name: str, size: int) -> Path | None:
        return args.results.with_name(f"{args.results.stem}-{name}-{size}x.log") if args.results else None

    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        for size in sizes:
            # the dataset's default cache, which `evaluate` (no --cache option) reads: else it would prepare again
            data, runs = Path(tmp) / f"x{size}", Path(tmp) / f"runs{size}"
            cache = default_cache_dir(data)
            try:
                replicate(size, data)
                record("prepare", size, measure([sys.executable, "-m", "core", "prepare", "--data", str(data),
                                                 "--cache", str(cache)]))
                if args.reuse_encodings:
                    seed_encodings(data, cache, args.reuse_encodings)
                commands = jobs(data, cache, runs)
                for name in (n for n in names if size <= largest.get(n, size)):
                    record(name, size, measure(commands[name], log(name, size)))
                    if log(name, size):
                        phases = phase_times(log(name, size).read_text())
                        print("   phases: " + ", ".join(f"{p} {t} s" for p, t in phases.items()), flush=True)
            finally:  # a cache of up to hundreds of MB per size under data/cache
                shutil.rmtree(cache, ignore_errors=True)
    table(results)
    extrapolate(results, [int(t) for t in args.extrapolate.split(",")])


if __name__ == "__main__":
    main()
