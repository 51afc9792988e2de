import numpy as np
import pytest
import torch

from core.study.autoencoder import (AutoencoderConfig, ConvAutoencoder, encode_clip, from_checkpoint, patches,
                              save_dict)
from core.checkpoint import load_checkpoint, save_checkpoint
from core.errors import DeepLanguageError
from tests.conftest import train_steps

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = AutoencoderConfig(n_mels=32, patch_frames=32, channels=4, bottleneck=8)


def test_round_trip_gives_back_the_input_shape():
    model = ConvAutoencoder(AutoencoderConfig())
    x = torch.randn(3, 1, 64, 64)
    assert model.encode(x).shape == (3, 64)
    assert model(x).shape == x.shape


@pytest.mark.slow
def test_one_batch_overfits():
    torch.manual_seed(0)
    model = ConvAutoencoder(SMALL)
    grid = torch.linspace(0, 3.14, 32)
    x = torch.stack([torch.outer(torch.sin(k * grid), torch.cos(k * grid)) for k in (1, 2, 3, 4)])[:, None]
    first, last = train_steps(model, x, n_steps=80, lr=3e-3)
    assert last < 0.5 * first


def test_patches_cut_and_pad_a_clip():
    features = np.random.default_rng(0).normal(size=(32, 100)).astype(np.float32)
    cut = patches(features, 32)
    assert cut.shape == (3, 1, 32, 32)
    assert np.array_equal(cut[1, 0], features[:, 32:64])
    assert patches(features[:, :10], 32).shape == (1, 1, 32, 32)  # short clip: padded to one patch
    assert encode_clip(ConvAutoencoder(SMALL), features).shape == (8,)


def test_checkpoint_round_trip_and_bad_sizes(tmp_path):
    model = ConvAutoencoder(SMALL).eval()
    save_checkpoint(save_dict(model), tmp_path / "ae.pt")
    loaded = from_checkpoint(load_checkpoint(tmp_path / "ae.pt"))
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    with pytest.raises(DeepLanguageError, match="divisible by 16"):
        ConvAutoencoder(AutoencoderConfig(n_mels=40))
