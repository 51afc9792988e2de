"""Language-identification models over log-mels: input ``(batch, n_mels, n_frames)``, output logits.

Every model takes per-window normalised log-mels of any length (it pools over time), returns
``(batch, n_classes)`` logits from ``forward`` and the pooled ``(batch, embedding_dim)``
vector from ``embed`` (the study uses it as a latent kind). One ``@dataclass`` config per
model; :func:`build_model` rebuilds a model from its kind and ``asdict(config)``, which is
what a checkpoint stores.

* ``cnn-baseline``: the original project's network, 2 conv + 2 fully connected layers, with
  a stride-2 first conv (6x faster on CPU) and mean pooling over time so any length works.
* ``gmm-supervector``: not a network but the classical small-data recipe (UBM supervectors of
  MFCC + SDC frames and a logistic regression, see :mod:`core.classic`), fitted in closed form
  by ``core.train.fit``; it takes per-window mean-normalised windows (``input_normalization``).
* ``resnet-asp``: a small ResNet over (frequency, time) whose frequency axis is folded into
  channels, then attentive statistics pooling (weighted mean and standard deviation over
  time), as in ECAPA-TDNN / x-vector systems. Chosen over the baseline by speaker-grouped
  cross-validation (see checkpoints/identify-gmm/metrics.json).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F

from core.identify import pretrained, supervector  # fitted in closed form (core.identify.gmm, .pretrained_fit)
from core.identify.kinds import GMM_KINDS, NEURAL_KINDS, PRETRAINED_KINDS
from core.errors import DeepLanguageError


@dataclass
class CNNBaselineConfig:
    n_mels: int = 64  # input mel bands
    n_classes: int = 6  # languages
    channels: tuple[int, int] = (16, 32)  # output channels of the two conv layers
    hidden: int = 128  # width of the first fully connected layer: the embedding
    dropout: float = 0.3  # before each fully connected layer


class CNNBaseline(nn.Module):
    """conv(3x3, stride 2) -> pool -> conv(3x3) -> pool -> mean over time -> FC -> FC."""

    def __init__(self, config: CNNBaselineConfig):
        super().__init__()
        self.config = config
        c1, c2 = config.channels
        self.conv1 = nn.Conv2d(1, c1, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c2)
        n_freq = config.n_mels // 2 // 2 // 2  # stride 2, then two 2x2 max pools
        self.fc1 = nn.Linear(c2 * n_freq, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.n_classes)
        self.dropout = nn.Dropout(config.dropout)

    @property
    def embedding_dim(self) -> int:
        return self.config.hidden

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, n_frames)`` -> ``(batch, hidden)``."""
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x.unsqueeze(1)))), 2, ceil_mode=True)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2, ceil_mode=True)
        x = x[:, :, : self.fc1.in_features // x.shape[1]]  # ceil_mode may add a frequency row
        x = x.mean(dim=3).flatten(1)  # (batch, channels * n_freq): pooled over time
        return F.relu(self.fc1(self.dropout(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.embed(x)))


@dataclass
class ResNetASPConfig:
    n_mels: int = 64  # input mel bands
    n_classes: int = 6  # languages
    channels: tuple[int, ...] = (16, 32, 64)  # one residual stage each; every stage halves both axes
    blocks_per_stage: int = 1  # residual blocks per stage
    attention_dim: int = 64  # hidden width of the attention that weights frames
    embedding_dim: int = 128  # the pooled embedding, before the classifier
    dropout: float = 0.2  # before the classifier


class _ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class AttentiveStatsPool(nn.Module):
    """Weighted mean and standard deviation over time: ``(batch, dim, n_frames)`` -> ``(batch, 2 dim)``.

    A small network scores every frame (per channel), so silence and uninformative frames
    count for less than in a plain mean.
    """

    def __init__(self, dim: int, attention_dim: int):
        super().__init__()
        self.attention = nn.Sequential(nn.Conv1d(dim, attention_dim, 1), nn.Tanh(), nn.Conv1d(attention_dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.attention(x), dim=2)
        mean = (weights * x).sum(dim=2)
        var = (weights * x * x).sum(dim=2) - mean * mean
        return torch.cat([mean, var.clamp(min=1e-6).sqrt()], dim=1)


class ResNetASP(nn.Module):
    """stem conv (stride 2) -> residual stages -> fold frequency into channels -> attentive stats pool -> FC."""

    def __init__(self, config: ResNetASPConfig):
        super().__init__()
        self.config = config
        channels = list(config.channels)
        self.stem = nn.Sequential(nn.Conv2d(1, channels[0], 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(channels[0]), nn.ReLU())
        layers, c_in, n_freq = [], channels[0], (config.n_mels + 1) // 2
        for i, c_out in enumerate(channels):
            for j in range(config.blocks_per_stage):
                stride = 2 if j == 0 else 1  # 4x fewer positions than stride 1 in stage 1
                layers.append(_ResidualBlock(c_in, c_out, stride))
                n_freq = (n_freq + 1) // 2 if stride == 2 else n_freq
                c_in = c_out
        self.stages = nn.Sequential(*layers)
        frame_dim = c_in * n_freq
        self.pool = AttentiveStatsPool(frame_dim, config.attention_dim)
        self.fc = nn.Linear(2 * frame_dim, config.embedding_dim)
        self.bn = nn.BatchNorm1d(config.embedding_dim)
        self.classifier = nn.Linear(config.embedding_dim, config.n_classes)
        self.dropout = nn.Dropout(config.dropout)

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, n_frames)`` -> ``(batch, embedding_dim)``."""
        x = self.stages(self.stem(x.unsqueeze(1)))  # (batch, channels, n_freq, n_frames / 16)
        x = x.flatten(1, 2)  # frequency folded into channels: (batch, channels * n_freq, frames)
        return self.bn(F.relu(self.fc(self.pool(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.embed(x)))


MODELS = dict(zip(NEURAL_KINDS, [(CNNBaselineConfig, CNNBaseline), (ResNetASPConfig, ResNetASP)], strict=True))
MODELS.update({kind: (supervector.GMMSupervectorConfig, supervector.GMMSupervector) for kind in GMM_KINDS})
MODELS.update({kind: (pretrained.WhisperHeadConfig, pretrained.WhisperHead) for kind in PRETRAINED_KINDS})
DEFAULT_MODEL = "resnet-asp"


def model_config(kind: str, values: dict | None = None):
    """The config dataclass of ``kind`` from a dict (unknown keys are a user error)."""
    if kind not in MODELS:
        raise DeepLanguageError(f"unknown model kind {kind!r}; choose one of {', '.join(MODELS)}.")
    config_class = MODELS[kind][0]
    values = dict(values or {})
    names = {f.name for f in fields(config_class)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise DeepLanguageError(f"model {kind} has no setting(s) {', '.join(unknown)}; it has {', '.join(sorted(names))}.")
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)  # JSON and checkpoints give lists
    return config_class(**values)


def build_model(kind: str, config: dict | None = None) -> nn.Module:
    """A fresh model of ``kind`` (see :data:`MODELS`) built from ``asdict(config)``."""
    config = model_config(kind, config)
    return MODELS[kind][1](config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def window_starts(n_frames: int, window: int, hop: int) -> list[int]:
    """Start frames of ``window``-frame windows every ``hop`` frames.

    A clip no longer than one window is a single window. When the regular windows leave at
    least half a hop of the clip's end uncovered, one more window ends exactly at the end.
    """
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, hop))
    if n_frames - (starts[-1] + window) >= max(1, hop // 2):
        starts.append(n_frames - window)
    return starts


NORMALIZATIONS = ("per-window", "per-window-mean")  # what a model expects of its input windows


def normalize_windows(x: torch.Tensor, eps: float = 1e-5, kind: str = "per-window") -> torch.Tensor:
    """Per-window, per-band normalisation of ``(batch, n_mels, n_frames)``: mean and variance ("per-window"),
    or the mean only ("per-window-mean", which keeps each band's spread: cepstra need it).

    "per-window" is :func:`core.features.normalize_utterance` applied to each window a model
    sees, in training and at inference alike.
    """
    if kind not in NORMALIZATIONS:
        raise DeepLanguageError(f"unknown input normalization {kind!r}; choose one of {', '.join(NORMALIZATIONS)}.")
    mean = x.mean(dim=-1, keepdim=True)
    if kind == "per-window-mean":
        return x - mean
    # E[x^2] - E[x]^2: ten times faster than torch.std's Welford pass, and exact enough for
    # log-mels (values of a few units over hundreds of frames).
    var = (x * x).mean(dim=-1, keepdim=True) - mean * mean
    return (x - mean) / var.clamp_(min=0).sqrt_().clamp_(min=eps)


def input_normalization(model: nn.Module) -> str:
    """The normalisation ``model`` expects of its windows: its ``input_normalization``, else "per-window"."""
    return getattr(model, "input_normalization", "per-window")


def clip_windows(features: torch.Tensor, window: int, hop: int,
                 normalization: str = "per-window") -> tuple[list[int], torch.Tensor]:
    """Cut one clip's raw log-mel ``(n_mels, n_frames)`` into normalised windows ``(n_windows, n_mels, window)``.

    A clip shorter than a window is tiled to fill it, as training crops are. ``normalization``:
    see :func:`normalize_windows` (pass :func:`input_normalization` of the model that will see them).
    """
    if features.shape[1] < window:
        features = features.repeat(1, -(-window // features.shape[1]))[:, :window]
    starts = window_starts(features.shape[1], window, hop)
    windows = torch.stack([features[:, s: s + window] for s in starts])
    return starts, normalize_windows(windows, kind=normalization)


@torch.no_grad()
def predict_batches(model: nn.Module, windows: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Class probabilities ``(n_windows, n_classes)`` of normalised windows; the model must be in eval mode."""
    return torch.cat([torch.softmax(model(windows[i: i + batch_size]), dim=1)
                      for i in range(0, len(windows), batch_size)])


WHOLE_CLIP_MAX_SECONDS = 30.0  # a whole-clip model answers longer clips from the mean of its windows


def scores_whole_clip(model: nn.Module, n_frames: int, frames_per_second: float) -> bool:
    """Whether ``model`` answers a clip of ``n_frames`` from one pass over the whole clip.

    Models with a true ``scores_whole_clips`` attribute (the GMM supervector: more frames, better
    statistics) do, for clips up to :data:`WHOLE_CLIP_MAX_SECONDS`; every other model, and longer
    clips, answer from the mean of their windows' probabilities.
    """
    return bool(getattr(model, "scores_whole_clips", False)) and n_frames <= WHOLE_CLIP_MAX_SECONDS * frames_per_second


@torch.no_grad()
def predict_whole_clip(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``(n_classes,)`` of one clip's raw log-mel ``(n_mels, n_frames)`` seen as one window."""
    x = normalize_windows(features[None], kind=input_normalization(model))
    return torch.softmax(model(x.to(next(model.parameters()).device)), dim=1)[0].cpu()


@torch.no_grad()
def predict_clip(model: nn.Module, features: torch.Tensor, window: int, hop: int,
                 frames_per_second: float) -> tuple[list[int], torch.Tensor, torch.Tensor | None]:
    """What identify needs of one clip's raw log-mel ``(n_mels, n_frames)``: the start frames of its windows, their
    class probabilities ``(n_windows, n_classes)``, and the whole clip's ``(n_classes,)`` when the model answers
    from the whole clip (:func:`scores_whole_clip`), else None.

    A whole-clip model that scores frame ranges of a clip (``clip_and_ranges``: the GMM supervector) gives all of
    it from one pass over the clip's frames; its windows are then scored on the clip's own frames (cepstra
    normalised over the clip, the clip's loudest frames as speech: see
    :meth:`core.identify.supervector.GMMSupervector.clip_and_ranges`), and a clip shorter than a window is its
    single window, untiled. Every other model scores each window on its own, as :func:`predict_windows`.
    """
    n_frames = features.shape[1]
    whole = scores_whole_clip(model, n_frames, frames_per_second)
    with one_thread():
        if whole and hasattr(model, "clip_and_ranges"):
            starts = window_starts(n_frames, window, hop)
            x = normalize_windows(features[None], kind=input_normalization(model))
            ranges = [(s, min(s + window, n_frames)) for s in starts]
            probs = torch.softmax(model.clip_and_ranges(x.to(next(model.parameters()).device), ranges), dim=1).cpu()
            return starts, probs[1:], probs[0]
        starts, probs = predict_windows(model, features, window, hop)
        return starts, probs, predict_whole_clip(model, features) if whole else None


@contextmanager
def one_thread():
    """Run torch on one intra-op thread inside the block (then as before).

    One clip's products are a few tens of MFLOP: a second thread saves little on an idle machine and, when
    another job holds a core, every op waits for it (identify of a 10 s clip: 7.6 ms on one thread, 74 ms on
    two, measured on this 2-core machine with one core busy).
    """
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n_threads)


def predict_windows(model: nn.Module, features: torch.Tensor, window: int, hop: int) -> tuple[list[int], torch.Tensor]:
    """Start frames and class probabilities ``(n_windows, n_classes)`` of one clip's raw log-mel."""
    starts, windows = clip_windows(features, window, hop, input_normalization(model))
    return starts, predict_batches(model, windows)


def describe(model: nn.Module, kind: str) -> dict:
    """Kind, config and size of a model, for logs and metrics files."""
    return {"kind": kind, "config": asdict(model.config), "parameters": count_parameters(model)}


__all__ = ["CNNBaselineConfig", "CNNBaseline", "ResNetASPConfig", "ResNetASP", "MODELS", "DEFAULT_MODEL",
           "build_model", "model_config", "count_parameters", "window_starts", "normalize_windows",
           "NORMALIZATIONS", "input_normalization", "WHOLE_CLIP_MAX_SECONDS", "scores_whole_clip", "predict_whole_clip",
           "clip_windows", "predict_batches", "predict_windows", "predict_clip", "describe"]
