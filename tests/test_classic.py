"""core.identify.supervector and gmm: the GMM-supervector identifier learns a planted problem, saves as plain
tensors, and trains, cross-validates and identifies through the same entry points as the neural models."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from core import runs
from core.audio.decode import write_wav
from core.checkpoint import load_checkpoint, save_checkpoint
from core.identify.supervector import GMMSupervector, GMMSupervectorConfig
from core.identify.gmm import fit
from core.identify.predict import identify, load_identifier
from core.identify.models import build_model, clip_windows
from core.identify.clips import ClipSet, TrainConfig, evaluate_clips
from core.identify.train import train
from tests.conftest import tone_clip

torch.set_num_threads(1)
SMALL = {"n_components": 4, "ubm_frames": 3000, "ubm_iterations": 10, "inverse_regularization": 1.0}


def _planted_mel(language: int, rng: np.random.Generator, n_frames: int = 250) -> np.ndarray:
    """Random log-mels whose 'language' is a rising (0) or falling (1) sweep of a bright band: only the
    frame-to-frame dynamics (the SDC) tell them apart, as the per-band level is normalised away."""
    x = rng.normal(-4, 0.3, (64, n_frames))
    period = rng.integers(12, 20)
    for t in range(n_frames):
        phase = (t % period) / period
        band = int((phase if language == 0 else 1 - phase) * 50) + 5
        x[band - 3: band + 3, t] += 3.0
    return x.astype(np.float32)


def _planted_clips(n_speakers: int = 8, per_speaker: int = 3, seed: int = 0) -> ClipSet:
    rng = np.random.default_rng(seed)
    rows, arrays = [], []
    for language in (0, 1):
        for speaker in range(n_speakers):
            for _ in range(per_speaker):
                rows.append({"language": f"l{language}", "speaker": f"{language}-{speaker}",
                             "split": "train" if speaker < n_speakers // 2 else "test"})
                arrays.append(_planted_mel(language, rng))
    return ClipSet(pd.DataFrame(rows), arrays, ["l0", "l1"], 100)


@pytest.fixture(scope="module")
def planted():
    clips = _planted_clips()
    config = TrainConfig(model="gmm-supervector", model_config=SMALL, window_seconds=1.0, hop_seconds=0.5, threads=1)
    train_rows, test_rows = clips.rows("train"), clips.rows("test")
    checkpoint = fit(config, clips, train_rows[::2], train_rows[1::2])
    return config, clips, test_rows, checkpoint


@pytest.mark.slow
def test_learns_a_planted_problem_on_unseen_speakers(planted):
    config, clips, test_rows, checkpoint = planted
    model = build_model(checkpoint["model"]["kind"], checkpoint["model"]["config"])
    model.load_state_dict(checkpoint["state_dict"])
    assert evaluate_clips(model.eval(), clips, test_rows, config)["accuracy"] >= 0.9
    assert checkpoint["labels"] == ["l0", "l1"] and checkpoint["best"]["epoch"] == 1


@pytest.mark.slow
def test_save_load_gives_identical_outputs_from_plain_tensors(planted, tmp_path):
    config, clips, test_rows, checkpoint = planted
    model = build_model(checkpoint["model"]["kind"], checkpoint["model"]["config"])
    model.load_state_dict(checkpoint["state_dict"])
    path = save_checkpoint(checkpoint, tmp_path / "classic.pt")
    assert all(isinstance(v, torch.Tensor) for v in load_checkpoint(path)["state_dict"].values())  # weights_only
    bundle = load_identifier(path)
    _, windows = clip_windows(clips.clip(int(test_rows[0])), 100, 50)
    assert torch.equal(bundle.model(windows), model.eval()(windows))


def test_any_length_and_silence_give_finite_logits():
    model = GMMSupervector(GMMSupervectorConfig(n_classes=3, n_components=8)).eval()
    for x in (torch.randn(2, 64, 40), torch.zeros(1, 64, 300)):
        assert torch.isfinite(model(x)).all() and model(x).shape == (len(x), 3)


@pytest.fixture(scope="module")
def tone_dataset(tmp_path_factory):
    """<lang>/<speaker>/*.wav: 'low' and 'high' to learn, 'hum' only as a background language."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    for language in ("low", "high", "hum"):
        for speaker in range(6):
            folder = root / language / f"{language}{speaker}"
            folder.mkdir(parents=True)
            for i in range(2):
                write_wav(folder / f"{i}.wav", tone_clip("low" if language == "hum" else language, rng))
    return root


@pytest.mark.slow
def test_train_writes_a_run_that_identify_loads(tone_dataset, tmp_path):
    config = TrainConfig(data_dir=str(tone_dataset), cache_dir=str(tmp_path / "cache"), languages=("low", "high"),
                         model="gmm-supervector", model_config={**SMALL, "background_languages": ["hum"]},
                         window_seconds=1.0, hop_seconds=0.5, threads=1)
    run_dir = train(config, runs_dir=tmp_path / "runs")
    assert runs.run_status(run_dir)["state"] == "finished"
    assert len(runs.read_metrics(run_dir)) == 1
    checkpoint = load_checkpoint(run_dir / "best.pt")
    assert checkpoint["labels"] == ["high", "low"]  # the background language is never answered
    assert checkpoint["data"]["n_background_clips"] == 12
    bundle = load_identifier(run_dir / "best.pt")
    assert bundle.model.classifier.out_features == 2
    clip = next((tone_dataset / "low").rglob("*.wav"))
    result = identify(clip, bundle)
    assert result["status"] in {"ok", "uncertain"} and set(result["probabilities"]) == {"high", "low"}
    assert len(result["windows"]) == 3  # 1 s windows every 0.5 s over 2 s
    # The answer comes from one pass over the whole clip; the windows are only the timeline.
    from core.audio.decode import load_audio
    from core.audio.features import log_mel
    from core.identify.models import predict_whole_clip
    from core.identify.predict import calibrate

    whole = predict_whole_clip(bundle.model, torch.from_numpy(log_mel(load_audio(clip), bundle.features)))
    whole = calibrate(whole, bundle.temperature)  # identify answers with the checkpoint's temperature
    assert result["probabilities"] == {label: round(float(p), 4) for label, p in zip(bundle.labels, whole)}
    restricted = identify(clip, bundle, ["low"])
    assert restricted["probabilities"] == {"low": 1.0} and len(restricted["windows"]) == 3


@pytest.mark.slow
def test_score_on_chooses_whole_clips_or_the_mean_of_windows(planted):
    from core.identify.models import WHOLE_CLIP_MAX_SECONDS, predict_batches, predict_whole_clip, scores_whole_clip

    config, clips, test_rows, checkpoint = planted
    rows = test_rows[::3]  # both languages
    for score_on in ("clips", "windows"):
        model = build_model("gmm-supervector", {**checkpoint["model"]["config"], "score_on": score_on})
        model.load_state_dict(checkpoint["state_dict"])
        model.eval()
        raw = [clips.clip(int(i)) for i in rows]
        if score_on == "clips":
            expected = torch.stack([predict_whole_clip(model, x) for x in raw])
        else:
            expected = torch.stack([predict_batches(model, clip_windows(x, 100, 50, model.input_normalization)[1]).mean(0)
                                    for x in raw])
        predicted = evaluate_clips(model, clips, rows, config, return_predictions=True)["predicted"]
        assert np.array_equal(predicted, expected.argmax(1).numpy())
    assert scores_whole_clip(model, 100, 100) is False  # score_on="windows"
    model.config.score_on = "clips"
    assert scores_whole_clip(model, int(WHOLE_CLIP_MAX_SECONDS * 100), 100)
    assert not scores_whole_clip(model, int(WHOLE_CLIP_MAX_SECONDS * 100) + 1, 100)  # long clips: windows


@pytest.mark.slow
def test_cross_validation_of_the_classic_recipe(tone_dataset, tmp_path):
    from core.identify.evaluate import cross_validate

    config = TrainConfig(data_dir=str(tone_dataset), cache_dir=str(tmp_path / "cache"), languages=("low", "high"),
                         model="gmm-supervector", model_config=SMALL, window_seconds=1.0, hop_seconds=0.5,
                         threads=1)
    report = cross_validate(replace(config), n_folds=2)
    assert len(report["fold_accuracies"]) == 2 and report["accuracy"] >= 0.75


def test_classic_windows_keep_each_bands_spread():
    from core.errors import DeepLanguageError
    from core.identify.models import input_normalization, normalize_windows

    x = torch.randn(2, 64, 50) * torch.linspace(0.5, 3, 64)[:, None] + 7
    mean_only = normalize_windows(x, kind="per-window-mean")
    assert torch.allclose(mean_only.mean(-1), torch.zeros(2, 64), atol=1e-4)
    assert torch.allclose(mean_only.std(-1), x.std(-1))
    assert input_normalization(GMMSupervector(GMMSupervectorConfig())) == "per-window-mean"
    assert input_normalization(build_model("resnet-asp")) == "per-window"
    with pytest.raises(DeepLanguageError, match="normalization"):
        normalize_windows(x, kind="global")


def test_augmented_copies_train_but_are_never_scored(tone_dataset, tmp_path):
    config = TrainConfig(data_dir=str(tone_dataset), cache_dir=str(tmp_path / "cache"), languages=("low", "high"),
                         model="gmm-supervector", model_config={**SMALL, "fit_on": "clips", "augment": ["speed1.1", "noise"]},
                         window_seconds=1.0, hop_seconds=0.5, threads=1, split_fractions=(0.7, 0.3, 0.0))
    run_dir = train(config, runs_dir=tmp_path / "runs")
    checkpoint = load_checkpoint(run_dir / "best.pt")
    assert checkpoint["calibration"]["n_clips"] == 24  # the clean clips only, out of fold
    assert checkpoint["backend"]["calibration"]["n_clips"] == 24
    assert len(list((tmp_path / "cache").rglob("augmented/noise/*.npy"))) == 24  # cached for the next run
    bundle = load_identifier(run_dir / "best.pt")
    clip = next((tone_dataset / "high").rglob("*.wav"))
    assert identify(clip, bundle)["best_guess"] == "high"
