"""Checkpoints: one dict per run, written atomically, loaded with ``weights_only=True``.

A checkpoint holds plain data only (tensors, numbers, strings, lists, dicts): the model's
kind and config, its ``state_dict``, the optimizer's, the epoch, the best metric, the label
list, the feature parameters and the normalisation. Loading never runs pickled code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from core.errors import DeepLanguageError

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
    if keep_previous and path.exists():
        # A hard link renamed into place: at every instant both names hold a complete file.
        link = path.with_name(f".{path.stem}{PREVIOUS_SUFFIX}.{os.getpid()}.tmp")
        link.unlink(missing_ok=True)
        os.link(path, link)
        os.replace(link, previous_path(path))
    os.replace(tmp, path)
    return path


def previous_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + PREVIOUS_SUFFIX)


def load_checkpoint_or_previous(path: str | Path) -> tuple[dict, Path]:
    """``path``'s checkpoint, or its ``-prev.pt`` copy when ``path`` is truncated or corrupt.

    Returns the checkpoint and the file it came from. When neither loads, raises the error of ``path``.
    """
    try:
        return load_checkpoint(path), Path(path)
    except DeepLanguageError as error:
        previous = previous_path(path)
        if previous.exists():
            try:
                return load_checkpoint(previous), previous
            except DeepLanguageError:
                pass
        raise error from None


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint safely: a missing, truncated, corrupt or code-carrying file is a clear error."""
    path = Path(path)
    if not path.exists():
        raise DeepLanguageError(f"checkpoint {path} does not exist. Check the path, or train a model first.")
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
    return checkpoint


def model_record(kind: str, model: torch.nn.Module) -> dict:
    """What a checkpoint stores to rebuild a model: its kind, its config as a dict, its weights."""
    from dataclasses import asdict

    return {"model_kind": kind, "model_config": asdict(model.config), "model": model.state_dict()}


def rebuild_model(checkpoint: dict, kind: str, model_class, config_class, what: str) -> torch.nn.Module:
    """The model a :func:`model_record` describes, in eval mode; the stored architecture wins."""
    if checkpoint.get("model_kind") != kind:
        raise DeepLanguageError(f"this checkpoint holds a {checkpoint.get('model_kind')!r} model, not {what}.")
    model = model_class(config_class.from_dict(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.eval()
