"""Classical language identification for small data: GMM-UBM supervectors and logistic regression.

With a few minutes of speech per language, a network trained from scratch learns little
(see checkpoints/identify-default/README.md); the classical recipe of the NIST LRE era does
better with the same data:

1. frames: MFCCs (the DCT of the log-mel, mean- and variance-normalised over time within
   each window) and shifted-delta cepstra (SDC 7-1-3-7), on the loudest frames only (speech);
2. a universal background model (UBM): a diagonal Gaussian mixture fitted to frames of every
   training language (plus ``background_languages``, whose speech helps even though they are
   never answered);
3. per utterance, a supervector: the UBM means MAP-adapted to its frames, minus the UBM's, scaled
   by sqrt(weight) / sigma (the KL-divergence kernel's space);
4. a multinomial logistic regression on the standardised supervectors;
5. a clip's answer from one supervector of the whole clip (``score_on="clips"``, clips up to 30 s:
   more frames make better statistics), the 3 s windows only drawing identify's timeline.

sklearn fits the UBM and the regression (:func:`core.identify.gmm.fit`); the fitted numbers become buffers and
weights of :class:`GMMSupervector`, an ``nn.Module`` like every model in :mod:`core.models`:
``(batch, n_mels, n_frames)`` per-band mean-normalised windows in, ``(batch, n_classes)`` logits out, so a
checkpoint holds plain tensors (``weights_only=True``) and identify, evaluate and the
cross-validation use it unchanged. Background languages are trained as extra classes and then
dropped: softmax over the kept rows equals the full softmax renormalised over them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
import torch
from torch import nn
from torch.nn import functional as F


KINDS = ("gmm-supervector",)


@dataclass
class GMMSupervectorConfig:
    n_mels: int = 64  # input mel bands
    n_classes: int = 6  # languages answered
    n_cepstra: int = 7  # MFCCs c0..c(N-1) per frame; SDC is built from the same N
    sdc_spread: int = 1  # SDC N-d-P-k: delta over +-d frames ...
    sdc_shift: int = 3  # ... taken every P frames ...
    sdc_blocks: int = 7  # ... k times
    speech_fraction: float = 0.7  # loudest fraction of each window's frames kept as speech
    n_components: int = 128  # diagonal Gaussians in the UBM
    relevance: float = 16.0  # MAP relevance factor: components with fewer frames stay near the UBM
    inverse_regularization: float = 0.01  # C of the logistic regression (smaller = stronger L2)
    ubm_frames: int = 100_000  # frames sampled to fit the UBM
    ubm_iterations: int = 30  # EM iterations
    background_languages: tuple[str, ...] = ()  # dataset languages used as extra classes and UBM data, never answered
    fit_on: str = "windows"  # regression examples: "windows" as identify cuts a clip (3 s every 1 s), or whole "clips"
    score_on: str = "clips"  # a clip's answer: one pass over the whole "clips" (up to 30 s), or the mean of its "windows"
    backend: str = "lr"  # "lr": logistic regression; "gauss": Gaussian classes in a projection (can enrol languages)
    backend_dim: int = 200  # principal axes of the Gaussian backend (at most n_train_clips - n_classes are used)
    enrollable: bool = True  # also keep a Gaussian backend (~3 MB) so `enroll` can add languages
    augment: tuple[str, ...] = ()  # copies of each training clip (core.identify.augment.KINDS), e.g. speed0.9
    dropout: float = 0.0  # before the classifier; only for gradient fine-tuning (fit() does not use it)

    @property
    def frame_dim(self) -> int:
        return self.n_cepstra * (1 + self.sdc_blocks)


class GMMSupervector(nn.Module):
    """frames (MFCC + SDC, speech only) -> UBM posteriors -> MAP mean shifts -> standardise -> linear.

    A fresh model has a placeholder UBM (seeded random means, unit variances, flat weights), so it
    runs and trains by gradient; :func:`fit` puts the fitted UBM and regression in.
    """

    input_normalization = "per-window-mean"  # variance-normalising each band first would distort the cepstra

    def __init__(self, config: GMMSupervectorConfig):
        super().__init__()
        self.config = config
        k, d = config.n_components, config.frame_dim
        dct = scipy.fft.dct(np.eye(config.n_mels), type=2, norm="ortho", axis=0)[: config.n_cepstra]
        self.register_buffer("dct", torch.from_numpy(dct).float())  # (n_cepstra, n_mels)
        placeholder = torch.randn(k, d, generator=torch.Generator().manual_seed(0))
        self.register_buffer("ubm_weights", torch.full((k,), 1.0 / k))
        self.register_buffer("ubm_means", placeholder)
        self.register_buffer("ubm_variances", torch.ones(k, d))
        self.register_buffer("scaler_mean", torch.zeros(k * d))
        self.register_buffer("scaler_scale", torch.ones(k * d))
        self.classifier = nn.Linear(k * d, config.n_classes)
        self.dropout = nn.Dropout(config.dropout)

    @property
    def scores_whole_clips(self) -> bool:
        """See :func:`core.models.scores_whole_clip`: identify and evaluation answer from the whole clip."""
        return self.config.score_on == "clips"

    @property
    def embedding_dim(self) -> int:
        return self.config.n_components * self.config.frame_dim

    def frames(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, n_mels, n_frames)`` -> frames ``(batch, n_frames, frame_dim)`` and speech mask ``(batch, n_frames)``."""
        c = torch.einsum("cm,bmt->bct", self.dct, x)
        c = (c - c.mean(2, keepdim=True)) / c.std(2, keepdim=True, unbiased=False).clamp(min=1e-5)
        d, p, k = self.config.sdc_spread, self.config.sdc_shift, self.config.sdc_blocks
        n_frames = x.shape[2]
        padded = F.pad(c, (d, d + p * (k - 1)), mode="replicate")
        sdc = [padded[:, :, i * p + 2 * d: i * p + 2 * d + n_frames] - padded[:, :, i * p: i * p + n_frames]
               for i in range(k)]
        features = torch.cat([c, *sdc], dim=1).transpose(1, 2)
        # Inputs are mean-normalised per band, so absolute level is gone; the mean over bands still ranks frames
        # by loudness within the window.
        loudness = x.mean(1)
        threshold = torch.quantile(loudness, 1 - self.config.speech_fraction, dim=1, keepdim=True)
        return features, loudness >= threshold

    def supervectors(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, n_frames)`` -> raw (unstandardised) supervectors ``(batch, n_components * frame_dim)``."""
        features, speech = self.frames(x)
        precision = 1.0 / self.ubm_variances  # (k, d)
        constant = (self.ubm_weights.log() - 0.5 * (self.ubm_variances.log().sum(1)
                    + (self.ubm_means ** 2 * precision).sum(1) + features.shape[2] * math.log(2 * math.pi)))
        log_likelihood = (constant - 0.5 * (features ** 2) @ precision.T + features @ (self.ubm_means * precision).T)
        posteriors = torch.softmax(log_likelihood, dim=2) * speech[:, :, None]  # (batch, n_frames, k)
        counts = posteriors.sum(1)  # (batch, k)
        first = posteriors.transpose(1, 2) @ features  # (batch, k, d)
        # MAP-adapted mean minus the UBM's: (first - n mu) / (n + r).
        shift = (first - counts[:, :, None] * self.ubm_means) / (counts[:, :, None] + self.config.relevance)
        return (self.ubm_weights.sqrt()[:, None] * shift / self.ubm_variances.sqrt()).flatten(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, n_frames)`` -> standardised supervector ``(batch, embedding_dim)``."""
        return (self.supervectors(x) - self.scaler_mean) / self.scaler_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.embed(x)))


