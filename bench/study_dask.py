"""What Dask costs a study: runs per minute with 1 and 2 local Dask workers, and the overhead per
task against running the same jobs in this process, all measured in the same run.

    .venv/bin/python bench/study_dask.py [--budget 100] [--seeds 2] [--repeats 1]

A reduced matrix of the embedded Common Voice sample (2 targets x (none, es, ja) x seeds, one
dose, no autoencoder) is planned once; each measurement trains a fresh copy of it:

* in-process: ``core.study.run._train_all`` with one worker (no Dask);
* Dask, 1 worker and 2 workers: the same call pointed at a LocalCluster's scheduler
  (``scheduler=`` as ``--scheduler`` gives it), workers started and warmed (project imported)
  beforehand, so the difference is what each task costs to ship, schedule and report. Both are set up as
  the study sets up its own (core/study/dask.yaml);
* Dask, 2 workers with Dask's defaults: what the study's local cluster was before, the baseline of that
  setting (its workers' MALLOC_TRIM_THRESHOLD_ pinned glibc's mmap threshold).

Overhead per task, two ways, each against the mean time of one task in-process (the bar: under 5 %):
(Dask 1 worker - in-process) / tasks, which a shared machine's moving load blurs (measurements
alternate, and their order turns each repeat); and the round trip of a trivial task on the same
1-worker cluster (submit, schedule, run, return; median of 50 one after another), which it does not.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(planned: Path, folder: Path, workers: int | None, scheduler: str | None) -> float:
    from core.study.run import _train_all

    study = folder / f"study-{time.monotonic_ns()}"
    shutil.copytree(planned, study)
    started = time.perf_counter()
    _train_all(study, workers, scheduler, None)
    return time.perf_counter() - started


def trivial_round_trip(cluster, n: int = 50) -> float:
    """Median seconds from submitting a task that does nothing to holding its result."""
    with cluster.get_client() as client:
        seconds = []
        for i in range(n):
            started = time.perf_counter()
            client.submit(abs, -i, pure=False).result()
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    import logging

    import dask
    from distributed import LocalCluster

    from core.paths import CV_SAMPLE_DIR
    from core.study.cluster import settings
    from core.study.layout import StudyConfig, study_runs
    from core.study.plan import plan_study
    from core.study.run import plan_jobs

    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=int, default=100, help="target steps per run (default 100)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="alternating measurements of each path")
    args = parser.parse_args()
    config = replace(StudyConfig(), targets=("es", "fr"), pretrain=("none", "es", "ja"), seeds=args.seeds,
                     budget_steps=args.budget, loss_budgets=(args.budget,), pretrain_epochs=(1,), autoencoder=False,
                     latent_languages=("es", "fr", "ja"), group_size=1)
    times: dict[str, list[float]] = {"in-process": [], "dask 1 worker": [], "dask 2 workers": [], "dask 2, defaults": []}
    with tempfile.TemporaryDirectory() as folder:
        planned = plan_study(config, CV_SAMPLE_DIR, Path(folder) / "planned")
        n_runs = len(study_runs(planned))
        first, second = plan_jobs(planned, 1)
        n_tasks = len(first) + len(second)

        def local(n: int, config: dict) -> LocalCluster:
            with dask.config.set(config):
                return LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None, memory_limit=0,
                                    silence_logs=logging.ERROR)

        # The study's own local cluster (core/study/dask.yaml), and one with Dask's defaults beside it.
        clusters = {1: local(1, settings()), 2: local(2, settings()), "defaults": local(2, {})}
        try:
            for cluster in clusters.values():
                with cluster.get_client() as client:
                    client.run(exec, "import core.study.run")  # warm: imports are start-up, not per task
            round_trip = trivial_round_trip(clusters[1])
            paths = {"in-process": (1, None), "dask 1 worker": (None, clusters[1].scheduler_address),
                     "dask 2 workers": (None, clusters[2].scheduler_address),
                     "dask 2, defaults": (None, clusters["defaults"].scheduler_address)}
            for repeat in range(args.repeats):
                for name in list(paths)[::(-1) ** repeat]:
                    times[name].append(timed(planned, Path(folder), *paths[name]))
        finally:
            for cluster in clusters.values():
                cluster.close()
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"reduced matrix on data/cv-sample: {n_runs} runs in {n_tasks} tasks (2 targets x (none, es, ja) x "
          f"{args.seeds} seeds, budget {args.budget} steps, one pretraining epoch), median of {args.repeats}")
    for name, seconds in median.items():
        print(f"  {name:15s} {seconds:7.1f} s = {n_runs / seconds * 60:6.2f} runs/min   "
              f"(each: {', '.join(f'{s:.1f}' for s in times[name])})")
    per_task = median["in-process"] / n_tasks
    overhead = (median["dask 1 worker"] - median["in-process"]) / n_tasks
    print(f"  overhead per task, Dask 1 worker vs in-process: {overhead * 1000:+.0f} ms on a {per_task:.2f} s task "
          f"= {overhead / per_task:+.1%} ({'under' if overhead / per_task < 0.05 else 'OVER'} the 5 % bar)")
    print(f"  round trip of a trivial task on the 1-worker cluster: {round_trip * 1000:.1f} ms "
          f"= {round_trip / per_task:.2%} of a task ({'under' if round_trip / per_task < 0.05 else 'OVER'} the 5 % bar)")
    print(f"  2 workers / 1 worker: {median['dask 1 worker'] / median['dask 2 workers']:.2f}x runs per minute")
    print(f"  2 workers with Dask's defaults (MALLOC_TRIM_THRESHOLD_=65536, 2 tasks a worker) / the study's local "
          f"cluster: {median['dask 2, defaults'] / median['dask 2 workers']:.2f}x the time")


if __name__ == "__main__":
    main()
