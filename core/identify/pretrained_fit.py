"""Fitting ``whisper`` and ``whisper-head`` identifiers on a dataset, and their speaker-grouped cross-validation.

Training takes minutes on 2 cores and almost all of it is encoding, which is cached
(:mod:`core.identify.embeddings`): a second training, a cross-validation or a learning curve encodes nothing.

1. read the dataset, keep the languages and clips of at least ``min_seconds``, split speakers 70/15/15;
2. one cached row per clip (Whisper's pooled states and language-ID);
3. out-of-fold head scores of the non-test speakers (speaker-grouped ``n_folds``): on them the fusion with
   Whisper's language-ID is fitted, then temperature and the "ok" rule (:mod:`core.identify.calibration`);
4. the head refitted on every non-test speaker; test speakers only scored.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pandas as pd
import torch

from core import runs
from core.checkpoint import save_checkpoint
from core.data.datasets import assign_splits, read_dataset, select_languages
from core.errors import DeepLanguageError
from core.identify.backends import GaussianBackend
from core.identify.clips import base_checkpoint
from core.identify.calibration import PRETRAINED_OK, calibration_entry, ok_mask, reliability, temper
from core.identify.embeddings import embed_manifest
from core.identify.learning_curve import TARGET_ACCURACY, budget_rows, scored_curve
from core.identify.metrics import bootstrap_ci, classification_report
from core.identify.predict import check_languages
from core.identify.pretrained import Fusion, WhisperHead, WhisperHeadConfig
from core.identify.whisper import load_encoder, whisper_code
from core.paths import default_cache_dir, resolve


def encoded_dataset(config, on_progress: Callable[..., None] | None = None,
                    scheduler: str | None = None) -> tuple[pd.DataFrame, np.ndarray, list]:
    """The dataset's kept clips (with a ``split`` column), their rows ``(n, 1124)`` and the sorted labels; clips the
    cache lacks are encoded on ``scheduler``'s Dask workers (else a local cluster when there are many)."""
    if not config.data_dir:
        raise DeepLanguageError("no dataset given: pass --data DIR (a Common Voice folder or <lang>/*.wav).")
    data_dir = resolve(config.data_dir)
    manifest = select_languages(read_dataset(data_dir), list(config.languages) or None)
    manifest = manifest[~(manifest["duration"] < config.min_seconds)].reset_index(drop=True)
    head = WhisperHeadConfig(**{k: v for k, v in config.model_config.items() if k in WhisperHeadConfig.__dataclass_fields__})
    encoder = load_encoder(head.encoder)
    cache_dir = resolve(config.cache_dir) if config.cache_dir else default_cache_dir(data_dir)
    manifest, rows = embed_manifest(manifest, encoder, cache_dir, on_progress=on_progress, scheduler=scheduler)
    labels = sorted(manifest["language"].unique())
    if len(labels) < 2:
        raise DeepLanguageError(f"{config.data_dir} has {len(labels)} language(s) left to train on; at least 2 "
                                f"are needed (clips shorter than {config.min_seconds} s are left out).")
    manifest = assign_splits(manifest, tuple(config.split_fractions), seed=config.split_seed)
    return manifest, rows, labels


def model_config(config, labels: list[str]) -> WhisperHeadConfig:
    """The head's config for ``labels``: the encoder's hash and where Whisper keeps each language."""
    values = dict(config.model_config)
    encoder = load_encoder(values.get("encoder", WhisperHeadConfig.encoder))
    codes = {code: i for i, code in enumerate(encoder.languages)}
    values.update(n_classes=len(labels), encoder_sha256=encoder.sha256, use_head=config.model == "whisper-head",
                  whisper_index=tuple(codes.get(whisper_code(label), -1) for label in labels))
    return WhisperHeadConfig(**values)


def _head_scores(cfg: WhisperHeadConfig, rows: np.ndarray, y: np.ndarray, test_rows: np.ndarray) -> np.ndarray:
    """Head log-probabilities ``(n_test, n_classes)``; a language absent from ``y`` (a small fold) gets log 1e-6."""
    backend = GaussianBackend(dim=cfg.dim, shrinkage=cfg.shrinkage).fit(rows[:, :1024], y)
    model = WhisperHead(WhisperHeadConfig(**{**asdict(cfg), "n_classes": len(backend.classes_)}))
    model.set_backend(backend)
    out = np.full((len(test_rows), cfg.n_classes), np.log(1e-6))
    with torch.no_grad():
        out[:, backend.classes_] = model.head_scores(torch.from_numpy(test_rows)).numpy()
    return out


def out_of_fold(cfg: WhisperHeadConfig, rows: np.ndarray, y: np.ndarray, speakers: np.ndarray,
                seed: int = 0) -> tuple[np.ndarray | None, np.ndarray]:
    """Head and Whisper log-probabilities ``(n, n_classes)`` of every row from folds that never saw its speaker."""
    from sklearn.model_selection import StratifiedGroupKFold

    with torch.no_grad():
        whisper = WhisperHead(cfg).whisper_scores(torch.from_numpy(rows)).numpy()
    if not cfg.use_head:
        return None, whisper
    head = np.zeros_like(whisper)
    n_folds = max(2, min(cfg.n_folds, len(np.unique(speakers)), np.bincount(y).min()))
    for train, held in StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(rows, y, speakers):
        head[held] = _head_scores(cfg, rows[train], y[train], rows[held])
    return head, whisper


def fit_model(cfg: WhisperHeadConfig, rows: np.ndarray, y: np.ndarray, speakers: np.ndarray,
              seed: int = 0) -> tuple[WhisperHead, dict]:
    """A fitted model on ``rows`` of the given speakers, and its calibration entry (from out-of-fold scores)."""
    from sklearn.metrics import balanced_accuracy_score

    head, whisper = out_of_fold(cfg, rows, y, speakers, seed)
    fusion = Fusion().fit(head, whisper, y)
    fused = fusion.log_proba(head, whisper)
    calibration = calibration_entry(np.exp(fused), y, speakers,
                                    source=f"out-of-fold scores of {len(np.unique(speakers))} training speakers",
                                    **PRETRAINED_OK)
    calibration.update(balanced_accuracy=float(balanced_accuracy_score(y, fused.argmax(1))),
                       log_loss=float(-fused[np.arange(len(y)), y].mean()))
    model = WhisperHead(cfg)
    if cfg.use_head:
        model.set_backend(GaussianBackend(dim=cfg.dim, shrinkage=cfg.shrinkage).fit(rows[:, :1024], y))
    model.fusion = torch.tensor(fusion.weights_, dtype=torch.float32)
    model.bias = torch.tensor(fusion.bias_, dtype=torch.float32)
    return model.eval(), calibration


def predict_rows(model: WhisperHead, rows: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Calibrated probabilities ``(n, n_classes)`` of cached rows."""
    with torch.no_grad():
        probabilities = model(torch.from_numpy(np.ascontiguousarray(rows))).exp().numpy()
    return temper(probabilities, temperature)


def fit(config, run_dir: Path | None = None, on_progress: Callable[..., None] | None = None,
        scheduler: str | None = None) -> dict:
    """Train ``config`` (a TrainConfig of model whisper or whisper-head): the checkpoint dict of the fitted model."""
    started = time.perf_counter()
    manifest, rows, labels = encoded_dataset(config, on_progress, scheduler)
    y = np.searchsorted(labels, manifest["language"].to_numpy())
    fit_rows = np.flatnonzero(manifest["split"].to_numpy() != "test")
    test = np.flatnonzero(manifest["split"].to_numpy() == "test")
    cfg = model_config(config, labels)
    if on_progress:
        on_progress(0, 1, phase="fitting the head and its calibration")
    model, calibration = fit_model(cfg, rows[fit_rows], y[fit_rows], manifest["speaker"].to_numpy()[fit_rows],
                                   config.seed)
    if on_progress:
        on_progress(1, 1, phase="fitting the head and its calibration")
    probabilities = predict_rows(model, rows[test], calibration["temperature"])
    report = classification_report(y[test], probabilities.argmax(1), labels, manifest["speaker"].to_numpy()[test])
    whisper_alone = WhisperHead(model_config(SimpleNamespace(model="whisper", model_config=config.model_config),
                                             labels)).whisper_scores(torch.from_numpy(rows[test])).numpy()
    # "val_": out-of-fold scores of the training and validation speakers (what the fusion and calibration saw).
    row = {"epoch": 1, "step": 1, "val_accuracy": calibration["accuracy"],
           "val_balanced_accuracy": calibration["balanced_accuracy"], "val_loss": calibration["log_loss"], "test_accuracy": report["accuracy"], "test_accuracy_ci95": report.get("accuracy_ci95"),
           "test_whisper_alone_accuracy": float((whisper_alone.argmax(1) == y[test]).mean()),
           "seconds": time.perf_counter() - started}  # encoding (when not cached) and fitting
    clips = SimpleNamespace(manifest=manifest, labels=labels)
    train_rows = torch.from_numpy(np.flatnonzero(manifest["split"].to_numpy() == "train"))
    val_rows = torch.from_numpy(np.flatnonzero(manifest["split"].to_numpy() == "validation"))
    checkpoint = {**base_checkpoint(config, clips, train_rows, val_rows, asdict(cfg),
                                    normalization={"kind": "whisper"}, encoder=cfg.encoder),
                  "state_dict": {k: v.clone() for k, v in model.state_dict().items()}, "calibration": calibration,
                  "epoch": 1, "step": 1, "metrics": row, "test_report": report,
                  "best": {"metric": "val_balanced_accuracy", "value": calibration["balanced_accuracy"],
                           "loss": calibration["log_loss"], "epoch": 1}}
    if run_dir:
        save_checkpoint(checkpoint, Path(run_dir) / "best.pt")
        runs.append_metrics(run_dir, row)
        runs.write_json(Path(run_dir) / "progress.json", {"done": 1, "total": 1, "phase": "done"})
    return checkpoint


FOCUS = ("de", "en", "es", "fr", "it", "ja")  # the original project's six languages, reported apart


def cross_validate(config, n_folds: int = 5, on_progress: Callable[..., None] | None = None) -> dict:
    """Speaker-grouped ``n_folds`` CV of a whisper recipe on every clip, beside Whisper's restricted language-ID on
    the same clips: accuracy over all languages and over :data:`FOCUS` (answers renormalised over them), per-language
    recall, ECE and the "ok" rule's precision and coverage on held-out speakers; CIs resample speakers whole."""
    from sklearn.model_selection import StratifiedGroupKFold

    manifest, rows, labels = encoded_dataset(config, on_progress)
    y = np.searchsorted(labels, manifest["language"].to_numpy())
    speakers = manifest["speaker"].to_numpy()
    cfg = model_config(config, labels)
    whisper_cfg = model_config(SimpleNamespace(model="whisper", model_config=config.model_config), labels)
    probabilities, whisper, answered = np.zeros((len(y), len(labels))), np.zeros((len(y), len(labels))), np.zeros(len(y), bool)
    folds = StratifiedGroupKFold(n_folds, shuffle=True, random_state=config.split_seed)
    for fold, (train, held) in enumerate(folds.split(rows, y, speakers)):
        model, calibration = fit_model(cfg, rows[train], y[train], speakers[train], config.seed + fold)
        probabilities[held] = predict_rows(model, rows[held], calibration["temperature"])
        rule = calibration["ok_rule"]
        answered[held] = ok_mask(probabilities[held], rule["min_probability"], rule["min_margin"])
        with torch.no_grad():
            whisper[held] = WhisperHead(whisper_cfg).whisper_scores(torch.from_numpy(rows[held])).exp().numpy()
        if on_progress:
            on_progress(fold + 1, n_folds, phase="cross-validating")

    def figures(p: np.ndarray) -> dict:
        focus = [labels.index(x) for x in FOCUS if x in labels]
        in_focus = np.isin(y, focus)
        hit = p.argmax(1) == y
        hit_focus = np.array(focus)[p[in_focus][:, focus].argmax(1)] == y[in_focus] if focus else np.array([])
        out = {"accuracy": float(hit.mean()), "ci95": bootstrap_ci(hit, speakers),
               "recall": {label: float(hit[y == i].mean()) for i, label in enumerate(labels)}}
        if len(focus) > 1:
            out.update(focus_accuracy=float(hit_focus.mean()), focus_ci95=bootstrap_ci(hit_focus, speakers[in_focus]))
        return out

    model_figures, whisper_figures = figures(probabilities), figures(whisper)
    ece, _ = reliability(probabilities, y)
    correct = probabilities.argmax(1) == y
    report = classification_report(y, probabilities.argmax(1), labels, speakers)
    report.update(n_folds=n_folds, model=model_figures, whisper_alone=whisper_figures, focus=list(FOCUS), ece=ece,
                  ok_precision=float(correct[answered].mean()) if answered.any() else None,
                  ok_coverage=float(answered.mean()))
    return report


def learning_curve(config, minutes=(0.5, 1.0, 2.0, 3.0, 4.0, None), n_folds: int = 3,
                   on_progress: Callable[..., None] | None = None, languages=None) -> dict:
    """Accuracy of a whisper recipe against minutes of labelled speech per language, in the same form and on the
    same speaker-grouped folds as :func:`core.identify.learning_curve.learning_curve` (the GMM's), so both draw on
    one chart: what pretraining buys at each budget."""
    from sklearn.model_selection import StratifiedGroupKFold

    manifest, rows, labels = encoded_dataset(config, on_progress)
    if languages is not None:
        check_languages(list(languages), labels)
    y = np.searchsorted(labels, manifest["language"].to_numpy())
    speakers = manifest["speaker"].to_numpy()
    cfg = model_config(config, labels)
    probabilities = np.zeros((len(minutes), len(y), len(labels)))
    used = [[] for _ in minutes]
    folds = StratifiedGroupKFold(n_folds, shuffle=True, random_state=config.split_seed)
    for fold, (train, held) in enumerate(folds.split(rows, y, speakers)):
        for b, budget in enumerate(minutes):
            chosen = budget_rows(manifest, train, budget, config.seed + fold)
            small = WhisperHeadConfig(**{**asdict(cfg), "dim": min(cfg.dim, max(1, len(chosen) - len(labels)))})
            model, calibration = fit_model(small, rows[chosen], y[chosen], speakers[chosen], config.seed + fold)
            probabilities[b, held] = predict_rows(model, rows[held], calibration["temperature"])
            part = manifest.iloc[chosen]
            used[b].append(part["duration"].sum() / 60.0 / part["language"].nunique())
            if on_progress:
                on_progress(fold * len(minutes) + b + 1, n_folds * len(minutes), fold=fold + 1,
                            minutes=budget or "all")
    spent = [float(np.mean(u)) for u in used]
    curve = scored_curve(spent, [p.argmax(1) == y for p in probabilities], speakers, 1.0 / len(labels))
    curve.update(budget=list(minutes), minutes_for_80=curve["minutes_for"][str(TARGET_ACCURACY)], languages=labels,
                 n_folds=n_folds, n_clips=int(len(manifest)), n_speakers=int(len(np.unique(speakers))),
                 model=config.model)
    if languages is not None:
        columns = [labels.index(code) for code in languages]
        inside = np.isin(y, columns)
        answers = [np.asarray(columns)[p[inside][:, columns].argmax(1)] for p in probabilities]
        curve["restricted"] = {"languages": list(languages), "n_clips": int(inside.sum()),
                               **scored_curve(spent, [a == y[inside] for a in answers], speakers[inside],
                                              1.0 / len(columns))}
    return curve
