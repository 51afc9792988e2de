"""Honest figures for a language identifier: always on speakers the model never heard.

* :func:`evaluate_checkpoint` scores a trained checkpoint on a dataset, dropping every clip
  of a speaker the checkpoint trained or validated on (stored in the checkpoint), so on its
  own dataset it scores exactly its held-out test speakers.
* :func:`cross_validate` scores a training *recipe*: speaker-grouped k-fold CV
  (``StratifiedGroupKFold`` on the ``speaker`` column), one model per fold with early
  stopping on a speaker-disjoint slice of the fold's training part, and a 95% CI from a
  bootstrap over speakers of the pooled out-of-fold predictions.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from core.errors import DeepLanguageError
from core.progress import in_phase
from core.data.cache import FeatureCache, prepared_dataset
from core.data.datasets import assign_splits
from core.audio.features import FeatureConfig
from core.identify.calibration import reliability
from core.identify.card import calibration_report  # noqa: F401  (callers import it from here)
from core.identify.predict import Identifier, calibrate, load_identifier
from core.identify.models import clip_windows, input_normalization, predict_batches, predict_whole_clip, scores_whole_clip
from core.paths import default_cache_dir, resolve
from core.identify.models import build_model
from core.identify.clips import evaluate_clips, load_clips
from core.identify.train import fit
from core.data.datasets import read_dataset
from core.identify.embeddings import EmbeddingCache
from core.identify.pretrained import KINDS as PRETRAINED_KINDS, encoder_of
from core.identify.pretrained_fit import cross_validate as cross_validate_pretrained, predict_rows
from core.identify.metrics import bootstrap_ci, classification_report  # noqa: F401  (callers import them from here)

def evaluate_checkpoint(checkpoint_path: str | Path, data_dir: str | Path, split: str = "test",
                        on_progress: Callable[..., None] | None = None) -> dict:
    """Score a checkpoint on a dataset's clips from speakers it never heard.

    ``split="test"``: the checkpoint's own held-out split (re-derived from its split seed) when
    ``data_dir`` is its training dataset, else every clip; ``"all"``: every clip. In both cases
    clips of speakers in the checkpoint's training or validation data are dropped.
    Only the checkpoint's languages are scored.
    """

    if split not in ("test", "all"):
        raise DeepLanguageError(f"unknown split {split!r}; choose test or all.")
    bundle = load_identifier(checkpoint_path)
    data = bundle.checkpoint.get("data", {})
    pretrained = getattr(bundle.model, "pretrained_encoder", False)
    if pretrained:  # cached Whisper rows, not log-mels
        reading = in_phase(on_progress, "reading the dataset")
        reading(0, 1)
        manifest = read_dataset(data_dir)
        reading(1, 1)
    else:  # reads the dataset, then reports the clips it prepares

        manifest = prepared_dataset(data_dir, None, bundle.features, on_progress=in_phase(on_progress, "features"))
    manifest = manifest[manifest["language"].isin(bundle.labels)]
    min_seconds = bundle.checkpoint.get("train_config", {}).get("min_seconds", 0.0)
    manifest = manifest[~(manifest["duration"] < min_seconds)].reset_index(drop=True)
    same_data = bool(data.get("dir")) and resolve(data["dir"]) == Path(data_dir).resolve()  # stored portable
    if split == "test" and same_data:
        manifest = assign_splits(manifest, tuple(data["split_fractions"]), seed=data["split_seed"])
        manifest = manifest[manifest["split"] == "test"]
    seen = set(data.get("train_speakers", [])) | set(data.get("val_speakers", []))
    n_seen = int(manifest["speaker"].isin(seen).sum())
    manifest = manifest[~manifest["speaker"].isin(seen)].reset_index(drop=True)
    if manifest.empty:
        raise DeepLanguageError(
            f"{data_dir} has no clips of {', '.join(bundle.labels)} from speakers the model never heard; "
            f"nothing can be scored honestly.")
    index = {label: i for i, label in enumerate(bundle.labels)}
    if pretrained:
        cache = EmbeddingCache(default_cache_dir(data_dir), encoder_of(bundle.model))
        manifest, probabilities = score_rows(bundle.model, manifest, cache, on_progress)
    else:
        probabilities = score_clips(bundle, manifest, default_cache_dir(data_dir), in_phase(on_progress, "scoring"))
    targets = manifest["language"].map(index).to_numpy()
    reporting = in_phase(on_progress, "report (bootstrap over speakers)")
    reporting(0, 1)
    report = classification_report(targets, probabilities.argmax(1), bundle.labels, manifest["speaker"].to_numpy())
    reporting(1, 1)
    report.update(checkpoint=str(checkpoint_path), data=str(data_dir), split=split,
                  dropped_seen_speaker_clips=n_seen, calibration=test_calibration(bundle, probabilities, targets))
    return report


SCORE_CHUNK = 4096  # cached Whisper rows held at once while scoring (4.6 MB): never the whole dataset's


def score_rows(model, manifest: pd.DataFrame, cache: EmbeddingCache,
               on_progress: Callable[..., None] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """A pretrained identifier's uncalibrated probabilities of the manifest's clips, from the cached Whisper rows
    (clips the cache lacks are encoded first), ``SCORE_CHUNK`` rows at a time. Clips that could not be decoded
    are dropped (counted in ``attrs["failed"]``). Returns the kept manifest and ``(n_kept, n_labels)``."""
    paths = manifest["path"].tolist()
    cache.encode_missing(paths, in_phase(on_progress, "encoding"))
    scoring = in_phase(on_progress, "scoring")
    kept, parts = [], []
    for start in range(0, len(paths), SCORE_CHUNK):
        rows = cache.rows(paths[start:start + SCORE_CHUNK])
        ok = ~np.isnan(rows).any(1)
        kept.append(ok)
        parts.append(predict_rows(model, rows[ok]))
        scoring(start + len(rows), len(paths))
    ok = np.concatenate(kept)  # the manifest is never empty here (evaluate_checkpoint refuses that first)
    scored = manifest[ok].reset_index(drop=True)
    scored.attrs.update(manifest.attrs, failed=int((~ok).sum()))
    return scored, np.concatenate(parts)


def score_clips(bundle: Identifier, manifest: pd.DataFrame, cache_dir: Path,
                on_progress: Callable[..., None]) -> np.ndarray:
    """Uncalibrated probabilities ``(n_clips, n_labels)`` of the manifest's cached log-mels, counted as they go."""
    cache = FeatureCache(cache_dir, FeatureConfig.from_dict(bundle.checkpoint["features"]))
    rows = []
    for done, key in enumerate(manifest["key"], 1):
        rows.append(clip_probabilities(bundle, torch.from_numpy(cache.load(key, normalize=False))))
        on_progress(done, len(manifest))
    return np.stack(rows)


def clip_probabilities(bundle: Identifier, clip: torch.Tensor) -> np.ndarray:
    """Uncalibrated probabilities ``(n_labels,)`` of one raw log-mel clip ``(n_mels, n_frames)``, as identify answers.

    A copy, not a view of torch's tensor: kept for every clip of a dataset, each view pinned its tensor's block in
    the heap above the clip's freed temporaries, and the process grew by 50 kB a clip (bench/scale.py, evaluate)."""
    if scores_whole_clip(bundle.model, clip.shape[1], bundle.features.frames_per_second):
        return predict_whole_clip(bundle.model, clip).numpy().copy()
    _, windows = clip_windows(clip, bundle.window, bundle.hop, input_normalization(bundle.model))
    return predict_batches(bundle.model, windows).mean(0).numpy().copy()


def test_calibration(bundle: Identifier, probabilities: np.ndarray, targets: np.ndarray) -> dict:
    """ECE before/after the checkpoint's temperature, reliability bins, and the "ok" rule's figures, on these clips."""
    from core.identify.calibration import ok_mask

    calibrated = calibrate(torch.from_numpy(probabilities), bundle.temperature).numpy()
    ece_before, bins_before = reliability(probabilities, targets)
    ece_after, bins = reliability(calibrated, targets)
    answered = ok_mask(calibrated, bundle.ok_rule["min_probability"], bundle.ok_rule["min_margin"])
    correct = calibrated.argmax(1) == targets
    return {"temperature": bundle.temperature, "ece_before": ece_before, "ece_after": ece_after, "bins": bins,
            "bins_before": bins_before, "ok_rule": bundle.ok_rule,
            "ok_precision": float(correct[answered].mean()) if answered.any() else None,
            "ok_coverage": float(answered.mean()), "n_clips": int(len(targets))}


def cross_validate(config, n_folds: int = 5, on_progress: Callable[..., None] | None = None,
                   on_fold: Callable[[int, dict], None] | None = None) -> dict:
    """Speaker-grouped k-fold CV of a training recipe (a :class:`core.train.TrainConfig`).

    Each fold trains a model on the other folds' speakers (its early stopping uses a
    speaker-disjoint 15% of them) and predicts the fold's clips. Returns the pooled
    out-of-fold report (accuracy, CI over speakers, recall, confusion), per-fold accuracies
    and their mean with a t-interval.
    """
    from scipy import stats
    from sklearn.model_selection import StratifiedGroupKFold


    if n_folds < 2:
        raise DeepLanguageError("cross-validation needs at least 2 folds.")
    if config.model in PRETRAINED_KINDS:
        return cross_validate_pretrained(config, n_folds, on_progress)
    # One split into train/validation only; the folds provide the test speakers.
    clips = load_clips(replace(config, split_fractions=(0.85, 0.15, 0.0)))
    manifest = clips.manifest
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=config.split_seed)
    predicted = np.full(len(manifest), -1)
    fold_accuracies = []
    for fold, (train_part, test_part) in enumerate(folds.split(manifest, manifest["language"], manifest["speaker"])):
        inner = _inner_split(manifest.iloc[train_part], config.split_seed + fold)
        train_rows = torch.from_numpy(train_part[inner == "train"])
        val_rows = torch.from_numpy(train_part[inner == "validation"])

        def fold_progress(done, total, **metrics):
            if on_progress:
                on_progress(fold * total + done, n_folds * total, fold=fold + 1, **metrics)

        best = fit(replace(config, seed=config.seed + fold), clips, train_rows, val_rows, None, fold_progress)
        model = build_model(best["model"]["kind"], best["model"]["config"])
        model.load_state_dict(best["state_dict"])
        test_rows = torch.from_numpy(test_part)
        result = evaluate_clips(model, clips, test_rows, config, return_predictions=True)
        predicted[test_part] = result["predicted"]
        fold_accuracies.append(result["accuracy"])
        if on_fold:
            on_fold(fold, {"accuracy": result["accuracy"], "best_epoch": best["best"]["epoch"],
                           "n_test": len(test_part)})
    report = classification_report(clips.targets.numpy(), predicted, clips.labels, manifest["speaker"].to_numpy())
    mean = float(np.mean(fold_accuracies))
    half = float(stats.t.ppf(0.975, n_folds - 1) * np.std(fold_accuracies, ddof=1) / math.sqrt(n_folds))
    report.update(n_folds=n_folds, fold_accuracies=fold_accuracies, fold_mean=mean,
                  fold_mean_ci95=[mean - half, mean + half])
    return report


def _inner_split(manifest: pd.DataFrame, seed: int) -> np.ndarray:

    return assign_splits(manifest.reset_index(drop=True), (0.85, 0.15, 0.0), seed=seed)["split"].to_numpy()


def format_report(report: dict) -> str:
    """A few readable lines: headline figures, per-language recall, confusion matrix."""
    lines = [f"accuracy {report['accuracy']:.1%}"
             + (f" (95% CI {report['accuracy_ci95'][0]:.1%}-{report['accuracy_ci95'][1]:.1%} over "
                f"{report['n_speakers']} speakers)" if "accuracy_ci95" in report else "")
             + f", balanced {report['balanced_accuracy']:.1%}, chance {report['chance']:.1%}, "
               f"{report['n_clips']} clips"]
    if "fold_accuracies" in report:
        lines.append("folds: " + " ".join(f"{a:.1%}" for a in report["fold_accuracies"])
                     + f" -> mean {report['fold_mean']:.1%} (95% CI {report['fold_mean_ci95'][0]:.1%}-"
                       f"{report['fold_mean_ci95'][1]:.1%})")
    lines.append("recall: " + "  ".join(f"{k} {v:.0%}" for k, v in report["recall"].items()))
    if "whisper_alone" in report:  # a pretrained recipe beside Whisper's own language-ID on the same clips
        for name, f in (("this recipe", report["model"]), ("Whisper alone", report["whisper_alone"])):
            focus = (f"; {', '.join(report['focus'])}: {f['focus_accuracy']:.1%} ({f['focus_ci95'][0]:.1%}-"
                     f"{f['focus_ci95'][1]:.1%})") if "focus_accuracy" in f else ""
            lines.append(f"{name}: {f['accuracy']:.1%} ({f['ci95'][0]:.1%}-{f['ci95'][1]:.1%}){focus}; "
                         f"ca recall {f['recall'].get('ca', float('nan')):.0%}")
        precision = "-" if report["ok_precision"] is None else f"{report['ok_precision']:.1%}"
        lines.append(f"held-out speakers: ECE {report['ece']:.3f}; \"ok\" answers {report['ok_coverage']:.1%} of "
                     f"clips, right {precision} of the time")
    if "calibration" in report:
        c = report["calibration"]
        precision = "-" if c["ok_precision"] is None else f"{c['ok_precision']:.0%}"
        lines.append(f"calibration: ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f} with temperature "
                     f"{c['temperature']:.2f}; \"ok\" answers {c['ok_coverage']:.0%} of clips, right {precision} of "
                     f"the time (rule: top >= {c['ok_rule']['min_probability']:.2f}, lead >= "
                     f"{c['ok_rule']['min_margin']:.2f})")
        lines.append("reliability (confidence -> accuracy, clips): " + "  ".join(
            f"{b['confidence']:.2f}->{b['accuracy']:.2f} ({b['count']})" for b in c["bins"]))
    labels = report["labels"]
    lines.append("confusion (rows: truth, columns: predicted)")
    lines.append("      " + "".join(f"{label:>6}" for label in labels))
    for label, row in zip(labels, report["confusion"]):
        lines.append(f"{label:>6}" + "".join(f"{n:>6}" for n in row))
    return "\n".join(lines)
