"""Identifiers on a pretrained encoder: Whisper's own language-ID (``whisper``) and a head that learns the user's
languages on top of it (``whisper-head``).

Both read one cached row per clip (:mod:`core.identify.embeddings`): the pooled encoder states ``(1024,)`` and
Whisper's language-ID log-probabilities ``(100,)``. Like every model in :mod:`core.identify.models` they are an
``nn.Module`` whose fitted numbers are buffers, so a checkpoint holds plain tensors (``weights_only=True``):

* ``whisper``: Whisper's log-probabilities of the model's languages, renormalised over them (a language Whisper
  does not know gets the mean of the others'). Nothing is trained; the checkpoint records the encoder's hash.
* ``whisper-head``: standardise the embedding, project it on its top principal axes, one Gaussian per language
  with a shared covariance (the Gaussian backend of :mod:`core.identify.backends`: a language is a mean, so
  ``enroll`` adds one without retraining), fused with Whisper's restricted language-ID:
  ``logit_c = a * log p_head(c) + b * log p_whisper(c) + bias_c``. ``a``, ``b`` and the biases are fitted on
  out-of-fold scores of the training speakers (:class:`Fusion`), never on test speakers.

Input ``(batch, 1024 + 100)`` rows, output ``(batch, n_classes)`` log-probabilities (softmax of them is itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.errors import DeepLanguageError
from core.identify.whisper import BASE, EMBEDDING_DIM, STATES_PER_SECOND, load_encoder, pool

KINDS = ("whisper", "whisper-head")
N_WHISPER_LANGUAGES = 100  # the tokenizer's language codes (large-v3 added Cantonese; every size names it)
FUSION_L2 = 0.01  # on the per-language biases: they shift a language's prior, not its evidence


@dataclass
class WhisperHeadConfig:
    n_classes: int = 6  # languages answered
    encoder: str = BASE  # what load_encoder loads: "base" (bundled), another size, or a CTranslate2 folder
    encoder_sha256: str = ""  # the encoder's model file hash: embeddings of another encoder do not fit
    whisper_index: tuple[int, ...] = ()  # each language's position among Whisper's, -1 when Whisper lacks it
    use_head: bool = True  # False: Whisper's language-ID alone (kind "whisper")
    dim: int = 100  # principal axes of the Gaussian backend (at most n_train_clips - n_classes are used)
    shrinkage: float = 0.1  # shared covariance -> (1 - s) cov + s * mean variance * I
    n_folds: int = 5  # speaker-grouped folds whose out-of-fold scores fit the fusion and calibration
    n_mels: int = 80  # Whisper's log-mel bands (for the checkpoint's record; the encoder computes them)


class WhisperHead(nn.Module):
    """Rows of pooled Whisper states and Whisper's language-ID -> fused log-probabilities ``(batch, n_classes)``."""

    pretrained_encoder = True  # identify, evaluate and enrol feed it encoder rows, not log-mels

    def __init__(self, config: WhisperHeadConfig):
        super().__init__()
        self.config = config
        c, d = config.n_classes, min(config.dim, EMBEDDING_DIM)
        index = list(config.whisper_index) or [-1] * c
        self.register_buffer("whisper_index", torch.tensor(index, dtype=torch.long))
        self.register_buffer("mean", torch.zeros(EMBEDDING_DIM))
        self.register_buffer("scale", torch.ones(EMBEDDING_DIM))
        self.register_buffer("components", torch.zeros(d, EMBEDDING_DIM))
        self.register_buffer("class_means", torch.zeros(c, d))
        self.register_buffer("precision", torch.eye(d))
        self.register_buffer("fusion", torch.tensor([1.0 if config.use_head else 0.0, 1.0]))
        self.register_buffer("bias", torch.zeros(c))

    @property
    def embedding_dim(self) -> int:
        return EMBEDDING_DIM

    def embed(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``(batch, 1024 + 100)`` -> the pooled encoder states ``(batch, 1024)``."""
        return rows[:, :EMBEDDING_DIM]

    def whisper_scores(self, rows: torch.Tensor) -> torch.Tensor:
        """Whisper's log-probabilities of the model's languages, renormalised over them ``(batch, n_classes)``."""
        lid = rows[:, EMBEDDING_DIM:]
        known = self.whisper_index >= 0
        scores = lid[:, self.whisper_index.clamp(min=0)]
        if not known.all():
            fill = scores[:, known].mean(1, keepdim=True) if known.any() else torch.zeros_like(scores[:, :1])
            scores = torch.where(known, scores, fill)
        return torch.log_softmax(scores, dim=1)

    def head_scores(self, rows: torch.Tensor) -> torch.Tensor:
        """The Gaussian backend's log-probabilities ``(batch, n_classes)`` of the embeddings."""
        projected = ((self.embed(rows) - self.mean) / self.scale) @ self.components.T
        weights = self.class_means @ self.precision
        logits = projected @ weights.T - 0.5 * (weights * self.class_means).sum(1)
        return torch.log_softmax(logits, dim=1)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        fused = self.fusion[1] * self.whisper_scores(rows) + self.bias
        if self.config.use_head:
            fused = fused + self.fusion[0] * self.head_scores(rows)
        return torch.log_softmax(fused, dim=1)

    def set_backend(self, backend) -> None:
        """Put a fitted :class:`core.identify.backends.GaussianBackend` in (its projection rounded to float16, as
        enrolment reads it back)."""
        dim = backend.components_.shape[0]
        self.components = torch.from_numpy(backend.components_).float()
        self.mean, self.scale = (torch.from_numpy(a).float() for a in (backend.mean_, backend.scale_))
        self.class_means = torch.from_numpy(backend.class_means_).float()
        self.precision = torch.from_numpy(backend.precision_).float()
        self.config.dim = dim


class Fusion:
    """``z_c = a * head_c + b * whisper_c + bias_c`` fitted by maximum likelihood (L2 on the biases)."""

    def fit(self, head: np.ndarray | None, whisper: np.ndarray, y: np.ndarray) -> "Fusion":
        from scipy.optimize import minimize
        from scipy.special import log_softmax

        n_classes = whisper.shape[1]
        head = np.zeros_like(whisper) if head is None else head

        def loss(params: np.ndarray) -> float:
            a, b, bias = params[0], params[1], params[2:]
            z = log_softmax(a * head + b * whisper + bias, axis=1)
            return -z[np.arange(len(y)), y].mean() + FUSION_L2 * (bias ** 2).sum()

        start = np.concatenate([[1.0, 1.0], np.zeros(n_classes)])
        result = minimize(loss, start, method="L-BFGS-B")
        self.weights_, self.bias_ = result.x[:2], result.x[2:]
        return self

    def log_proba(self, head: np.ndarray | None, whisper: np.ndarray) -> np.ndarray:
        from scipy.special import log_softmax

        head = np.zeros_like(whisper) if head is None else head
        return log_softmax(self.weights_[0] * head + self.weights_[1] * whisper + self.bias_, axis=1)


def encoder_of(model: WhisperHead):
    """The encoder a model was trained on, loaded once per process; another encoder's embeddings do not fit it."""
    encoder = load_encoder(model.config.encoder)
    if model.config.encoder_sha256 and encoder.sha256 != model.config.encoder_sha256:
        raise DeepLanguageError(f"this model was trained on Whisper {model.config.encoder!r} with model file sha256 "
                                f"{model.config.encoder_sha256[:16]}..., but that name now loads "
                                f"{encoder.sha256[:16]}...: retrain it, or restore that model (`make setup`).")
    return encoder


def window_spans(n_states: int, window: int, hop: int) -> list[int]:
    """Starts of ``window``-state spans every ``hop`` covering ``n_states`` (the last one ends at the end)."""
    if n_states <= window:
        return [0]
    starts = list(range(0, n_states - window + 1, hop))
    return starts if starts[-1] + window >= n_states else [*starts, n_states - window]


@torch.no_grad()
def score_audio(model: WhisperHead, audio: np.ndarray, window_seconds: float = 3.0,
                hop_seconds: float = 1.0) -> tuple[list[int], torch.Tensor, torch.Tensor, np.ndarray]:
    """One encoder pass over a 16 kHz clip -> window starts (log-mel frames, 100 per second), window probabilities
    ``(n_windows, n_classes)``, the clip's probabilities ``(n_classes,)`` (uncalibrated) and its row ``(1124,)``.

    The windows' embeddings and language-ID come from spans of the clip's own states: one encoding, and
    the equal-length spans' language-ID in one batched decoder step.
    """
    encoder = encoder_of(model)
    states = encoder.states(audio)
    window, hop = round(window_seconds * STATES_PER_SECOND), round(hop_seconds * STATES_PER_SECOND)
    starts = window_spans(len(states), window, hop)
    spans = [states[s: s + window] for s in starts]
    clip_lid = encoder.language_scores([states])
    lid = np.concatenate([clip_lid, encoder.language_scores(spans) if len(spans) > 1 else clip_lid])
    rows = np.stack([np.concatenate([pool(span), scores])
                     for span, scores in zip([states, *spans], lid)]).astype(np.float32)
    probabilities = model(torch.from_numpy(rows)).exp()
    frames_per_state = 100 // STATES_PER_SECOND
    return [s * frames_per_state for s in starts], probabilities[1:], probabilities[0], rows[0]
