"""Progress for the CLI: core reports through ``on_progress(done, total, **metrics)`` callbacks,
and this turns one into a tqdm bar. The UI turns the same callback into ``st.progress``."""

from contextlib import contextmanager
from typing import Callable, Iterator

PROGRESS_EVERY_S = 1.0  # a run's progress.json is rewritten at most this often


@contextmanager
def tqdm_progress(description: str, unit: str = "it") -> Iterator[Callable[..., None]]:
    """A tqdm bar fed by ``on_progress``; drawn from the first report on, so a job that stops on bad input
    before doing anything prints its message alone."""
    from tqdm import tqdm

    bar = None

    def on_progress(done: int, total: int, **metrics) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(desc=description, unit=unit, total=total, dynamic_ncols=True)
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


def in_phase(on_progress: Callable[..., None] | None, phase: str) -> Callable[..., None]:
    """``on_progress`` with ``phase=`` set (a no-op without one): each phase of a job gets its own bar and total."""
    def report(done: int, total: int, **metrics) -> None:
        if on_progress:
            on_progress(done, total, **{**metrics, "phase": phase})
    return report
