"""Checkpoints: one dict per run, written atomically, loaded with ``weights_only=True``.

A checkpoint holds plain data only (tensors, numbers, strings, lists, dicts), in one schema
for every model kind (identifiers and the study's next-frame LSTM and autoencoder)::

    {"format": 1, "model": {"kind": str, "config": dict}, "state_dict": {name: tensor}, ...}

plus what the kind needs: an identifier's labels, feature parameters and normalisation, a
resumable run's optimizer, epoch and RNG states. Loading never runs pickled code, and checks
the schema, so a damaged or foreign file is one clear error naming the file and the field.
Study checkpoints written before this schema (``{"model_kind", "model_config", "model"}``,
as in the shipped demo study) are read by :func:`_upgrade`.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Callable

import torch

from core.errors import DeepLanguageError

CHECKPOINT_FORMAT = 1  # the schema above; a file with a newer one was written by a newer version
PREVIOUS_SUFFIX = "-prev.pt"  # last.pt's previous version, kept by save_checkpoint(keep_previous=True)


def save_checkpoint(checkpoint: dict, path: str | Path, keep_previous: bool = False) -> Path:
    """Write ``checkpoint`` to ``path`` through a temporary file, so a crash never leaves half of one.

    ``keep_previous``: the file being replaced stays as ``<stem>-prev.pt``, a fallback should
    the new one ever be unreadable (see :func:`load_checkpoint_or_previous`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(checkpoint, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())  # the rename must not land before the bytes do
    if keep_previous and path.exists() and _readable(path):
        # A hard link renamed into place: at every instant both names hold a complete file. An
        # unreadable file is never rotated in: it would replace the one good fallback.
        link = path.with_name(f".{path.stem}{PREVIOUS_SUFFIX}.{os.getpid()}.tmp")
        link.unlink(missing_ok=True)
        os.link(path, link)
        os.replace(link, previous_path(path))
    os.replace(tmp, path)
    return path


def previous_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + PREVIOUS_SUFFIX)


def _readable(path: Path) -> bool:
    try:
        load_checkpoint(path)
    except DeepLanguageError:
        return False
    return True


def load_checkpoint_or_previous(path: str | Path, fields: dict[str, type] | None = None) -> tuple[dict, Path]:
    """``path``'s checkpoint, or its ``-prev.pt`` copy when ``path`` is truncated, corrupt or malformed.

    Returns the checkpoint and the file it came from. When neither loads, raises the error of ``path``.
    ``fields``: as for :func:`load_checkpoint`.
    """
    try:
        return load_checkpoint(path, fields), Path(path)
    except DeepLanguageError as error:
        previous = previous_path(path)
        if previous.exists():
            try:
                return load_checkpoint(previous, fields), previous
            except DeepLanguageError:
                pass
        raise error from None


def load_checkpoint(path: str | Path, fields: dict[str, type] | None = None) -> dict:
    """Read a checkpoint safely: a missing, truncated, corrupt, code-carrying or malformed file is a clear error.

    Every checkpoint must have the common schema (see the module docstring); ``fields`` names
    further top-level entries the caller needs and their types, e.g. ``{"labels": list}``.
    """
    path = Path(path)
    if not path.exists():
        raise DeepLanguageError(f"checkpoint {path} does not exist. Check the path, or train a model first.")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; anything else would be read as a bare pickle
        raise DeepLanguageError(f"checkpoint {path} is truncated or corrupt (not a torch checkpoint file). "
                                f"Delete it, or resume from an earlier one.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise DeepLanguageError(
            f"checkpoint {path} was refused: it holds objects other than plain data ({str(error).splitlines()[0]}). "
            f"Only load checkpoints you trust, re-saved with weights only."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise DeepLanguageError(
            f"checkpoint {path} is truncated or corrupt ({type(error).__name__}). Delete it, or resume from "
            f"an earlier one."
        ) from None
    if not isinstance(checkpoint, dict):
        raise DeepLanguageError(f"checkpoint {path} is not a deepLanguage checkpoint (expected a dict).")
    checkpoint = _upgrade(checkpoint)
    check_schema(checkpoint, path, fields)
    return checkpoint


def _upgrade(checkpoint: dict) -> dict:
    """The one compatibility path: a study checkpoint of the first schema in the current one."""
    if "model_kind" not in checkpoint or "state_dict" in checkpoint:
        return checkpoint
    rest = {k: v for k, v in checkpoint.items() if k not in ("model_kind", "model_config", "model")}
    return {"format": CHECKPOINT_FORMAT, **rest, "state_dict": checkpoint.get("model"),
            "model": {"kind": checkpoint["model_kind"], "config": checkpoint.get("model_config")}}


def check_schema(checkpoint: dict, path: str | Path, fields: dict[str, type] | None = None) -> None:
    """Raise a :class:`DeepLanguageError` naming ``path`` and the field when ``checkpoint`` lacks
    the common schema or one of ``fields`` (name -> expected type)."""
    model = checkpoint.get("model")
    problem = None
    if not isinstance(model, dict):
        problem = "no 'model' entry {kind, config}"
    elif not isinstance(model.get("kind"), str):
        problem = "no string 'model.kind'"
    elif not isinstance(model.get("config"), dict):
        problem = "no dict 'model.config'"
    elif not isinstance(checkpoint.get("state_dict"), dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint["state_dict"].items()):
        problem = "no 'state_dict' of named tensors"
    elif not isinstance(checkpoint.get("format"), int) or isinstance(checkpoint.get("format"), bool):
        problem = "no integer 'format'"
    elif checkpoint["format"] > CHECKPOINT_FORMAT:
        problem = f"format {checkpoint['format']}, newer than this version reads ({CHECKPOINT_FORMAT}); update deepLanguage"
    else:
        for name, kind in (fields or {}).items():
            if not isinstance(checkpoint.get(name), kind):
                problem = f"{'no' if name not in checkpoint else 'an invalid'} {name!r} (expected a {kind.__name__})"
                break
    if problem:
        raise DeepLanguageError(f"checkpoint {path} is malformed: it has {problem}. Give a checkpoint written "
                                f"by deepLanguage's training (a run's best.pt or last.pt), or retrain it.")


def model_record(kind: str, config: dict, state_dict: dict) -> dict:
    """The common part of every checkpoint: the format, the model's kind and config (a dict), its weights."""
    return {"format": CHECKPOINT_FORMAT, "model": {"kind": kind, "config": config}, "state_dict": state_dict}


def rebuild_model(checkpoint: dict, build: Callable[[str, dict], torch.nn.Module], path: str | Path = "",
                  kinds: tuple[str, ...] = ()) -> torch.nn.Module:
    """The model a checkpoint describes, weights loaded, in eval mode; the stored architecture wins.

    ``build(kind, config)`` makes a fresh model; ``kinds`` (when given) are the kinds the caller
    can use. A kind, config or weights that do not fit are a :class:`DeepLanguageError` naming ``path``.
    """
    where = f"checkpoint {path}" if path else "this checkpoint"
    checkpoint = _upgrade(checkpoint)
    check_schema(checkpoint, path or "(in memory)")
    kind, config = checkpoint["model"]["kind"], checkpoint["model"]["config"]
    if kinds and kind not in kinds:
        raise DeepLanguageError(f"{where} holds a {kind!r} model, not one of {', '.join(kinds)}.")
    try:
        model = build(kind, config)
    except DeepLanguageError as error:
        raise DeepLanguageError(f"{where}: {error}") from None
    except (TypeError, ValueError, KeyError) as error:
        raise DeepLanguageError(f"{where} has an invalid model.config for {kind} ({type(error).__name__}: "
                                f"{error}). Retrain it.") from None
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise DeepLanguageError(f"{where}: its weights do not fit its model config "
                                f"({str(error).splitlines()[0]}). Retrain or re-save it.") from None
    return model.eval()
