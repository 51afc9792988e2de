"""core.identify and `python -m core identify`: the JSON contract, restrictions, silence, broken files."""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from core.audio.decode import SAMPLE_RATE, write_wav
from core.checkpoint import save_checkpoint
from core.errors import DeepLanguageError
from core.audio.features import FeatureConfig
from core.identify.predict import DEFAULT_CHECKPOINT, check_languages, identify, identify_files, load_identifier
from core.identify.models import build_model
from core.identify.session import BASELINE_CHECKPOINT as GMM_CHECKPOINT  # the from-scratch GMM

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["de", "en", "es", "fr"]
STATUSES = {"ok", "no_speech", "uncertain", "error"}


def _speechy(seconds: float, seed: int = 0) -> np.ndarray:
    """A harmonic tone switched on and off like syllables: has_speech says yes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * k * 140 * t) / k for k in range(1, 8))
    gate = (np.sin(2 * np.pi * 3 * t) > 0).astype(float)
    return (0.2 * tone * gate + 0.001 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """A small untrained checkpoint (the contract does not need a good model) and test clips."""
    root = tmp_path_factory.mktemp("identify")
    torch.manual_seed(0)
    model = build_model("cnn-baseline", {"n_classes": len(LABELS), "channels": (4, 8), "hidden": 16})
    checkpoint = {"format": 1, "model": {"kind": "cnn-baseline", "config": asdict(model.config)},
                  "state_dict": model.state_dict(), "labels": LABELS, "features": asdict(FeatureConfig()),
                  "window_seconds": 3.0, "hop_seconds": 1.0}
    paths = {"checkpoint": save_checkpoint(checkpoint, root / "tiny.pt")}
    for name, audio in {"speech": _speechy(2.0), "long": _speechy(10.0, 1),
                        "silence": np.zeros(2 * SAMPLE_RATE, np.float32)}.items():
        paths[name] = root / f"{name}.wav"
        write_wav(paths[name], audio)
    paths["broken"] = root / "broken.wav"
    paths["broken"].write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio at all")
    paths["missing"] = root / "missing.wav"
    return paths


@pytest.fixture(scope="module")
def bundle(files):
    return load_identifier(files["checkpoint"])


def test_speech_gets_a_distribution_over_all_languages(files, bundle):
    result = identify(files["speech"], bundle)
    assert result["status"] in {"ok", "uncertain"}
    assert set(result["probabilities"]) == set(LABELS)
    assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert (result["language"] is None) == (result["status"] != "ok")
    assert result["best_guess"] in LABELS


def test_restriction_renormalises_and_excludes_the_rest(files, bundle):
    full = identify(files["speech"], bundle)["probabilities"]
    only = identify(files["speech"], bundle, ["es", "fr"])["probabilities"]
    assert set(only) == {"es", "fr"}
    assert sum(only.values()) == pytest.approx(1, abs=1e-3)
    assert only["es"] / only["fr"] == pytest.approx(full["es"] / full["fr"], rel=1e-2)


def test_silence_is_no_speech_not_a_guess(files, bundle):
    result = identify(files["silence"], bundle)
    assert result["status"] == "no_speech" and result["language"] is None and result["probabilities"] == {}


def test_long_clip_has_a_window_timeline(files, bundle):
    result = identify(files["long"], bundle)
    windows = result["windows"]
    assert len(windows) == 8  # 3 s windows every 1 s over 10 s
    assert windows[0]["start"] == 0 and windows[-1]["end"] == pytest.approx(10.0, abs=0.02)
    assert all(w["language"] in LABELS and set(w["probabilities"]) == set(LABELS) for w in windows)


def test_the_filename_is_not_a_feature(files, bundle, tmp_path):
    renamed = tmp_path / "es_spanish_clip.wav"
    renamed.write_bytes(files["speech"].read_bytes())
    assert identify(renamed, bundle)["probabilities"] == identify(files["speech"], bundle)["probabilities"]
    assert identify(files["speech"].read_bytes(), bundle, name="x.wav")["probabilities"] == \
        identify(files["speech"], bundle)["probabilities"]


def test_bad_files_are_answered_with_errors(files, bundle):
    results = list(identify_files([str(files["broken"]), str(files["missing"]), str(files["speech"])], bundle))
    assert [r["status"] for r in results[:2]] == ["error", "error"]
    assert "could not be decoded" in results[0]["error"] and "no such file" in results[1]["error"]
    assert results[2]["status"] in {"ok", "uncertain"} and results[2]["error"] is None


def test_unknown_languages_are_refused(bundle):
    check_languages(["es", "fr"], LABELS)
    check_languages(None, LABELS)  # all of them
    with pytest.raises(DeepLanguageError, match="klingon"):
        check_languages(["es", "klingon"], LABELS)


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "identify", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_cli_json_contract_with_broken_and_missing_files(files):
    done = _cli(files["speech"], files["broken"], files["missing"], files["silence"], files["long"],
                "--checkpoint", files["checkpoint"], "--json")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(r["path"]).name for r in lines] == ["speech.wav", "broken.wav", "missing.wav", "silence.wav",
                                                     "long.wav"]
    for result in lines:
        assert {"path", "status", "language", "probabilities", "error", "windows"} <= set(result)
        assert result["status"] in STATUSES
        assert (result["error"] is not None) == (result["status"] == "error")
        assert result["language"] is None or result["status"] == "ok"
    assert [r["status"] for r in lines[1:4]] == ["error", "error", "no_speech"]


@pytest.mark.slow
def test_cli_restriction_exit_codes_and_text_output(files):
    done = _cli(files["speech"], "--checkpoint", files["checkpoint"], "--json", "--languages", "en,de")
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["probabilities"]) == {"en", "de"}
    bad = _cli(files["speech"], "--checkpoint", files["checkpoint"], "--languages", "en,xx")
    assert bad.returncode == 2 and "xx" in bad.stderr and "Traceback" not in bad.stderr
    text = _cli(files["speech"], files["silence"], "--checkpoint", files["checkpoint"])
    assert text.returncode == 0 and "speech.wav:" in text.stdout and "no speech" in text.stdout
    assert _cli("--checkpoint", files["checkpoint"]).returncode == 2  # no files: argparse's usage error


def test_shipped_model_answers_real_speech():
    """On speakers it never trained on, in four languages: mostly right, and sure of it. A model answering
    noise (uniform, or at random) is right about one time in twelve and never sure."""
    from core.identify.session import unheard_clips

    bundle = load_identifier(DEFAULT_CHECKPOINT)
    clips = unheard_clips(bundle.checkpoint["data"], bundle.labels)
    clips = clips[clips["language"].isin(["es", "de", "ja", "ru"])].groupby("language").head(2)
    assert len(clips) == 8
    results = [identify(path, bundle) for path in clips["path"]]
    for result in results:
        assert set(result["probabilities"]) == set(bundle.labels)
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    right = sum(r["best_guess"] == language for r, language in zip(results, clips["language"]))
    sure = sum(r["status"] == "ok" for r in results)
    assert right >= 6 and sure >= 4, [(r["status"], r["best_guess"]) for r in results]


def test_embed_gives_one_vector_per_clip_of_the_model_width(cv_sample):
    from core.identify.predict import DEFAULT_CHECKPOINT, embed, load_identifier

    bundle = load_identifier(DEFAULT_CHECKPOINT)
    clips = sorted((cv_sample / "es" / "clips").glob("*.mp3"))[:2]
    first, second = (embed(clip, bundle) for clip in clips)
    assert first.shape == (bundle.model.embedding_dim,) and np.isfinite(first).all()
    assert not np.allclose(first, second)  # different clips, different points
    np.testing.assert_array_equal(first, embed(clips[0], bundle))  # and deterministic


def test_bundle_says_what_it_knows_and_flags_synthetic_training_data(files, tmp_path):
    from core.checkpoint import load_checkpoint

    bundle = load_identifier(files["checkpoint"])
    assert bundle.languages == LABELS and bundle.temperature == 1.0  # an old checkpoint: no calibration
    assert set(bundle.ok_rule) == {"min_probability", "min_margin"}
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / ".complete").write_text("{}")  # what core.data.demo_corpus leaves in every corpus it builds
    checkpoint = load_checkpoint(files["checkpoint"])
    checkpoint["data"] = {"dir": str(demo)}
    checkpoint["calibration"] = {"temperature": 2.0, "ok_rule": {"min_probability": 0.9, "min_margin": 0.5}}
    flagged = load_identifier(save_checkpoint(checkpoint, tmp_path / "demo.pt"))
    assert flagged.trained_on == {"data_dir": str(demo), "synthetic": True}
    assert flagged.temperature == 2.0 and flagged.ok_rule == {"min_probability": 0.9, "min_margin": 0.5}
    result = identify(files["speech"], flagged)
    assert result["status"] == "uncertain" or max(result["probabilities"].values()) >= 0.9
    assert bundle.trained_on["synthetic"] is False


def test_shipped_model_knows_all_twelve_languages_and_carries_its_calibration():
    from core.identify.evaluate import calibration_report
    from core.paths import CV_SAMPLE_DIR

    bundle = load_identifier(DEFAULT_CHECKPOINT)
    assert set(bundle.languages) == {d.name for d in CV_SAMPLE_DIR.iterdir() if (d / "clips").is_dir()}
    assert bundle.trained_on == {"data_dir": "data/cv-sample", "synthetic": False}  # relative to the repository
    report = calibration_report(bundle)
    assert report["ece_after"] <= report["ece_before"] and report["n_clips"] > 500
    assert sum(b["count"] for b in report["bins"]) == report["n_clips"]
    assert bundle.ok_rule == report["ok_rule"] and 0 < bundle.temperature < 10
    assert bundle.checkpoint["model"]["kind"] == "whisper-head"  # pretrained: Whisper base and a head
    assert "class_means" in bundle.model.state_dict()  # a Gaussian head, so `enroll` can grow it
    assert bundle.calibration["ok_target"] == {"precision": 0.95, "coverage": 0.8}
    assert DEFAULT_CHECKPOINT.stat().st_size < 2_000_000


def test_a_malformed_calibration_is_a_clear_error(files, tmp_path):
    from core.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(files["checkpoint"])
    checkpoint["calibration"] = {"temperature": "hot", "ok_rule": {"min_probability": 0.5}}
    with pytest.raises(DeepLanguageError, match="invalid 'calibration'"):
        load_identifier(save_checkpoint(checkpoint, tmp_path / "bad.pt"))


# ---- the one-pass GMM scoring behind identify (core.identify.supervector.GMMSupervector.clip_and_ranges) ----

def test_loudest_is_the_torch_quantile_mask_it_replaces():
    from core.identify.supervector import loudest

    generator = torch.Generator().manual_seed(0)
    for n_frames in [1, 2, 3, 11, 51, 91, 300, 301, 1001]:  # 51 and 91: float32 ranks a hair above an integer
        for ties in (False, True):
            loudness = torch.randn(4, n_frames, generator=generator)
            loudness = loudness.round(decimals=1) if ties else loudness
            for fraction in (0.7, 0.5, 0.33):
                expected = loudness >= torch.quantile(loudness, 1 - fraction, dim=1, keepdim=True)
                assert torch.equal(loudest(loudness, fraction), expected), (n_frames, ties, fraction)


def _real_clips(per_language: int = 1) -> list:
    from core.paths import CV_SAMPLE_DIR

    return [path for lang in sorted(p.name for p in CV_SAMPLE_DIR.iterdir() if (p / "clips").is_dir())
            for path in sorted((CV_SAMPLE_DIR / lang / "clips").glob("*.mp3"))[:per_language]]


def test_one_pass_scoring_keeps_the_clip_answer_and_tracks_the_window_answers():
    """The clip's probabilities are forward() on the whole clip to float rounding; the timeline's windows, now
    scored on the clip's own frames, mostly name the language that scoring each window on its own names."""
    from core.audio.decode import load_audio
    from core.audio.features import log_mel
    from core.identify.models import clip_windows, predict_batches, predict_clip, predict_whole_clip

    bundle = load_identifier(GMM_CHECKPOINT)
    fps = bundle.features.frames_per_second
    same, n_windows = 0, 0
    for path in _real_clips():
        features = torch.from_numpy(log_mel(load_audio(path), bundle.features))
        starts, windows, clip = predict_clip(bundle.model, features, bundle.window, bundle.hop, fps)
        torch.testing.assert_close(clip, predict_whole_clip(bundle.model, features), atol=1e-5, rtol=0)
        alone_starts, alone = clip_windows(features, bundle.window, bundle.hop, bundle.model.input_normalization)
        assert starts == alone_starts and windows.shape == (len(starts), len(bundle.labels))
        torch.testing.assert_close(windows.sum(1), torch.ones(len(starts)))
        same += int((windows.argmax(1) == predict_batches(bundle.model, alone).argmax(1)).sum())
        n_windows += len(starts)
    assert n_windows >= 12 and same >= 0.8 * n_windows  # bench/identify_latency.py: 56 of 58 on 24 clips


def test_identify_answers_with_the_whole_clip_probabilities():
    from core.audio.decode import load_audio
    from core.audio.features import log_mel
    from core.identify.models import predict_whole_clip
    from core.identify.predict import calibrate

    bundle = load_identifier(GMM_CHECKPOINT)
    path = _real_clips()[0]
    expected = calibrate(predict_whole_clip(bundle.model, torch.from_numpy(log_mel(load_audio(path), bundle.features))),
                         bundle.temperature)
    result = identify(path, bundle)
    assert list(result["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-4)
    assert len(result["windows"]) >= 1 and all(w["language"] in bundle.labels for w in result["windows"])


def test_gmm_scoring_follows_a_refitted_ubm():
    """The UBM's scoring matrix is computed once, and again whenever the UBM's buffers change (as fitting,
    loading a checkpoint or assigning new buffers does)."""
    def fresh():
        return build_model("gmm-supervector", {"n_classes": 3, "n_components": 8}).eval()

    model, refitted = fresh(), fresh()
    refitted.ubm_means.mul_(1.5)
    refitted.ubm_variances.mul_(2.0)
    x = torch.randn(2, 64, 120, generator=torch.Generator().manual_seed(1))
    before = model.supervectors(x)
    model.load_state_dict(refitted.state_dict())  # copies in place
    after = model.supervectors(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, refitted.supervectors(x))
    model.ubm_weights = torch.linspace(0.5, 1.5, 8) / 8  # a new tensor assigned, not copied in
    assert not torch.allclose(model.supervectors(x), after)


def test_unheard_clips_leave_out_the_model_s_speakers_and_languages(cv_sample, tmp_path):
    from core.data.datasets import read_dataset
    from core.identify.session import pick_clip, unheard_clips

    manifest = read_dataset(cv_sample, durations=False)
    es = manifest[manifest["language"] == "es"]
    heard = list(es["speaker"].unique()[:10])
    clips = unheard_clips({"train_speakers": heard[:6], "val_speakers": heard[6:]}, ["es", "ja"], cv_sample)
    assert set(clips["language"]) == {"es", "ja"} and not clips["speaker"].isin(heard).any()
    assert len(clips) == (manifest["language"] == "ja").sum() + (~es["speaker"].isin(heard)).sum()
    rng = np.random.default_rng(0)
    assert all(pick_clip(clips, "ja", rng)["language"] == "ja" for _ in range(5))
    with pytest.raises(DeepLanguageError, match="no clip of fr"):
        pick_clip(clips, "fr", rng)
    assert unheard_clips({}, ["es"], tmp_path / "nowhere").empty  # no sample here: nothing offered, no error


def test_evaluate_keeps_each_clip_s_probabilities_apart_from_torch():
    """evaluate keeps one row per clip of a dataset: a row that is a view of torch's tensor pins that tensor's heap
    block, and the process grew by about 50 kB a clip (bench/scale.py); each row owns its numbers."""
    from core.audio.decode import load_audio
    from core.audio.features import log_mel
    from core.identify.evaluate import clip_probabilities

    bundle = load_identifier(GMM_CHECKPOINT)
    features = torch.from_numpy(log_mel(load_audio(_real_clips()[0]), bundle.features))
    for clip in (features, features[:, :bundle.window]):
        row = clip_probabilities(bundle, clip)
        assert row.shape == (len(bundle.labels),) and row.flags.owndata and row.sum() == pytest.approx(1, abs=1e-4)
