"""How long a study's linear probes take: the shipped probe against the LinearSVC probe it replaced.

    .venv/bin/python bench/probes.py [--study checkpoints/matrix-study] [--runs 6] [--per-language 50]
                                     [--before 99aa06f] [--whole]

Both probes run on the same latents, alternating run by run, one thread each (as a study's probe
workers run), and the median seconds per run of each are compared:

* before: ``core/study/linear_probe.py`` as it was at ``--before`` (read from git): StandardScaler +
  LinearSVC refitted for every fold of every permutation, at most 20 permutations, stopping once 5
  beat the real score;
* now: ``core.study.linear_probe.probe``: diagonal LDA (the nearest class mean, each dimension weighted
  by its within-class variance), all 200 permutations in one product per fold.

``--per-language N`` first tiles each latent set to N clips a language, as the study's latent sample
is at 2x the embedded sample and beyond (it is capped at 50 a language): copy j of a clip is its row
plus 1 % noise, under a new speaker id, as the scale benchmarks' replicated datasets give. ``--whole``
also times ``probe_study`` on all of the (tiled) study with its default workers, end to end.

Also prints how the two agree: mean accuracy, their correlation over probes, and the share of probes
with p < 0.05.
"""

import argparse
import importlib.util
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from core.study import linear_probe  # noqa: E402
from core.study.latent_files import load_latents, save_latents  # noqa: E402
from core.study.layout import parse_run_name, study_runs  # noqa: E402
from core.study.probes import probe_study  # noqa: E402

BEFORE = "99aa06f"  # the last commit whose probe was the LinearSVC


def module_at(rev: str):
    """``core/study/linear_probe.py`` as it was at ``rev``, imported under another name."""
    source = subprocess.run(["git", "show", f"{rev}:core/study/linear_probe.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "probe_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("probe_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tile(arrays: dict, manifest: pd.DataFrame, per_language: int, rng) -> tuple[dict, pd.DataFrame]:
    """Each language's rows repeated (copy-major) to ``per_language``; copies get noise and new speakers."""
    order, copies = [], []
    for _, rows in manifest.groupby("language", sort=False):
        index = rows.index.to_numpy()
        take = np.arange(per_language)
        order.append(index[take % len(index)])
        copies.append(take // len(index))
    order, copies = np.concatenate(order), np.concatenate(copies)
    tiled = manifest.loc[order].reset_index(drop=True)
    tiled["speaker"] = tiled["speaker"].astype(str) + np.where(copies > 0, "~" + copies.astype(str), "")
    tiled["key"] = tiled["key"].astype(str) + np.where(copies > 0, "~" + copies.astype(str), "")
    out = {}
    for kind, X in arrays.items():
        noise = rng.normal(scale=0.01, size=(len(order), X.shape[1])) * X.std(0)
        out[kind] = (X[order] + noise * (copies > 0)[:, None]).astype(np.float32)
    return out, tiled


def tiled_study(study: Path, per_language: int) -> Path:
    """A copy of the study (its files, not its run weights) whose latents are tiled."""
    copy = Path(tempfile.mkdtemp(prefix="probes-bench-")) / study.name
    shutil.copytree(study, copy, ignore=shutil.ignore_patterns("*.pt", "probes.tsv", "report_summary.json"))
    rng = np.random.default_rng(0)
    folders = [p for p in study_runs(copy)] + [copy / "identify"]
    for folder in folders:
        if (folder / "latents.npz").exists():
            save_latents(folder, *tile(*load_latents(folder), per_language, rng))
    return copy


def probe_run(folder: Path, probe) -> tuple[float, list[tuple[float, float]]]:
    arrays, manifest = load_latents(folder)
    languages = manifest["language"].to_numpy().astype(str)
    target = parse_run_name(folder.name).get("target") if folder.name != "identify" else None
    target = target or languages[0]  # the autoencoder and the reference space: probed for every target
    started = time.perf_counter()
    results = []
    for X in arrays.values():
        for y in (np.where(languages == target, target, "other"), languages):
            result = probe(X, y, manifest["speaker"].to_numpy())
            results.append((result["accuracy"], result["p_value"]))
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=ROOT / "checkpoints" / "matrix-study")
    parser.add_argument("--runs", type=int, default=6, help="runs probed by each implementation, alternating")
    parser.add_argument("--per-language", type=int, default=0, help="tile each latent set to this many clips a "
                        "language first (0: as stored)")
    parser.add_argument("--before", default=BEFORE, help="git revision of the probe to compare with")
    parser.add_argument("--whole", action="store_true", help="also time probe_study on the whole study")
    args = parser.parse_args()

    study = tiled_study(args.study, args.per_language) if args.per_language else args.study
    before = module_at(args.before)
    runs = [p for p in study_runs(study) if parse_run_name(p.name)["kind"] == "lstm"
            and (p / "latents.npz").exists()]
    runs = [runs[i] for i in np.linspace(0, len(runs) - 1, min(args.runs, len(runs))).astype(int)]
    runs += [p for p in (study / "runs" / "ae__s0", study / "identify") if (p / "latents.npz").exists()]
    times = {"before": [], "now": []}
    results = {"before": [], "now": []}
    with threadpool_limits(1):
        for folder in runs:
            for name, probe in (("before", before.probe), ("now", linear_probe.probe)):
                seconds, rows = probe_run(folder, probe)
                times[name].append(seconds)
                results[name] += rows
    b, n = statistics.median(times["before"]), statistics.median(times["now"])
    old, new = np.array(results["before"]), np.array(results["now"])
    n_clips = len(load_latents(runs[0])[1])
    print(f"{args.study.name}, {n_clips} clips a latent set{' (tiled)' if args.per_language else ''}, "
          f"{len(runs)} latent sets (LSTM runs, an autoencoder, the reference space) x every kind x 2 tasks, "
          f"one thread: before {b:.2f} s a run, now {n:.2f} s = {b / n:.1f}x faster")
    if args.per_language:
        print("(tiled: a clip's copies stand for other speakers, so a fold can train on a near-duplicate of a "
              "held-out clip: the accuracies below say nothing, only the times do)")
    print(f"accuracy: before {old[:, 0].mean():.3f}, now {new[:, 0].mean():.3f} (mean over {len(old)} probes), "
          f"correlation {np.corrcoef(old[:, 0], new[:, 0])[0, 1]:.3f}; "
          f"p < 0.05: before {np.mean(old[:, 1] < 0.05):.2f}, now {np.mean(new[:, 1] < 0.05):.2f} (smallest p: before 1/21, now 1/{linear_probe.N_PERMUTATIONS + 1})")
    if args.whole:
        started = time.perf_counter()
        table = probe_study(study)
        print(f"probe_study, whole study ({len(table)} probes, default workers): "
              f"{time.perf_counter() - started:.1f} s")
    if args.per_language:
        shutil.rmtree(study.parent)


if __name__ == "__main__":
    main()
