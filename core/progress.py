"""Progress for the CLI and for a run's progress.json: core reports through ``on_progress(done, total, **metrics)``
callbacks, :func:`tqdm_progress` turns one into tqdm bars, :class:`PhaseProgress` also writes it to a run folder.

A long job goes through phases (decoding and caching clips, statistics, the background model, fitting): each
reports ``phase="..."`` with its own ``done``/``total``, so each gets its own bar and its own ETA, never one
total that counts only the first phases.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from core.files import atomic_path

PROGRESS_EVERY_S = 1.0  # a run's progress.json is rewritten at most this often


@contextmanager
def tqdm_progress(description: str, unit: str = "it") -> Iterator[Callable[..., None]]:
    """tqdm bars fed by ``on_progress``: one per ``phase`` (a new bar, named after it, when the phase changes);
    drawn from the first report on, so a job that stops on bad input before doing anything prints its message
    alone."""
    from tqdm import tqdm

    bar, current = None, None

    def on_progress(done: int, total: int, phase: str | None = None, **metrics) -> None:
        nonlocal bar, current
        if bar is not None and phase != current:
            bar.close()
            bar = None
        if bar is None:
            bar, current = tqdm(desc=phase or description, unit=unit, total=total, dynamic_ncols=True), phase
        bar.total = total
        if metrics:
            bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in metrics.items()},
                            refresh=False)
        bar.update(done - bar.n)  # tqdm redraws at most every mininterval

    try:
        yield on_progress
    finally:
        if bar is not None:
            bar.close()


class PhaseProgress:
    """An ``on_progress`` that forwards each report and keeps ``<run_dir>/progress.json`` up to date as it goes.

    progress.json holds the phase's name, ``done``/``total`` in it, ``phase_seconds`` spent in it so far (what
    its ETA is measured from), ``phase_index`` (phases started, from 1) and the live metrics. Rewritten at most
    every :data:`PROGRESS_EVERY_S`, and always when a phase starts or ends, so a page never shows a phase
    that has finished as running.
    """

    def __init__(self, run_dir: Path | None, forward: Callable[..., None] | None = None):
        self.run_dir, self.forward = (Path(run_dir) if run_dir else None), forward
        self.phase, self.phase_index, self.phase_started, self.written = None, 0, time.perf_counter(), 0.0

    def __call__(self, done: int, total: int, phase: str | None = None, **metrics) -> None:
        now = time.perf_counter()
        changed = phase != self.phase
        if changed:
            self.phase, self.phase_index, self.phase_started = phase, self.phase_index + 1, now
        if self.run_dir is not None and (changed or done >= total or now - self.written >= PROGRESS_EVERY_S):
            self.written = now
            record = {**metrics, "done": int(done), "total": int(total)}
            if phase:
                record.update(phase=phase, phase_index=self.phase_index, phase_seconds=now - self.phase_started)
            with atomic_path(self.run_dir / "progress.json") as tmp:
                tmp.write_text(json.dumps(record))
        if self.forward:
            self.forward(done, total, phase=phase, **metrics) if phase else self.forward(done, total, **metrics)


def phase_eta(progress: dict) -> float | None:
    """Seconds left in a progress.json's phase at its measured pace; None before its first step is done."""
    done, total, seconds = progress.get("done", 0), progress.get("total", 0), progress.get("phase_seconds")
    if not progress.get("phase") or not seconds or not done or done >= total:
        return None
    return seconds / done * (total - done)


def in_phase(on_progress: Callable[..., None] | None, phase: str) -> Callable[..., None]:
    """``on_progress`` with ``phase=`` set (a no-op without one): each phase of a job gets its own bar and total."""
    def report(done: int, total: int, **metrics) -> None:
        if on_progress:
            on_progress(done, total, **{**metrics, "phase": phase})
    return report
