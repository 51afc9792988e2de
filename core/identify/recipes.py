"""Named training recipes: what a page or a command asks for by name instead of spelling it out.

``train_config(kind, data_dir, **choices)`` turns a user's few choices into a full, validated
:class:`core.identify.clips.TrainConfig`; for the GMM-supervector identifier it starts from the
from-scratch baseline's recipe (checkpoints/identify-gmm/README.md), and a whisper-head is the shipped default's
(checkpoints/identify-default/README.md), so the Train page and the READMEs' commands train the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from core.identify.kinds import GMM_KINDS, PRETRAINED_KINDS
from core.identify.whisper import BASE

if TYPE_CHECKING:
    from core.identify.clips import TrainConfig

# The shipped identifier's model config (checkpoints/identify-gmm/README.md picks these by
# speaker-grouped cross-validation); n_components and background_languages are the user's to change.
SHIPPED_GMM = {"n_components": 256, "relevance": 4, "fit_on": "clips", "augment": ["speed0.9", "speed1.1", "noise"]}
GMM_COMPONENTS = (64, 128, 256, 512)  # sizes worth offering: 256 shipped, 512 within noise of it


LANGUAGES = ("languages", "Languages (comma-separated; empty = all)", "", None)
# What the Train page asks for each kind of run: (setting, label, default, allowed). ``allowed`` is
# (low, high) for a number, a list of options, or None for text. Settings left out keep the
# TrainConfig / StudyConfig default; every value is checked again where the config is built.
FORM = {
    "study": [("target", "Target language", "es", None),
              ("condition", "Low-pass pretraining language ('none' = no pretraining)", "none", None),
              ("hidden_size", "LSTM hidden size", 128, (8, 1024)), ("max_epochs", "Maximum epochs", 30, (1, 500))],
    "pretrained": [LANGUAGES, ("encoder", "Whisper encoder: base (bundled), small or large-v3 (need internet), "
                                          "or a CTranslate2 folder", BASE, None)],
    "gmm": [LANGUAGES, ("n_components", "GMM components", SHIPPED_GMM["n_components"], list(GMM_COMPONENTS)),
            ("background_languages", "Background languages (extra classes, never answered)", "", None)],
    "neural": [LANGUAGES, ("epochs", "Epochs", 20, (1, 500)), ("batch_size", "Batch size", 32, (2, 512)),
               ("lr", "Learning rate", 0.01, (1e-5, 1.0)), ("weight_decay", "Weight decay", 0.05, (0.0, 1.0)),
               ("crop_seconds", "Training crop (s)", 3.0, (0.5, 10.0)),
               ("patience", "Early-stopping patience (0 = never)", 10, (0, 100))],
}


def form(kind: str, study_kinds: Sequence[str] = ()) -> list[tuple]:
    """The Train page's questions for a run of ``kind`` (one of ``study_kinds`` is a study run)."""
    return FORM["study" if kind in study_kinds else "gmm" if kind in GMM_KINDS
                else "pretrained" if kind in PRETRAINED_KINDS else "neural"]


def split_list(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"es, it,ja"`` (or a list) -> ``("es", "it", "ja")``; blanks dropped."""
    items = text.split(",") if isinstance(text, str) else text
    return tuple(x.strip() for x in items if x.strip())


def train_config(kind: str, data_dir: str | Path, *, languages: str | Sequence[str] = (),
                 n_components: int = SHIPPED_GMM["n_components"], background_languages: str | Sequence[str] = (),
                 encoder: str = BASE, **settings) -> TrainConfig:
    """The TrainConfig of a run of model ``kind`` on ``data_dir``.

    ``settings``: TrainConfig fields (epochs, batch_size, lr, seed, threads, ...). A GMM-supervector
    model is fitted in one pass (one "epoch"), from the shipped recipe with ``n_components`` Gaussians
    and ``background_languages`` as extra, never answered classes. Bad values raise UsageError.
    """
    # Here, not at the top: clips loads torch, and the Train page lists these recipes on its first load.
    from core.identify.clips import TrainConfig

    values = {"data_dir": str(Path(data_dir).resolve()), "model": kind, "languages": split_list(languages),
              **settings}
    if kind in PRETRAINED_KINDS:  # fitted in one pass on cached Whisper rows
        values.update(epochs=1, model_config={} if encoder in ("", BASE) else {"encoder": encoder})
    if kind in GMM_KINDS:
        values.update(epochs=1, model_config={**SHIPPED_GMM, "n_components": int(n_components),
                                              "background_languages": list(split_list(background_languages))})
    return TrainConfig(**values)
