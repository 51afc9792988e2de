from dataclasses import asdict

import numpy as np
import pytest
import torch

from core.checkpoint import load_checkpoint, save_checkpoint
from core.errors import DeepLanguageError
from core.study import autoencoder
from core.study.layout import DEMO_STUDY_DIR, DOSE_STUDY_DIR, MATRIX_STUDY_DIR, REAL_STUDY_DIR, study_runs
from core.study.nextframe import NextFrameConfig, NextFrameLSTM, from_checkpoint, save_dict
from tests.conftest import train_steps

pytestmark = pytest.mark.usefixtures("one_thread")


def smooth_sequences(n: int = 8, n_frames: int = 60, n_mels: int = 16, seed: int = 0) -> torch.Tensor:
    """Slowly drifting sinusoids per band: the next frame is predictable from the past."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames)[None, :, None]
    freq = rng.uniform(0.05, 0.2, size=(n, 1, n_mels))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, n_mels))
    return torch.from_numpy(np.sin(freq * t + phase).astype(np.float32))


@pytest.mark.slow
def test_the_next_frame_loss_falls():
    torch.manual_seed(0)
    model = NextFrameLSTM(NextFrameConfig(n_mels=16, hidden_size=32))
    x = smooth_sequences()
    first, last = train_steps(model, x, n_steps=40, lr=1e-2)
    assert last < 0.5 * first


def test_prediction_at_t_depends_only_on_frames_up_to_t():
    model = NextFrameLSTM(NextFrameConfig(n_mels=8, hidden_size=16)).eval()
    x = smooth_sequences(2, 30, 8)
    changed = x.clone()
    changed[:, 20:] += 5.0  # the future changes; predictions before it must not
    with torch.no_grad():
        assert torch.allclose(model(x)[:, :20], model(changed)[:, :20])
        assert not torch.allclose(model(x)[:, 20:], model(changed)[:, 20:])


@pytest.mark.parametrize("n_layers", [1, 2])
def test_encode_gives_last_states_and_the_mean(n_layers):
    model = NextFrameLSTM(NextFrameConfig(n_mels=8, hidden_size=12, n_layers=n_layers))
    h, c, h_mean = model.encode(smooth_sequences(3, 25, 8))
    assert h.shape == c.shape == h_mean.shape == (3, 12)
    assert not torch.allclose(h, c)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = NextFrameLSTM(NextFrameConfig(n_mels=8, hidden_size=12)).eval()
    save_checkpoint(save_dict(model), tmp_path / "m.pt")
    loaded = from_checkpoint(load_checkpoint(tmp_path / "m.pt"))
    x = smooth_sequences(2, 20, 8)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.config == model.config


def test_the_first_study_schema_still_loads(tmp_path):
    """Study checkpoints written before the common schema ({model_kind, model_config, model})."""
    model = NextFrameLSTM(NextFrameConfig(n_mels=8, hidden_size=12)).eval()
    torch.save({"model_kind": "nextframe", "model_config": asdict(model.config), "model": model.state_dict(),
                "seed": 3}, tmp_path / "old.pt")
    checkpoint = load_checkpoint(tmp_path / "old.pt")
    assert checkpoint["model"]["kind"] == "nextframe" and checkpoint["seed"] == 3
    x = smooth_sequences(2, 20, 8)
    with torch.no_grad():
        assert torch.equal(model(x), from_checkpoint(checkpoint)(x))


def test_a_first_schema_study_checkpoint_still_loads(tmp_path):
    """Study files of the first schema ({model_kind, model_config, model}) load through the one upgrade path."""
    torch.manual_seed(0)
    model = NextFrameLSTM(NextFrameConfig(n_mels=8, hidden_size=4)).eval()
    first = {"model_kind": "nextframe", "model_config": asdict(model.config), "model": model.state_dict(), "seed": 0}
    save_checkpoint(first, tmp_path / "last.pt")
    loaded = from_checkpoint(load_checkpoint(tmp_path / "last.pt"), tmp_path / "last.pt")
    x = torch.randn(2, 5, 8)
    assert not loaded.training and torch.equal(model(x), loaded(x))


def test_every_run_of_the_shipped_studies_keeps_what_the_pages_read():
    for study in (DEMO_STUDY_DIR, REAL_STUDY_DIR, MATRIX_STUDY_DIR, DOSE_STUDY_DIR):
        run_dirs = study_runs(study)
        assert len(run_dirs) >= 4, study
        for run_dir in run_dirs:
            assert (run_dir / "result.json").exists() and (run_dir / "latents.npz").exists(), run_dir


def test_a_wrong_checkpoint_and_a_one_frame_clip_are_clear_errors():
    with pytest.raises(DeepLanguageError, match="holds a 'autoencoder' model"):
        from_checkpoint(autoencoder.save_dict(autoencoder.ConvAutoencoder(autoencoder.AutoencoderConfig(n_mels=16))))
    with pytest.raises(DeepLanguageError, match="model.config"):
        from_checkpoint({"format": 1, "model": {"kind": "nextframe"}, "state_dict": {}})
    with pytest.raises(DeepLanguageError, match="at least two frames"):
        NextFrameLSTM(NextFrameConfig(n_mels=8, hidden_size=4)).loss(torch.zeros(1, 1, 8))
