"""Classical language identification for small data: GMM-UBM supervectors and logistic regression.

With a few minutes of speech per language, a network trained from scratch learns little
(see checkpoints/identify-gmm/README.md); the classical recipe of the NIST LRE era does
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
        return features, loudest(x.mean(1), self.config.speech_fraction)

    def posteriors(self, features: torch.Tensor, speech: torch.Tensor | None = None) -> torch.Tensor:
        """UBM posteriors ``(..., n_frames, n_components)`` of frames ``(..., n_frames, frame_dim)``, zero where
        ``speech`` ``(..., n_frames)`` is False (all frames count when it is None)."""
        weights, constant = self._scoring()
        # Every component's diagonal log-likelihood, -0.5 f^2 / var + f mu / var + constant, in one product.
        squares_and_values = torch.cat([features * features, features], dim=-1)
        log_likelihood = torch.addmm(constant, squares_and_values.flatten(0, -2), weights)
        posteriors = torch.softmax(log_likelihood, dim=-1).view(*features.shape[:-1], -1)
        return posteriors if speech is None else posteriors * speech[..., None]

    def _scoring(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The UBM as one ``(2 frame_dim, n_components)`` matrix and a ``(n_components,)`` constant, computed once per
        set of UBM buffers: loading or fitting a UBM (in place or by assignment) computes them again."""
        buffers = (self.ubm_weights, self.ubm_means, self.ubm_variances)
        key = tuple((id(b), b._version, b.device, b.dtype) for b in buffers)
        if getattr(self, "_scoring_key", None) != key:
            precision = 1.0 / self.ubm_variances  # (k, d)
            constant = self.ubm_weights.log() - 0.5 * (self.ubm_variances.log().sum(1)
                                                       + (self.ubm_means ** 2 * precision).sum(1)
                                                       + self.config.frame_dim * math.log(2 * math.pi))
            self._scoring_cache = (torch.cat([-0.5 * precision, self.ubm_means * precision], dim=1).T.contiguous(),
                                   constant)
            self._scoring_key = key
        return self._scoring_cache

    def shifts(self, counts: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """Raw supervectors ``(batch, n_components * frame_dim)`` from zeroth- and first-order statistics: posterior
        counts ``(batch, n_components)`` and posterior-weighted frame sums ``(batch, n_components, frame_dim)``."""
        # MAP-adapted mean minus the UBM's: (first - n mu) / (n + r), in the KL kernel's scale sqrt(w) / sigma.
        shift = (first - counts[:, :, None] * self.ubm_means) / (counts[:, :, None] + self.config.relevance)
        return (self.ubm_weights.sqrt()[:, None] * shift / self.ubm_variances.sqrt()).flatten(1)

    def supervectors(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, n_frames)`` -> raw (unstandardised) supervectors ``(batch, n_components * frame_dim)``."""
        features, speech = self.frames(x)
        posteriors = self.posteriors(features, speech)  # (batch, n_frames, k)
        return self.shifts(posteriors.sum(1), posteriors.transpose(1, 2) @ features)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, n_frames)`` -> standardised supervector ``(batch, embedding_dim)``."""
        return (self.supervectors(x) - self.scaler_mean) / self.scaler_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.embed(x)))

    @torch.no_grad()
    def clip_and_ranges(self, x: torch.Tensor, ranges: list[tuple[int, int]]) -> torch.Tensor:
        """Logits ``(1 + n_ranges, n_classes)`` of one whole clip and of frame ranges of it, from one pass over it.

        ``x`` is the clip mean-normalised, ``(1, n_mels, n_frames)``; row 0 is ``forward(x)`` (to float rounding).
        Rows 1.. score the ``[start, end)`` ranges (identify's timeline) from the clip's own frames: cepstra
        normalised over the whole clip, speech the clip's loudest frames, and the statistics of each range summed
        from those of the segments between range boundaries. So each frame is scored against the UBM once, not
        once per window that holds it (three times, for 3 s windows every 1 s).
        """
        features, speech = self.frames(x)
        features, speech = features[0], speech[0]
        # Only speech frames count, so only they are scored; `before[t]`: speech frames before frame t.
        before = F.pad(speech.cumsum(0), (1, 0)).tolist()
        features = features[speech]
        posteriors = self.posteriors(features)
        n_frames = len(before) - 1
        cuts = sorted({0, n_frames, *(min(max(b, 0), n_frames) for r in ranges for b in r)})
        segments = list(zip(cuts[:-1], cuts[1:]))
        spans = [(before[a], before[b]) for a, b in segments]  # the segments' rows among the speech frames
        counts = torch.stack([posteriors[a:b].sum(0) for a, b in spans])  # (n_segments, k)
        first = torch.stack([posteriors[a:b].T @ features[a:b] for a, b in spans])  # (n_segments, k, d)
        # Which segments make up each row: the whole clip, then each range.
        rows = torch.tensor([[1.0] * len(segments)] + [[float(start <= a and b <= end) for a, b in segments]
                                                          for start, end in ranges], dtype=features.dtype,
                            device=features.device)
        counts, first = rows @ counts, (rows @ first.flatten(1)).view(len(rows), *first.shape[1:])
        # forward()'s steps after the statistics, with the scalings folded into the classifier's weights.
        shift = (first - counts[:, :, None] * self.ubm_means) / (counts[:, :, None] + self.config.relevance)
        weight, bias = self._folded_classifier()
        return torch.addmm(bias, shift.flatten(1), weight)

    def _folded_classifier(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The classifier applied to raw MAP shifts ``(batch, n_components * frame_dim)``: the KL scaling
        sqrt(w) / sigma and the standardisation folded into its weights ``(embedding_dim, n_classes)`` and bias,
        computed once per set of weights and buffers (as :meth:`_scoring`)."""
        tensors = (self.ubm_weights, self.ubm_variances, self.scaler_mean, self.scaler_scale,
                   self.classifier.weight, self.classifier.bias)
        key = tuple((id(t), t._version, t.device, t.dtype) for t in tensors)
        if getattr(self, "_folded_key", None) != key:
            with torch.no_grad():
                kl = (self.ubm_weights.sqrt()[:, None] / self.ubm_variances.sqrt()).flatten()
                weight = self.classifier.weight / self.scaler_scale  # (n_classes, embedding_dim)
                bias = self.classifier.bias - weight @ self.scaler_mean
                self._folded = ((weight * kl).T.contiguous(), bias)
            self._folded_key = key
        return self._folded


def loudest(loudness: torch.Tensor, fraction: float) -> torch.Tensor:
    """True for the loudest ``fraction`` of each row of ``loudness`` ``(batch, n_frames)``.

    The same mask as ``loudness >= torch.quantile(loudness, 1 - fraction, dim=1)``, with the quantile computed as
    torch does (rank ``(1 - fraction) (n - 1)`` in the input's dtype, linear interpolation between the two sorted
    values around it) but each of those two values found by ``kthvalue`` instead of sorting every row: several
    times faster on identify's windows.
    """
    n_frames = loudness.shape[1]
    rank = torch.tensor(1 - fraction, dtype=loudness.dtype) * (n_frames - 1)
    below, above = int(rank), math.ceil(float(rank))
    low = loudness.kthvalue(below + 1, dim=1, keepdim=True).values
    if above == below:
        return loudness >= low
    high = loudness.kthvalue(above + 1, dim=1, keepdim=True).values
    return loudness >= low.lerp_(high, float(rank - below))  # float32 weight, as a Python number: any device
