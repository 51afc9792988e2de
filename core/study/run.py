"""Running a study: its runs in parallel, then latents and probes."""


from __future__ import annotations

import itertools
import os
import time
import uuid
from pathlib import Path
from typing import Callable


from core import progress, runs
from core.errors import DeepLanguageError
from core.study import cluster
from core.study.layout import (AE, NONE, StudyConfig, load_study, parse_run_name,
                               pretrain_name, resolve, study_runs)
from core.study.plan import plan_study
from core.study.trainer import pretrain_group, train_autoencoder, train_group
from core.study.latents import extract_identify_latents
from core.study.similarity import store_whisper_similarity
from core.study.probes import N_PERMUTATIONS, probe_study
from core.study.report import study_summary

def run_study(
    config: StudyConfig,
    data_dir: str | Path,
    study_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    probe: bool = True,
    n_permutations: int | None = None,
    on_progress: Callable[..., None] | None = None,
    manifest=None,
) -> Path:
    """Plan, pretrain, train every unfinished run (groups in parallel, one core each), probe.

    Jobs go to the Dask scheduler at ``scheduler``, else to a local Dask cluster of ``workers``
    processes (default: one per core), else, for one worker, run in this process (core.study.cluster).
    Resumable: a finished pretraining or run is never redone; an interrupted one is. The study's
    status turns "finished" only once its probes are written. ``on_progress(done, total,
    finished=, failed=, workers=)`` counts runs finished (pretrainings count as runs of the training phase);
    the other phases report with ``phase=`` ("features": clips prepared, "latents", "probes": runs probed).
    ``manifest``: the dataset as the caller already read it (read_dataset), so it is not read again.
    """
    study_dir = plan_study(config, data_dir, study_dir, cache_dir=cache_dir, workers=workers, manifest=manifest,
                           on_progress=progress.in_phase(on_progress, "features"))
    with runs.lifecycle(study_dir, what="study") as outcome:
        _train_all(study_dir, workers, scheduler, on_progress)
        _set_phase(study_dir, "latents")
        latents_progress = progress.in_phase(on_progress, "latents")
        latents_progress(0, 1)
        extract_identify_latents(study_dir)  # the language identifier's embedding, when one exists
        store_whisper_similarity(study_dir)  # the pretrained encoder's similarity of the study's languages
        latents_progress(1, 1)
        if probe:
            _set_phase(study_dir, "probes")
            probe_study(study_dir, n_permutations or N_PERMUTATIONS, on_progress=_probe_progress(study_dir, on_progress))
            study_summary(study_dir)  # its cache (report_summary.json): the pages open on it
        failed = [p.name for p in study_runs(study_dir) if runs.run_status(p)["state"] != "finished"]
        _set_phase(study_dir, "finished")
        if failed:
            outcome.update(state="failed", error=f"runs failed: {', '.join(failed)}")
    return study_dir


def _probe_progress(study_dir: Path, on_progress: Callable[..., None] | None) -> Callable[..., None]:
    """Probing is minutes of a big study: its count goes to progress.json (the page) and the caller."""
    last = [0.0]

    def report(done: int, total: int) -> None:
        if time.time() - last[0] > progress.PROGRESS_EVERY_S or done == total:
            last[0] = time.time()
            runs.write_json(study_dir / "progress.json", {"phase": "probes", "done": done, "total": total,
                                                          "time": time.time()})
        if on_progress:
            on_progress(done, total, phase="probes")
    return report


def _set_phase(study_dir: Path, phase: str) -> None:
    progress_now = runs.read_json(study_dir / "progress.json", {})
    runs.write_json(study_dir / "progress.json", {**progress_now, "phase": phase, "time": time.time()})


def chunks(items: list, size: int, workers: int) -> list[list]:
    """``items`` in near-equal chunks of at most ``size``, their count a multiple of ``workers``
    where there are enough items (so no worker idles while another finishes a big chunk)."""
    if not items:
        return []
    n = -(-len(items) // size)
    n = min(len(items), -(-n // workers) * workers)
    return [items[i * len(items) // n:(i + 1) * len(items) // n] for i in range(n)]


def plan_jobs(study_dir: Path, workers: int = 1) -> tuple[list[tuple[str, list]], list[tuple[str, list]]]:
    """The unfinished work in two phases. First the pretrainings (lists of (condition, seed)), the
    autoencoders and the "none" runs, which need no pretraining; then every other run (lists of
    run names of one target). Groups hold at most ``group_size`` members."""
    config: StudyConfig = load_study(study_dir)["config"]
    todo = [p.name for p in study_runs(study_dir) if runs.run_status(p)["state"] != "finished"]
    specs = {name: parse_run_name(name) for name in todo}
    # Condition by condition: a group holds the clips of the conditions it pretrains, so seeds of one condition
    # together hold one list where seeds side by side held one per condition.
    needed = sorted({(s["pretrain"], s["seed"]) for s in specs.values()
                     if s["kind"] == "lstm" and s["pretrain"] != NONE
                     and not all((study_dir / "pretrain" / pretrain_name(s["pretrain"], s["seed"], e)).exists()
                                 for e in config.pretrain_epochs if e > 0)})
    first = [("pretrain", chunk) for chunk in chunks(needed, config.group_size, workers)]
    # The autoencoders are the longest jobs and need no pretraining: started early, they don't
    # leave one worker busy while the other idles at the end (longest jobs first).
    first += [("ae", [n]) for n, s in specs.items() if s["kind"] == AE]
    second = []
    for target in config.targets:
        # Seed by seed, conditions interleaved: a group holds whole seeds where it can.
        names = sorted((n for n, s in specs.items() if s["kind"] == "lstm" and s["target"] == target),
                       key=lambda n: (specs[n]["seed"], n))
        first += [("train", c) for c in chunks([n for n in names if specs[n]["pretrain"] == NONE],
                                                config.group_size, 1)]
        second += [("train", c) for c in chunks([n for n in names if specs[n]["pretrain"] != NONE],
                                                 config.group_size, workers)]
    return first, second


def run_job(study_dir: Path, kind: str, items: list) -> str:
    """One job of a study, wherever it runs (this process or a Dask worker): its files go to the
    study folder. Returns who ran it (host:pid), for the per-worker progress."""
    import socket

    import torch

    torch.set_num_threads(1)  # one job per core: more threads would only fight over it
    if kind == "pretrain":
        pretrain_group(study_dir, items)
    elif kind == "train":
        train_group(study_dir, items)
    else:
        train_autoencoder(study_dir / "runs" / items[0])
    return f"{socket.gethostname()}:{os.getpid()}"


def _needs(kind: str, items: list, pending_pretrain: set) -> set:
    """The (condition, seed) pretrainings a job waits for: those of its runs not yet on disk."""
    if kind != "train":
        return set()
    specs = [parse_run_name(name) for name in items]
    return {(s["pretrain"], s["seed"]) for s in specs} & pending_pretrain


class _Tally:
    """Jobs finished and failed, per worker too; written to progress.json (the page) and ``on_progress``."""

    def __init__(self, study_dir: Path, first: list, on_progress: Callable[..., None] | None):
        self.study_dir, self.on_progress = study_dir, on_progress
        self.pending_pretrain = {item for kind, items in first if kind == "pretrain" for item in items}
        self.total = len(study_runs(study_dir)) + sum(kind == "pretrain" for kind, _ in first)
        # Counted from the jobs as they end, not by reading every run's status again.
        self.finished = sum(runs.run_status(p)["state"] == "finished" for p in study_runs(study_dir))
        self.finished_pretrain, self.failures, self.per_worker = 0, [], {}

    def record(self, kind: str, items: list, worker: str | None, error: BaseException | None) -> None:
        if error is not None:
            self.failures.append(f"{kind} {items}: {error}")
        elif kind == "pretrain":
            self.finished_pretrain += 1
            self.pending_pretrain -= set(items)
        else:
            self.finished += len(items)
        if worker:
            self.per_worker[worker] = self.per_worker.get(worker, 0) + (1 if kind == "pretrain" else len(items))
        self.report()

    def report(self) -> None:
        done = self.finished + self.finished_pretrain
        runs.write_json(self.study_dir / "progress.json", {
            "phase": "training", "done": done, "total": self.total, "failed": self.failures,
            "workers": self.per_worker, "time": time.time()})
        if self.on_progress:
            self.on_progress(done, self.total, finished=self.finished, failed=len(self.failures),
                             workers=len(self.per_worker))


def _train_all(study_dir: Path, workers: int | None, scheduler: str | None,
               on_progress: Callable[..., None] | None) -> None:
    """Every unfinished job, on Dask workers (core.study.cluster) or in this process; a group starts
    as soon as the pretrainings it starts from are on disk (no barrier between the phases)."""
    with cluster.session(scheduler, workers) as client:
        if client is not None:
            config = load_study(study_dir)
            cluster.check_workers(client, [study_dir, resolve(config["data_dir"]), resolve(config["cache_dir"])])
        first, second = plan_jobs(study_dir, cluster.n_workers(client))
        tally = _Tally(study_dir, first, on_progress)
        tally.report()
        if client is None:
            for kind, items in first + second:  # in order: pretrainings come before the runs they start
                if _needs(kind, items, tally.pending_pretrain):
                    continue  # its pretraining failed
                try:
                    tally.record(kind, items, run_job(study_dir, kind, items), None)
                except Exception as error:  # the run's status says why; the others go on
                    tally.record(kind, items, None, error)
        else:
            _train_on_dask(client, study_dir, first + second, tally)
    if tally.failures:
        raise DeepLanguageError("some runs failed: " + "; ".join(tally.failures)
                                + ". Run the same command again to retry them.")


def _train_on_dask(client, study_dir: Path, waiting: list, tally: _Tally) -> None:
    from distributed import as_completed

    # Keys unique to this invocation (two studies may share run names), and named by the job's kind alone: Dask
    # groups tasks by that name, so it learns how long a kind of job takes and hands jobs out as workers free up
    # (a key per run's names made each task its own group, which it timed at a default 0.5 s).
    token, numbers = uuid.uuid4().hex[:8], itertools.count()
    jobs, arrived = {}, as_completed()

    def submit_ready() -> None:
        for kind, items in [job for job in waiting if not _needs(*job, tally.pending_pretrain)]:
            waiting.remove((kind, items))
            key = (f"{kind}-{token}", next(numbers))
            future = client.submit(run_job, study_dir, kind, items, key=key, pure=False)
            jobs[future.key] = (kind, items)
            arrived.add(future)

    submit_ready()
    for future in arrived:  # runs finish in any order; each one may free the groups waiting for it
        kind, items = jobs.pop(future.key)
        error = future.exception() if future.status == "error" else None
        tally.record(kind, items, None if error else future.result(), error)
        submit_ready()
