"""What the Identify page decides between reruns, kept out of the page so it can be tested and reused.

    model_choices   the models a user can pick: the shipped one, then every run with a best.pt
    trained_on      which data a model learnt from, and whether that speech was synthetic
    latest_input    which of two inputs (an upload, a recording) to answer: the one that changed last

Nothing here keeps audio: the page remembers only file ids (short strings) between reruns.
"""

from __future__ import annotations

from pathlib import Path

from core.data.demo_corpus import MARKER_NAME
from core.identify.predict import DEFAULT_CHECKPOINT, Identifier
from core.paths import DEMO_CORPUS_DIR
from core import runs

SHIPPED = "Shipped default model"


def model_choices(runs_dir: str | Path | None = None, default: Path = DEFAULT_CHECKPOINT) -> dict[str, str]:
    """Label -> checkpoint path: the shipped model (when present), then every run holding a best.pt, newest first.

    ``runs_dir`` defaults to :data:`core.runs.RUNS_DIR` as it is when called (tests and servers move it).
    """
    shipped = {SHIPPED: str(default)} if Path(default).exists() else {}
    return shipped | {f"Run {run.name}": str(run / "best.pt") for run in runs.list_runs(runs_dir or runs.RUNS_DIR)
                      if (run / "best.pt").exists()}


def trained_on(bundle: Identifier) -> dict:
    """``{"data": folder or None, "synthetic": bool}``: what the model heard in training.

    A checkpoint that records ``trained_on`` says so itself; for older ones the data folder is
    synthetic when it is (or was built as) the espeak demo corpus, whose builder leaves a marker file.
    """
    recorded = bundle.checkpoint.get("trained_on")
    if isinstance(recorded, dict) and "synthetic" in recorded:
        return {"data": recorded.get("data") or recorded.get("dir"), "synthetic": bool(recorded["synthetic"])}
    data = (bundle.checkpoint.get("data") or {}).get("dir") or (bundle.checkpoint.get("train_config") or {}
                                                                  ).get("data_dir")
    if not data:
        return {"data": None, "synthetic": False}
    folder = Path(data)
    synthetic = (folder / MARKER_NAME).exists() or _same_folder(folder, DEMO_CORPUS_DIR)
    return {"data": str(folder), "synthetic": synthetic}


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def latest_input(current: dict[str, str | None], seen: dict[str, str | None], answered: str | None
                 ) -> str | None:
    """Which input to answer, by name (e.g. ``"upload"``, ``"recording"``): the one whose file id changed last.

    ``current`` holds each input's file id now (None when empty), ``seen`` the ids at the previous
    rerun, ``answered`` the input answered then. A new or changed input wins; otherwise the
    previous answer stands while its input is still there; otherwise any input that is there.
    """
    changed = [key for key, file_id in current.items() if file_id is not None and file_id != seen.get(key)]
    if changed:
        return changed[-1]
    if answered is not None and current.get(answered) is not None:
        return answered
    return next((key for key, file_id in current.items() if file_id is not None), None)
