"""core.identify.models: shapes for any length, configs round-trip, windows, and one batch overfits."""

from dataclasses import asdict

import pytest
import torch

from core.errors import DeepLanguageError
from core.identify.models import (MODELS, build_model, clip_windows, count_parameters, model_config, normalize_windows,
                         predict_windows, window_starts)
from core.identify.pretrained import KINDS as PRETRAINED_KINDS

# Models fed log-mels; the pretrained kinds read Whisper rows (tests/test_whisper.py).
LOG_MEL_MODELS = [kind for kind in MODELS if kind not in PRETRAINED_KINDS]

torch.set_num_threads(1)


@pytest.mark.parametrize("kind", LOG_MEL_MODELS)
@pytest.mark.parametrize("n_frames", [37, 100, 301])
def test_any_length_gives_logits_and_embedding(kind, n_frames):
    model = build_model(kind, {"n_classes": 5}).eval()
    x = torch.randn(3, 64, n_frames)
    assert model(x).shape == (3, 5)
    assert model.embed(x).shape == (3, model.embedding_dim)


@pytest.mark.parametrize("kind", LOG_MEL_MODELS)
def test_config_round_trip_rebuilds_the_same_model(kind):
    model = build_model(kind, {"n_classes": 4, "n_mels": 40}).eval()
    again = build_model(kind, asdict(model.config))
    again.load_state_dict(model.state_dict())
    again.eval()
    x = torch.randn(2, 40, 120)
    assert torch.equal(model(x), again(x))
    assert count_parameters(model) < 1_000_000  # small enough to ship and to run on a CPU


def test_the_kinds_named_without_torch_are_the_models():
    """core.identify.kinds lets pages list the models without importing them: the two lists must agree."""
    from core.identify import kinds, supervector

    assert tuple(MODELS) == kinds.KINDS
    assert PRETRAINED_KINDS == kinds.PRETRAINED_KINDS and supervector.KINDS == kinds.GMM_KINDS


def test_lists_from_json_become_tuples():
    assert model_config("resnet-asp", {"channels": [8, 16]}).channels == (8, 16)


def test_unknown_kind_and_setting_are_user_errors():
    with pytest.raises(DeepLanguageError, match="unknown model kind"):
        build_model("transformer-xl", {})
    with pytest.raises(DeepLanguageError, match="no setting"):
        build_model("cnn-baseline", {"layers": 3})


def test_window_starts_cover_the_clip():
    assert window_starts(250, 300, 100) == [0]
    assert window_starts(300, 300, 100) == [0]
    starts = window_starts(1050, 300, 100)
    assert starts[0] == 0 and starts[-1] + 300 == 1050 and len(starts) == 9
    assert window_starts(1001, 300, 100) == list(range(0, 701, 100))  # 10 s at 100 frames/s: 8 windows


def test_short_clip_is_tiled_and_windows_are_normalised():
    features = torch.randn(64, 120) * 3 + 5
    starts, windows = clip_windows(features, 300, 100)
    assert starts == [0] and windows.shape == (1, 64, 300)
    assert torch.allclose(windows.mean(-1), torch.zeros(1, 64), atol=1e-4)
    assert torch.allclose(normalize_windows(windows), windows, atol=1e-4)


def test_predict_windows_gives_probabilities():
    model = build_model("cnn-baseline", {"n_classes": 3}).eval()
    starts, probs = predict_windows(model, torch.randn(64, 700), 300, 100)
    assert len(starts) == probs.shape[0] == 5
    assert torch.allclose(probs.sum(1), torch.ones(5), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", LOG_MEL_MODELS)
def test_one_batch_overfits(kind):
    torch.manual_seed(0)
    model = build_model(kind, {"n_classes": 4, "dropout": 0.0})
    x, y = torch.randn(8, 64, 100), torch.arange(8) % 4
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert (model(x).argmax(1) == y).all()
