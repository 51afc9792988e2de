"""core.checkpoint: one schema for every model kind, checked on load; an unreadable file never becomes the fallback."""

from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf
import torch

from core.__main__ import main
from core.checkpoint import (load_checkpoint, load_checkpoint_or_previous, model_record, previous_path,
                             save_checkpoint)
from core.errors import DeepLanguageError
from core.identify.models import build_model
from core.identify.predict import load_identifier
from tests.conftest import SR, speechlike

TINY = {"channels": [4, 8], "hidden": 16, "n_mels": 64, "n_classes": 2}


def _identifier(**changes) -> dict:
    """A well-formed cnn-baseline checkpoint with ``changes`` applied (None deletes an entry)."""
    model = build_model("cnn-baseline", TINY)
    checkpoint = {**model_record("cnn-baseline", dict(TINY), model.state_dict()), "labels": ["en", "es"],
                  "features": {}}
    for key, value in changes.items():
        if value is None:
            checkpoint.pop(key)
        else:
            checkpoint[key] = value
    return checkpoint


def _numbered(epoch: int) -> dict:
    return {**model_record("nextframe", {"n_mels": 4}, {"w": torch.full((3,), float(epoch))}), "epoch": epoch}


def test_a_well_formed_identifier_loads(tmp_path):
    path = save_checkpoint(_identifier(), tmp_path / "ok.pt")
    bundle = load_identifier(path)
    assert bundle.labels == ["en", "es"] and not bundle.model.training


@pytest.mark.parametrize("changes, field", [
    ({"format": None, "model": {"kind": "cnn-baseline"}, "state_dict": {}}, "model.config"),  # the file
    ({"model": "cnn-baseline"}, "'model'"),
    ({"model": {"config": TINY}}, "model.kind"),
    ({"state_dict": {"w": [1.0, 2.0]}}, "state_dict"),
    ({"format": "1"}, "format"),
    ({"format": 99}, "newer"),
    ({"labels": None}, "'labels'"),
    ({"features": [64]}, "'features'"),
    ({"model": {"kind": "transformer", "config": {}}}, "transformer"),
    ({"model": {"kind": "cnn-baseline", "config": {**TINY, "bogus": 1}}}, "bogus"),
    ({"model": {"kind": "cnn-baseline", "config": {**TINY, "hidden": "wide"}}}, "model.config"),
    ({"state_dict": {}}, "weights do not fit"),
    ({"labels": ["en", "es", "fr"]}, "labels"),
])
def test_a_malformed_checkpoint_is_one_clear_error_naming_file_and_field(tmp_path, changes, field):
    path = save_checkpoint(_identifier(**changes), tmp_path / "bad.pt")
    with pytest.raises(DeepLanguageError) as error:
        load_identifier(path)
    assert str(path) in str(error.value) and field in str(error.value)


def test_the_cli_reports_a_malformed_checkpoint_without_an_internal_error(tmp_path, capsys):
    path = save_checkpoint(_identifier(format=None, model={"kind": "cnn-baseline"}, state_dict={}), tmp_path / "b.pt")
    clip = tmp_path / "clip.wav"
    sf.write(clip, speechlike(), SR)
    data = tmp_path / "data" / "en"
    data.mkdir(parents=True)
    for command in (["identify", str(clip), "--checkpoint", str(path)],
                    ["evaluate", "--checkpoint", str(path), "--data", str(data.parent)]):
        assert main(command) != 0
        err = capsys.readouterr().err
        assert "internal error" not in err and str(path) in err and "model.config" in err


def test_garbage_is_corrupt_not_code(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DeepLanguageError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "code.pt"
    torch.save({**_numbered(1), "extra": Fraction(1, 2)}, path)  # any class outside the allow-list
    with pytest.raises(DeepLanguageError, match="refused"):
        load_checkpoint(path)


def test_an_unreadable_last_checkpoint_is_never_rotated_into_the_fallback(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_numbered(1), path, keep_previous=True)
    save_checkpoint(_numbered(2), path, keep_previous=True)
    path.write_bytes(path.read_bytes()[:100])  # corrupt: resume falls back to epoch 1
    checkpoint, used = load_checkpoint_or_previous(path)
    assert checkpoint["epoch"] == 1 and used == previous_path(path)
    save_checkpoint(_numbered(2), path, keep_previous=True)  # the resumed run saves: the corrupt file is dropped
    assert load_checkpoint(previous_path(path))["epoch"] == 1
    save_checkpoint(_numbered(3), path, keep_previous=True)  # and again: now the good epoch 2 is the fallback
    path.write_bytes(b"corrupt again")
    checkpoint, used = load_checkpoint_or_previous(path)
    assert checkpoint["epoch"] == 2 and used == previous_path(path)
    assert np.array_equal(checkpoint["state_dict"]["w"].numpy(), np.full(3, 2.0))


def test_a_malformed_last_checkpoint_falls_back_like_a_corrupt_one(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_numbered(1), path, keep_previous=True)
    save_checkpoint({"epoch": 2, "model": {"kind": "nextframe"}}, path, keep_previous=True)
    with pytest.raises(DeepLanguageError, match=f"{path}.*model.config"):
        load_checkpoint(path)
    assert load_checkpoint_or_previous(path)[0]["epoch"] == 1
