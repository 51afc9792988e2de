"""A convolutional autoencoder on fixed-size log-mel patches; its bottleneck is probed like the LSTM's state.

A patch is ``(batch, 1, n_mels, patch_frames)``. Four stride-2 convolutions shrink it 16 times
on both axes, one linear layer maps that to the bottleneck vector, and the mirror image
(transposed convolutions) rebuilds the patch, so ``decode(encode(x))`` has ``x``'s shape.
A whole clip is encoded as the mean bottleneck of its patches (:func:`encode_clip`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.checkpoint import model_record, rebuild_model
from core.configs import known_fields
from core.errors import DeepLanguageError

N_DOWN = 4  # stride-2 stages: each axis shrinks by 2 ** N_DOWN


@dataclass(frozen=True)
class AutoencoderConfig:
    n_mels: int = 64  # patch height; a multiple of 16
    patch_frames: int = 64  # patch width in 10 ms frames (0.64 s); a multiple of 16
    channels: int = 16  # first conv's channels, doubled at each stage (16, 32, 64, 128)
    bottleneck: int = 64  # size of the code that is probed

    @classmethod
    def from_dict(cls, values: dict) -> "AutoencoderConfig":
        return cls(**known_fields(cls, values))


class ConvAutoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig = AutoencoderConfig()):
        super().__init__()
        step = 2**N_DOWN
        if config.n_mels % step or config.patch_frames % step:
            raise DeepLanguageError(f"the autoencoder needs n_mels and patch_frames divisible by {step}; "
                                    f"got {config.n_mels} and {config.patch_frames}.")
        self.config = config
        widths = [1] + [config.channels * 2**i for i in range(N_DOWN)]
        down, up = [], []
        for i in range(N_DOWN):
            down += [nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1), nn.GELU()]
        for i in reversed(range(N_DOWN)):
            up += [nn.ConvTranspose2d(widths[i + 1], widths[i], 4, stride=2, padding=1)]
            if i:
                up.append(nn.GELU())
        self.shape = (widths[-1], config.n_mels // step, config.patch_frames // step)
        flat = int(np.prod(self.shape))
        self.down = nn.Sequential(*down, nn.Flatten(), nn.Linear(flat, config.bottleneck))
        self.up = nn.Sequential(nn.Linear(config.bottleneck, flat), nn.GELU(), nn.Unflatten(1, self.shape), *up)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, n_mels, patch_frames)`` -> ``(batch, bottleneck)``."""
        return self.down(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(batch, bottleneck)`` -> ``(batch, 1, n_mels, patch_frames)``."""
        return self.up(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(self(x), x)


def patches(features: np.ndarray, patch_frames: int, max_patches: int | None = None) -> np.ndarray:
    """Non-overlapping patches of one clip: ``(n_mels, n_frames)`` -> ``(n, 1, n_mels, patch_frames)``.

    A clip shorter than one patch is padded with its own mean (zero after normalisation).
    """
    n_mels, n_frames = features.shape
    if n_frames < patch_frames:
        features = np.pad(features, ((0, 0), (0, patch_frames - n_frames)), constant_values=features.mean())
        n_frames = patch_frames
    n = n_frames // patch_frames
    if max_patches:
        n = min(n, max_patches)
    cut = features[:, : n * patch_frames].reshape(n_mels, n, patch_frames)
    return np.ascontiguousarray(cut.transpose(1, 0, 2)[:, None], dtype=np.float32)


@torch.no_grad()
def encode_clip(model: ConvAutoencoder, features: np.ndarray) -> np.ndarray:
    """A clip's code: the mean bottleneck over its patches, ``(bottleneck,)``."""
    x = torch.from_numpy(patches(features, model.config.patch_frames))
    return model.encode(x).mean(dim=0).numpy()


def save_dict(model: ConvAutoencoder) -> dict:
    """What a checkpoint stores to rebuild the model (:func:`core.checkpoint.model_record`)."""
    return model_record("autoencoder", asdict(model.config), model.state_dict())


def from_checkpoint(checkpoint: dict, path: str | Path = "") -> ConvAutoencoder:
    """Rebuild a model from a checkpoint dict; the stored architecture wins over any default."""
    return rebuild_model(checkpoint, lambda kind, config: ConvAutoencoder(AutoencoderConfig.from_dict(config)), path,
                         kinds=("autoencoder",))
