"""What the Identify page decides between reruns, kept out of the page so it can be tested and reused.

    model_choices   the models a user can pick: the shipped one, then every run with a best.pt
    ok_promise      what an "ok" answer promises (precision with its 95 % interval, coverage), from calibration
    teach           teach a model a language from clips and save it as a run, so the model list shows it
    latest_input    which of the inputs (an upload, a recording, a sample clip) to answer: the one that changed last
    unheard_clips   clips of the embedded sample whose speakers a model never heard: what "Try a clip" offers

Nothing here keeps audio: the page remembers only file ids (short strings) between reruns, and the
clips a user records to teach a language until they are saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core import runs
from core.errors import DeepLanguageError
from core.files import write_json
from core.identify.calibration import precision_lower_bound
from core.identify.card import DEFAULT_CHECKPOINT
from core.identify.kinds import PRETRAINED_KINDS
from core.paths import CHECKPOINTS_DIR, CV_SAMPLE_DIR

BASELINE_CHECKPOINT = CHECKPOINTS_DIR / "identify-gmm" / "best.pt"  # the from-scratch recipe, for comparison
CURVE_NAME = "learning_curve.json"  # beside a checkpoint: its recipe's curve (`python -m core evaluate --learning-curve`)

Z_95 = 1.959963984540054  # two-sided 95 %: the normal quantile at 0.975

SHIPPED = "Pretrained: Whisper base + head (shipped)"
BASELINE = "From scratch: GMM supervector (baseline)"


def model_choices(runs_dir: str | Path | None = None, default: Path = DEFAULT_CHECKPOINT) -> dict[str, str]:
    """Label -> checkpoint path: the shipped model (when present), then every run holding a best.pt, newest first.

    ``runs_dir`` defaults to :data:`core.runs.RUNS_DIR` as it is when called (tests and servers move it).
    """
    shipped = {SHIPPED: str(default)} if Path(default).exists() else {}
    if Path(default) == DEFAULT_CHECKPOINT and BASELINE_CHECKPOINT.exists():
        shipped[BASELINE] = str(BASELINE_CHECKPOINT)
    return shipped | {f"Run {run.name}": str(run / "best.pt") for run in runs.list_runs(runs_dir or runs.RUNS_DIR)
                      if (run / "best.pt").exists()}


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


def ok_promise(report: dict) -> dict:
    """What "ok" promises, from :func:`core.identify.evaluate.calibration_report`'s figures.

    ``{"precision", "low", "high", "coverage", "n_ok", "n_clips", "speakers"}``: of the clips calibration
    was measured on (each scored by a model that never heard its speaker), the fraction answered "ok"
    (``n_ok`` = coverage x clips) and the fraction of those right, with a 95 % Wilson interval over
    those clips (clips of one speaker are not independent, so it is somewhat optimistic).
    """
    n_clips = int(report["n_clips"])
    n_ok = round(report["ok_coverage"] * n_clips)
    precision = float(report["ok_precision"])
    right = round(precision * n_ok)
    # scipy.stats' binomtest(...).proportion_ci(method="wilson") gives the same; importing it took seconds of the page.
    low, high = ((precision_lower_bound(right, n_ok, Z_95), 1 - precision_lower_bound(n_ok - right, n_ok, Z_95))
                 if n_ok else (0.0, 1.0))
    return {"precision": precision, "low": float(low), "high": float(high), "coverage": float(report["ok_coverage"]),
            "n_ok": n_ok, "n_clips": n_clips, "speakers": int(report["speakers"])}


def teach(checkpoint: str | Path, name: str, language: str, clips: list, replace: bool = False,
          on_progress: Callable[..., None] | None = None, runs_dir: str | Path | None = None) -> dict:
    """Teach the model at ``checkpoint`` ``language`` from ``clips`` and save it as run ``name``, listed like any run.

    ``clips`` are paths or ``(name, bytes)`` pairs. Returns :func:`core.identify.enroll.enroll`'s report
    (``"out"`` is ``RUNS_DIR/<name>/best.pt``). A bad or taken name, a bad code, a known code without
    ``replace`` or too little speech raise DeepLanguageError before anything is written.
    """
    from core.identify.enroll import enroll  # torch: loaded when a user teaches, not when the page opens

    runs.check_name(name, "model name")
    folder = Path(runs_dir or runs.RUNS_DIR) / name
    if folder.exists():
        raise DeepLanguageError(f"a model or run named {name!r} already exists ({folder}); choose another name.")
    report = enroll(checkpoint, language, clips, folder / "best.pt", replace=replace, on_progress=on_progress)
    # config.json last: from then on the folder is a complete run that the model list shows.
    runs.set_status(folder, "finished")
    write_json(folder / "config.json", {
        "kind": "enroll", "from": str(checkpoint), "language": report["language"], "languages": report["languages"],
        "replaced": replace, "n_clips_used": report["n_used"], "n_clips_skipped": report["n_skipped"],
        "seconds_of_speech": report["seconds_of_speech"]})
    return report


def unheard_clips(data: dict, labels: list[str], data_dir: str | Path = CV_SAMPLE_DIR) -> pd.DataFrame:
    """Clips of ``data_dir`` in the model's ``labels`` whose speakers it never trained or validated on
    (``data`` is the checkpoint's ``data`` entry, which lists them): ``path, language, speaker, sentence``.
    Empty when the folder is missing or holds no such clip; the page then offers nothing to try."""
    from core.data.datasets import read_dataset

    try:
        manifest = read_dataset(data_dir, durations=False)
    except DeepLanguageError:
        return pd.DataFrame(columns=["path", "language", "speaker", "sentence"])
    heard = set(data.get("train_speakers", [])) | set(data.get("val_speakers", []))
    keep = manifest["language"].isin(labels) & ~manifest["speaker"].isin(heard)
    columns = [c for c in ("path", "language", "speaker", "sentence") if c in manifest]
    return manifest.loc[keep, columns].reset_index(drop=True)


def pick_clip(clips: pd.DataFrame, language: str | None, rng: np.random.Generator) -> dict:
    """One clip of ``clips`` (of ``language`` when given), at random, as a plain dict."""
    pool = clips if language is None else clips[clips["language"] == language]
    if pool.empty:
        raise DeepLanguageError(f"no clip of {language} from a speaker this model never heard in the sample.")
    return pool.iloc[int(rng.integers(len(pool)))].to_dict()


def learning_curves(checkpoint: str | Path, kind: str) -> tuple[Path, Path | None]:
    """Where the chosen model's own learning curve is (beside its checkpoint; it may not exist), and for a
    pretrained model the from-scratch baseline's, drawn with it to show what pretraining buys."""
    baseline = BASELINE_CHECKPOINT.parent / CURVE_NAME
    return Path(checkpoint).parent / CURVE_NAME, baseline if kind in PRETRAINED_KINDS and baseline.exists() else None


def describe(bundle) -> str:
    """One line on a model for the model list: pretrained or from scratch, languages, measured accuracy."""
    kind = bundle.checkpoint["model"]["kind"]
    encoder = bundle.checkpoint["model"]["config"].get("encoder", "base")
    origin = f"pretrained (Whisper {encoder})" if kind in PRETRAINED_KINDS else "from scratch"
    metrics = bundle.checkpoint.get("metrics") or {}
    accuracy = ""
    if metrics.get("test_accuracy") is not None:
        ci = metrics.get("test_accuracy_ci95")
        accuracy = f" · {metrics['test_accuracy']:.1%} on its test speakers" + (
            f" (95 % CI {ci[0]:.0%}-{ci[1]:.0%})" if ci else "")
    return f"{kind}, {origin} · {len(bundle.labels)} languages: {', '.join(bundle.labels)}{accuracy}"


def uncertain_reason(probabilities: dict[str, float], rule: dict) -> str:
    """Which part of the "ok" rule an uncertain answer failed, with its numbers; only the parts that apply."""
    ranked = sorted(probabilities.values(), reverse=True)
    top, lead = ranked[0], ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0)
    reasons = []
    if top < rule["min_probability"]:
        reasons.append(f"its top probability, {top:.0%}, is below {rule['min_probability']:.0%}")
    if rule["min_margin"] > 0 and lead < rule["min_margin"]:
        reasons.append(f"it leads the runner-up by {lead:.0%}, less than {rule['min_margin']:.0%}")
    return " and ".join(reasons) or "it does not pass the model's rule"


def verdict(result: dict, truth: str, languages: list[str]) -> str:
    """Whether an answer to a clip of known language ``truth`` is right; an uncertain one is called uncertain."""
    guess = result["best_guess"]
    outside = "" if truth in languages else ", which is not among the chosen languages"
    if result["status"] != "ok":
        return (f"The clip is {truth}{outside}: the model was uncertain, and its best guess, {guess}, "
                + ("was right." if guess == truth else "was wrong."))
    return f"Right: the clip is {truth}." if guess == truth else f"Wrong: the clip is {truth}{outside}; the model said {guess}."
