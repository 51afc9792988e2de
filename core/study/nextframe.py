"""The next-frame LSTM: reads log-mel frames one 10 ms step at a time and predicts the next one.

It is the model of the pretraining study (``core.study``): what it must learn to predict
frame ``t + 1`` from frames ``<= t`` is the sound pattern of the language it hears, and its
final state ``(h, c)`` is what ``core.study.latents`` extracts and ``core.study.probes`` probes.

Shapes: inputs are ``(batch, n_frames, n_mels)`` (time-major rows, as ``nn.LSTM(batch_first=True)``
wants; cached features are ``(n_mels, n_frames)`` and are transposed once when batched).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from core.checkpoint import model_record, rebuild_model
from core.configs import known_fields
from core.errors import DeepLanguageError


@dataclass(frozen=True)
class NextFrameConfig:
    n_mels: int = 64  # input and output frame size
    hidden_size: int = 128  # LSTM units per layer: 128 runs ~45 steps/s (batch 32, 1 s crops) on one core
    n_layers: int = 1
    dropout: float = 0.0  # between LSTM layers (only when n_layers > 1)

    @classmethod
    def from_dict(cls, values: dict) -> "NextFrameConfig":
        return cls(**known_fields(cls, values))


class NextFrameLSTM(nn.Module):
    """``forward(x)`` -> prediction of ``x[:, t + 1]`` at every ``t``: ``(batch, n_frames, n_mels)``."""

    def __init__(self, config: NextFrameConfig = NextFrameConfig()):
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.n_mels, config.hidden_size, num_layers=config.n_layers, batch_first=True,
                            dropout=config.dropout if config.n_layers > 1 else 0.0)
        self.head = nn.Linear(config.hidden_size, config.n_mels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(x)
        return self.head(output)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared error of predicting frames ``1..T-1`` from frames ``0..T-2`` of ``x``."""
        if x.shape[1] < 2:
            raise DeepLanguageError("next-frame prediction needs clips of at least two frames.")
        return nn.functional.mse_loss(self(x[:, :-1]), x[:, 1:])

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The state after reading ``x``: ``(h_last, c_last, h_mean)``, each ``(batch, hidden_size)``.

        ``h_last`` and ``c_last`` are the top layer's final hidden and cell states; ``h_mean`` is
        the top layer's hidden state averaged over time.
        """
        output, (h, c) = self.lstm(x)
        return h[-1], c[-1], output.mean(dim=1)


def save_dict(model: NextFrameLSTM) -> dict:
    """What a checkpoint stores to rebuild the model (:func:`core.checkpoint.model_record`)."""
    return model_record("nextframe", asdict(model.config), model.state_dict())


def from_checkpoint(checkpoint: dict, path: str | Path = "") -> NextFrameLSTM:
    """Rebuild a model from a checkpoint dict; the stored architecture wins over any default."""
    return rebuild_model(checkpoint, lambda kind, config: NextFrameLSTM(NextFrameConfig.from_dict(config)), path,
                         kinds=("nextframe",))
