"""What a checkpoint says about its identifier, read without torch: labels, features, windows, calibration, origin.

The Identify page shows a model (its languages, what "ok" promises, its learning curve, clips it never heard)
before any clip is answered; only answering needs the weights, and they load torch (seconds on a first page
load). :func:`read_card` reads a checkpoint's ``data.pkl`` with an unpickler that admits plain data and
replaces every tensor by ``None`` without reading its bytes. Anything it does not recognise, or a damaged
file, goes through :func:`core.checkpoint.load_checkpoint` instead, whose errors name the file and the fault.
:func:`core.identify.predict.load_identifier` builds the same card from the full checkpoint, and the model.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from core.audio.features import FeatureConfig
from core.data.demo_corpus import is_demo_corpus
from core.errors import DeepLanguageError
from core.paths import CHECKPOINTS_DIR, resolve

DEFAULT_CHECKPOINT = CHECKPOINTS_DIR / "identify-default" / "best.pt"
# Only for checkpoints written before calibration existed (no "calibration" entry): "uncertain"
# when the top language has less than this probability or leads the runner-up by less than
# UNCERTAIN_MARGIN. A calibrated checkpoint carries its own rule, chosen on validation speakers
# (see core.identify.calibration).
UNCERTAIN_BELOW = 0.4
UNCERTAIN_MARGIN = 0.1
CARD_FIELDS = {"labels": list, "features": dict}  # what an identifier's checkpoint needs beyond the model


@dataclass
class ModelCard:
    """Everything about an identifier but its weights: built once, never mutated (st.cache_resource)."""

    labels: list[str]
    features: FeatureConfig
    window: int  # frames per window
    hop: int  # frames between windows
    checkpoint: dict  # everything but the weights: config, data, metrics
    path: str
    temperature: float = 1.0  # probabilities are softmax(logits / temperature), fitted on validation speakers
    # An answer is "ok" when top probability >= min_probability and top - runner-up >= min_margin.
    ok_rule: dict = field(default_factory=lambda: {"min_probability": UNCERTAIN_BELOW, "min_margin": UNCERTAIN_MARGIN})
    trained_on: dict = field(default_factory=dict)  # {"data_dir": str, "synthetic": bool}

    @property
    def languages(self) -> list[str]:
        """The languages this model can answer (its labels)."""
        return self.labels

    @property
    def window_seconds(self) -> float:
        return self.window / self.features.frames_per_second

    @property
    def calibration(self) -> dict:
        """The checkpoint's calibration entry (see :func:`core.identify.evaluate.calibration_report`), or {}."""
        return self.checkpoint.get("calibration", {})


class _Unknown(Exception):
    """Something the plain-data unpickler does not read: load the checkpoint the full way."""


def _no_tensor(*_) -> None:
    return None


class _PlainData(pickle.Unpickler):
    """torch.save's pickle with every tensor as None; its storages (the zip's other entries) are never read."""

    GLOBALS = {("collections", "OrderedDict"): OrderedDict, ("torch._utils", "_rebuild_tensor_v2"): _no_tensor,
               ("torch._utils", "_rebuild_parameter"): _no_tensor}

    def find_class(self, module: str, name: str):
        if (module, name) in self.GLOBALS:
            return self.GLOBALS[module, name]
        if module == "torch" and name.endswith("Storage"):  # a storage's type, named inside each tensor's record
            return None
        raise _Unknown(f"{module}.{name}")

    def persistent_load(self, pid):
        return None


def _plain_data(path: Path) -> dict:
    """A checkpoint's entries with its tensors as None; raises _Unknown for anything but a plain torch.save file."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise _Unknown("no single data.pkl")
            with archive.open(pickles[0]) as handle:
                checkpoint = _PlainData(handle).load()
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError, pickle.UnpicklingError,
            zipfile.BadZipFile) as error:
        raise _Unknown(type(error).__name__) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise _Unknown("not the current schema")
    return checkpoint


def read_card(path: str | Path = DEFAULT_CHECKPOINT) -> ModelCard:
    """The card of the identifier saved at ``path``, without loading its weights (nor torch, for a plain file)."""
    try:
        checkpoint = _plain_data(Path(path))
        if not all(isinstance(checkpoint.get(name), kind) for name, kind in CARD_FIELDS.items()):
            raise _Unknown("fields")
    except _Unknown:
        from core.checkpoint import load_checkpoint  # the full reader (torch): its errors say what is wrong

        checkpoint = load_checkpoint(path, CARD_FIELDS)
    return card_from_checkpoint(checkpoint, path)


def card_from_checkpoint(checkpoint: dict, path: str | Path) -> ModelCard:
    """An identifier checkpoint's card; a malformed entry raises DeepLanguageError naming it."""
    labels = checkpoint["labels"]
    if not all(isinstance(x, str) for x in labels):
        raise DeepLanguageError(f"checkpoint {path} is malformed: its 'labels' are not the language names its model "
                                f"answers. Retrain it.")
    try:
        features = FeatureConfig.from_dict(checkpoint["features"])
    except (TypeError, ValueError) as error:
        raise DeepLanguageError(f"checkpoint {path} is malformed: invalid 'features' ({error}).") from None
    fps = features.frames_per_second
    info = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "optimizer", "rng")}
    calibration = checkpoint.get("calibration") or {}
    try:
        rule = calibration.get("ok_rule") or {"min_probability": UNCERTAIN_BELOW, "min_margin": UNCERTAIN_MARGIN}
        temperature = float(calibration.get("temperature", 1.0))
        ok_rule = {"min_probability": float(rule["min_probability"]), "min_margin": float(rule["min_margin"])}
        if not temperature > 0:
            raise ValueError(f"temperature {temperature}")
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise DeepLanguageError(f"checkpoint {path} is malformed: invalid 'calibration' ({error}). "
                                f"Retrain it.") from None
    return ModelCard(list(labels), features, round(checkpoint.get("window_seconds", 3.0) * fps),
                     round(checkpoint.get("hop_seconds", 1.0) * fps), info, str(path),
                     temperature=temperature, ok_rule=ok_rule, trained_on=trained_on(checkpoint))


def resolve_data_dir(stored: str) -> Path | None:
    """A checkpoint's data dir (stored relative to the repository when inside it) as an absolute path."""
    return resolve(stored).resolve() if stored else None


def trained_on(checkpoint: dict) -> dict:
    """Which data a checkpoint learned from, and whether it is synthetic speech (the demo corpus).

    A model trained on espeak speech calls almost every real voice "en"; the UI must say so.
    """
    data = checkpoint.get("data", {})
    stored = checkpoint.get("trained_on") or {}
    directory = resolve_data_dir(stored.get("data_dir") or data.get("dir", ""))
    synthetic = stored.get("synthetic")
    if synthetic is None:
        synthetic = bool(directory and (is_demo_corpus(directory) or "demo-corpus" in directory.name))
    return {"data_dir": str(stored.get("data_dir") or data.get("dir", "")), "synthetic": bool(synthetic)}


def calibration_report(card_or_path: ModelCard | str | Path) -> dict:
    """The calibration a checkpoint carries, measured on its validation speakers when it was trained.

    ``{"temperature", "ece_before", "ece_after", "bins": [{"confidence", "accuracy", "count"}], "bins_before",
    "ok_rule": {"min_probability", "min_margin"}, "ok_precision", "ok_coverage", "n_clips", "speakers", "source"}``.
    A checkpoint written before calibration existed raises DeepLanguageError (nothing honest to show).
    """
    card = card_or_path if isinstance(card_or_path, ModelCard) else read_card(card_or_path)
    if not card.calibration:
        raise DeepLanguageError(f"{card.path} has no calibration (it predates it). Retrain it with "
                                f"`python -m core train ... --model gmm-supervector` to get one.")
    return dict(card.calibration)


def load_learning_curve(path: str | Path) -> dict:
    """A saved curve (:mod:`core.identify.learning_curve` makes them); a missing or broken file raises
    DeepLanguageError saying how to make one."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DeepLanguageError(f"no learning curve at {path} ({error.__class__.__name__}); make one with "
                                f"`python -m core evaluate --learning-curve --data DATA --out {path}`.") from None
