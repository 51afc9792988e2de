"""Runs per minute of the study's training, old path against new path, measured in the same run.

    .venv/bin/python bench/study_default.py [--budget 200] [--seeds 2] [--repeats 2] [--backend sequential]
    .venv/bin/python bench/study_default.py --full [--workers 2]

``--full`` times the real thing once: ``python -m core study --data data/cv-sample`` with every
default (6 targets x 9 conditions x 5 seeds = 270 runs, 5 autoencoders, latents, probes) into a
fresh folder, end to end, and prints its minutes against the 15-minute target, with the time of
each phase (training, probes) read from the study's own files.

On a reduced matrix of the embedded Common Voice sample (2 targets x (none + es, ja, es:full,
noise) x seeds, one dose), both paths train the same runs with the same settings, two worker
processes each:

* old path: what the study did before the matrix: every run its own job, its pretraining
  computed again for every target, one model per run, a validation pass every 10 steps;
* new path: ``core.study.run``: each (condition, seed) pretrained once and shared by every
  target, runs of a target trained together in groups (``--backend``), validation every 20 steps.

The machine is shared and its load moves, so the two paths alternate (old, new, old, new, ...)
and the median of each is compared. Prints runs per minute for each, their ratio, the grouped and sequential backends' member-steps
per second on one core, and what the new path's rate makes of the default matrix (6 targets x
9 conditions x 5 seeds = 270 runs at the default budget): an extrapolation, labelled as one.
Latents are extracted in both paths (they are part of every run); probes are left out of both.
"""

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_S = 15 * 60


def _old_run(study_dir: Path, name: str) -> None:
    """One run the old way: its own pretraining (recomputed for each target), then the target alone."""
    import torch

    from core.study.layout import NONE, parse_run_name
    from core.study.trainer import pretrain_group, train_group

    torch.set_num_threads(1)
    spec = parse_run_name(name)
    if spec["pretrain"] != NONE:
        pretrain_group(study_dir, [(spec["pretrain"], spec["seed"])])
    train_group(study_dir, [name])


def timed_old(config, data: Path, folder: Path, workers: int) -> tuple[float, int]:
    from core.study.layout import study_runs
    from core.study.plan import plan_study

    study = plan_study(replace(config, eval_every=10, group_size=1), data, folder / "old")
    names = [p.name for p in study_runs(study)]
    started = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(_old_run, [study] * len(names), names))
    return time.perf_counter() - started, len(names)


def timed_new(config, data: Path, folder: Path, workers: int) -> tuple[float, int]:
    from core.study.layout import study_runs
    from core.study.plan import plan_study
    from core.study.run import _train_all

    study = plan_study(config, data, folder / "new")
    started = time.perf_counter()
    _train_all(study, workers, None, None)
    return time.perf_counter() - started, len(study_runs(study))


def backend_rates(config, k: int = 5, n_steps: int = 3) -> dict[str, float]:
    """Member-steps per second of each backend on one core, K members, the study's batch shape."""
    import numpy as np
    import torch

    from core.study.grouped import BACKENDS, make_members
    from core.study.trainer import initial_model

    torch.set_num_threads(1)
    x = np.random.default_rng(0).standard_normal((k, config.batch_size, config.crop_frames + 1, 64)).astype(np.float32)
    rates = {}
    for backend in BACKENDS:
        members = make_members([initial_model(config, 64, s) for s in range(k)], config.learning_rate, backend)
        members.step(x)  # warm-up
        started = time.perf_counter()
        for _ in range(n_steps):
            members.step(x)
        rates[backend] = k * n_steps / (time.perf_counter() - started)
    return rates


def full_matrix(workers: int) -> None:
    """The default study, end to end, as a user runs it (the feature cache as it is: prepare
    counts only if it has not run yet)."""
    import json
    import subprocess

    from core.paths import CV_SAMPLE_DIR, REPO_ROOT

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "default-matrix"
        command = [sys.executable, "-m", "core", "study", "--data", str(CV_SAMPLE_DIR), "--out", str(out),
                   "--workers", str(workers)]
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        statuses = [json.loads((p / "status.json").read_text()) for p in (out / "runs").iterdir()]
        n_runs = sum(not p.name.startswith("ae") for p in (out / "runs").iterdir())
        planned = (out / "study.json").stat().st_mtime  # written once the dataset is read and split
        trained = max(s["updated"] for s in statuses) - planned
    print(f"default study, end to end ({n_runs} runs + 5 autoencoders, latents, probes; {workers} workers): "
          f"{seconds / 60:.1f} min = {seconds / TARGET_S:.2f}x the 15 min target "
          f"({'within' if seconds <= TARGET_S else 'OVER'}); {n_runs / seconds * 60:.1f} runs/min")
    print(f"  from the plan to the last run trained: {trained / 60:.1f} min; the rest (start-up, planning, "
          f"identifier latents, probes): {(seconds - trained) / 60:.1f} min")


def main() -> None:
    from core.paths import CV_SAMPLE_DIR
    from core.study.layout import StudyConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=int, default=200, help="target steps per run (default 200)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements of each path")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--backend", default=StudyConfig().group_backend)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="time the whole default study once instead")
    args = parser.parse_args()
    if args.full:
        return full_matrix(args.workers)
    default = StudyConfig()
    config = replace(default, targets=("es", "it"), pretrain=("none", "es", "ja", "es:full", "noise"),
                     seeds=args.seeds, budget_steps=args.budget, loss_budgets=(args.budget,), autoencoder=False,
                     pretrain_epochs=(2,), latent_languages=("es", "it", "ja"), group_backend=args.backend)
    olds, news = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as folder:
            olds.append(timed_old(config, CV_SAMPLE_DIR, Path(folder), args.workers))
            news.append(timed_new(config, CV_SAMPLE_DIR, Path(folder), args.workers))
    old_s, n_old = statistics.median(s for s, _ in olds), olds[0][1]
    new_s, n_new = statistics.median(s for s, _ in news), news[0][1]
    print("each measurement (s): old " + ", ".join(f"{s:.1f}" for s, _ in olds)
          + "; new " + ", ".join(f"{s:.1f}" for s, _ in news))
    old_rate, new_rate = n_old / old_s * 60, n_new / new_s * 60
    print(f"reduced matrix on data/cv-sample: {n_new} runs (2 targets x 5 conditions x {args.seeds} seeds), "
          f"budget {args.budget} steps, pretraining {2 * config.pretrain_epoch_steps} steps, {args.workers} workers, "
          f"median of {args.repeats}")
    print(f"  old path: {old_s:7.1f} s = {old_rate:6.2f} runs/min")
    print(f"  new path: {new_s:7.1f} s = {new_rate:6.2f} runs/min   ({args.backend} backend)")
    print(f"  new / old: {new_rate / old_rate:.2f}x runs per minute")
    rates = backend_rates(default)
    print("  one core, 5 members: " + ", ".join(f"{b} {r:.1f} member-steps/s" for b, r in rates.items())
          + f"  (grouped / sequential {rates['grouped'] / rates['sequential']:.2f}x)")
    n_default = len([n for n in default.run_names() if not n.startswith("ae")])
    scale = default.budget_steps / args.budget  # training time grows with the budget; overheads do not
    projected = n_default / new_rate * 60 * scale
    print(f"  extrapolated, not measured: the default matrix ({n_default} runs, budget {default.budget_steps}) "
          f"~{projected / 60:.1f} min of training = {projected / TARGET_S:.2f}x the 15 min target")


if __name__ == "__main__":
    main()
