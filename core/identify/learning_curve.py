"""How much speech per language a recipe needs: accuracy against minutes of training speech.

:func:`learning_curve` runs a speaker-grouped k-fold CV of a training recipe (a :class:`TrainConfig`)
once per budget: each fold's model learns from at most ``m`` minutes of each language (whole clips, taken
in a seeded random order of speakers, so a small budget means few speakers, as it would for a user) and
is scored on the fold's held-out speakers, always all of them. The UBM of each fold learns from all of the fold's training speech (unlabelled);
the budget limits the labelled speech the backend learns from. A power law fitted to the error,
``error = b * minutes ** -c``, is extrapolated to the minutes per language that would reach 80 % (and 40 % and 60 %, the identifier's
targets for 12 and 6 languages). With ``languages``, the same answers are also scored renormalised over a
subset of the languages, as ``identify --languages`` answers, on that subset's clips: its own curve and law.

The result (also ``checkpoints/identify-gmm/learning_curve.json``, which the Identify page charts)::

    {"minutes": [...], "accuracy": [...], "ci_low": [...], "ci_high": [...], "n_speakers_train": [...],
     "power_law": {"form", "b", "c"}, "minutes_for_80": float | None, "minutes_for": {"0.4", "0.6", "0.8"},
     "chance": float, "languages": [...], "n_folds", "n_clips", "n_speakers", "data_dir", "command",
     "restricted": {"languages", "n_clips", "minutes", "accuracy", "ci_low", "ci_high", "power_law",
                    "minutes_for", "chance"}}   # only with ``languages``
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from core.errors import DeepLanguageError, UsageError
from core.files import write_json
from core.identify.clips import evaluate_clips, load_clips
from core.identify.metrics import bootstrap_ci
from core.identify.card import load_learning_curve  # noqa: F401  (the Identify page reads curves without torch)
from core.identify.predict import check_languages
from core.identify.gmm import clip_units, fit_backend, fit_ubm, new_model, write_supervectors
from core.paths import default_cache_dir

MINUTES = (0.5, 1.0, 2.0, 3.0, 4.0, None)  # per language; None = all the fold's training speech
TARGET_ACCURACY = 0.8
EXTRAPOLATED_TO = (0.4, 0.6, 0.8)  # the targets for 12 and 6 languages, and the 80 % the page draws


def budget_rows(manifest, rows: np.ndarray, minutes: float | None, seed: int) -> np.ndarray:
    """The subset of ``rows`` holding at most ``minutes`` of each language (at least one clip each).

    Speakers are shuffled (seeded) and their clips taken whole, speaker after speaker, until the budget is spent.
    """
    if minutes is None:
        return rows
    part = manifest.iloc[rows]
    rng = np.random.default_rng(seed)
    speakers = part["speaker"].unique()
    order = {s: i for i, s in enumerate(rng.permutation(speakers))}
    chosen = []
    for _, group in part.groupby("language"):
        group = group.assign(order=group["speaker"].map(order)).sort_values(["order", "duration"])
        spent = group["duration"].cumsum().to_numpy()
        n = max(1, int(np.searchsorted(spent, minutes * 60.0, side="right")))
        chosen.extend(group.index[:n])
    return np.array(sorted(manifest.index.get_indexer(chosen)))


def fit_power_law(minutes: Sequence[float], accuracy: Sequence[float]) -> dict:
    """Least squares of log(error) on log(minutes): ``error = b * minutes ** -c``."""
    m, error = np.asarray(minutes, float), 1.0 - np.asarray(accuracy, float)
    keep = (m > 0) & (error > 0)
    if keep.sum() < 2:
        return {"form": "error = b * minutes ** -c", "b": None, "c": None}
    slope, intercept = np.polyfit(np.log(m[keep]), np.log(error[keep]), 1)
    return {"form": "error = b * minutes ** -c", "b": float(math.exp(intercept)), "c": float(-slope)}


def minutes_for(accuracy: float, law: dict) -> float | None:
    """Minutes per language at which the power law reaches ``accuracy``; None when it never does (c <= 0)."""
    if law.get("c") is None or law["c"] <= 0:
        return None
    return float((law["b"] / (1.0 - accuracy)) ** (1.0 / law["c"]))


def scored_curve(minutes: Sequence[float], correct: Sequence[np.ndarray], speakers: np.ndarray,
                 chance: float) -> dict:
    """Accuracy, speaker-bootstrap CI, power law and extrapolations of one curve (``correct``: one boolean
    array per budget, over the same clips)."""
    low_high = [bootstrap_ci(c, speakers) for c in correct]
    accuracy = [float(c.mean()) for c in correct]
    law = fit_power_law(minutes, accuracy)
    return {"minutes": [float(m) for m in minutes], "accuracy": accuracy, "ci_low": [lo for lo, _ in low_high],
            "ci_high": [hi for _, hi in low_high], "power_law": law,
            "minutes_for": {str(a): minutes_for(a, law) for a in EXTRAPOLATED_TO}, "chance": chance}


def fold_supervectors(config, clips, model, train_part: np.ndarray, folder: Path,
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit the fold's UBM on its training clips, then write their supervectors and their augmented copies'.

    They go to a float16 store in ``folder`` (:func:`write_supervectors`: a chunk of clips in RAM at a time).
    Returns its memory map ``(n, embedding_dim)`` and the row of ``clips`` each supervector belongs to ``(n,)``:
    a clip's copies follow it into (or out of) every budget.
    """
    units = clip_units(config, clips, train_part)  # the clean clips, then their copies, in train_part's order
    fit_ubm(model, [unit.load for unit in units[: len(train_part)]], seed)
    store = write_supervectors(model, units, config, folder)
    return store.rows(), np.repeat(np.tile(train_part, len(units) // len(train_part)), store.counts)


def learning_curve(config, minutes: Sequence[float | None] = MINUTES, n_folds: int = 3,
                   on_progress: Callable[..., None] | None = None, languages: Sequence[str] | None = None) -> dict:
    """Speaker-grouped ``n_folds`` CV of ``config`` (a gmm-supervector TrainConfig) at each budget of minutes.

    Per fold, the UBM is fitted once on the fold's whole training part (it learns from unlabelled frames, and
    unlabelled speech is never what is scarce); each budget then fits the backend on its labelled clips
    only, and the model is scored on the fold's held-out speakers exactly as identify answers. ``languages``
    adds the curve of the answers renormalised over those languages, on their clips (``restricted``).

    Bounded memory: each fold's supervectors are on disk (:func:`fold_supervectors`), in a temporary folder of
    the dataset's cache removed when the curve is done or interrupted, and each budget's backend reads its rows.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if n_folds < 2:
        raise DeepLanguageError("a learning curve needs at least 2 folds.")
    if config.model != "gmm-supervector":
        raise DeepLanguageError(f"the learning curve runs the gmm-supervector recipe, not {config.model!r}.")
    if new_model(config, 2).config.augment and new_model(config, 2).config.fit_on != "clips":
        raise DeepLanguageError("the learning curve augments only recipes fitted on whole clips (fit_on: clips).")
    clips = load_clips(replace(config, split_fractions=(0.85, 0.15, 0.0)), in_ram=False)  # folds: test speakers
    manifest, targets = clips.manifest, clips.targets.numpy()
    folds = list(StratifiedGroupKFold(n_folds, shuffle=True, random_state=config.split_seed)
                 .split(manifest, manifest["language"], manifest["speaker"]))
    if languages is not None:
        try:
            check_languages(list(languages), list(clips.labels))
        except DeepLanguageError as error:
            raise UsageError(f"--languages: {error}") from None
    probabilities = {i: np.zeros((len(manifest), len(clips.labels))) for i in range(len(minutes))}
    used = {i: [] for i in range(len(minutes))}
    total, done = n_folds * (len(minutes) + 1), 0
    # The cache is on the dataset's disk; the system's temporary folder may be RAM (tmpfs).
    cache = Path(config.cache_dir or default_cache_dir(config.data_dir))
    with tempfile.TemporaryDirectory(prefix="learning-curve-", dir=cache) as work:
        for fold, (train_part, test_part) in enumerate(folds):
            model = new_model(replace(config, seed=config.seed + fold), len(clips.labels))
            folder = Path(work) / f"fold{fold}"
            x, owner = fold_supervectors(config, clips, model, train_part, folder, config.seed + fold)
            done += 1
            for b, budget in enumerate(minutes):
                rows = budget_rows(manifest, train_part, budget, config.seed + fold)
                keep = np.flatnonzero(np.isin(owner, rows))
                fit_backend(model, config.class_weights, x, targets[owner], len(clips.labels), rows=keep)
                model.eval()
                result = evaluate_clips(model, clips, torch.from_numpy(test_part), config, return_predictions=True)
                probabilities[b][test_part] = result["probabilities"]
                part = manifest.iloc[rows]
                used[b].append((part["duration"].sum() / 60.0 / part["language"].nunique(),
                                part["speaker"].nunique()))
                done += 1
                if on_progress:
                    on_progress(done, total, fold=fold + 1, minutes=budget or "all", accuracy=result["accuracy"])
            del x
            shutil.rmtree(folder)  # a fold's store is the size of its clips' supervectors: one on disk at a time
    spent = [float(np.mean([u[0] for u in used[b]])) for b in range(len(minutes))]
    speakers = manifest["speaker"].to_numpy()
    curve = scored_curve(spent, [p.argmax(1) == targets for p in probabilities.values()], speakers,
                         1.0 / len(clips.labels))
    curve.update(n_speakers_train=[float(np.mean([u[1] for u in used[b]])) for b in range(len(minutes))],
                 budget=list(minutes), minutes_for_80=curve["minutes_for"][str(TARGET_ACCURACY)],
                 languages=list(clips.labels), n_folds=n_folds, n_clips=int(len(manifest)),
                 n_speakers=int(manifest["speaker"].nunique()),
                 ubm="fitted per fold on all of the fold's training speech; budgets limit the labelled speech")
    if languages is not None:
        columns = [list(clips.labels).index(code) for code in languages]
        inside = np.isin(targets, columns)
        answers = [np.asarray(columns)[p[inside][:, columns].argmax(1)] for p in probabilities.values()]
        curve["restricted"] = {"languages": list(languages), "n_clips": int(inside.sum()),
                               **scored_curve(spent, [a == targets[inside] for a in answers], speakers[inside],
                                              1.0 / len(columns))}
    return curve


def save_learning_curve(curve: dict, path: str | Path) -> Path:
    write_json(Path(path), curve)
    return Path(path)
