import numpy as np
import pandas as pd
import pytest

from core.errors import DeepLanguageError
from core.study.latent_files import clip_path, load_latents, save_latents
from core.study.latents import LSTM_KINDS
from core.study.layout import study_runs
from tests.test_study import tiny_study  # noqa: F401  (a shared fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # trains the tiny matrix (once per session)
def test_every_run_has_one_latent_row_per_held_out_clip(tiny_study):
    study, corpus, _ = tiny_study
    latent = pd.read_csv(study / "latent_manifest.tsv", sep="\t")
    for run_dir in study_runs(study):
        arrays, manifest = load_latents(run_dir)
        assert list(manifest["path"]) == list(latent["path"])
        expected = ("ae",) if run_dir.name.startswith("ae") else LSTM_KINDS
        assert tuple(arrays) == expected
        for array in arrays.values():
            assert array.shape[0] == len(manifest) and array.dtype == np.float32 and np.isfinite(array).all()
        assert arrays.get("h", arrays.get("ae")).shape[1] == (16 if "h" in arrays else 64)
    assert clip_path(study, latent["path"][0]).exists()


def test_missing_latents_and_mismatched_rows_are_refused(tmp_path):
    with pytest.raises(DeepLanguageError, match="no latents yet"):
        load_latents(tmp_path)
    manifest = pd.DataFrame({"key": ["a"], "path": ["x.wav"], "language": ["es"], "speaker": ["s"]})
    with pytest.raises(ValueError):
        save_latents(tmp_path, {"h": np.zeros((2, 3))}, manifest)
    save_latents(tmp_path, {"h": np.ones((1, 3))}, manifest)
    arrays, loaded = load_latents(tmp_path)
    assert arrays["h"].shape == (1, 3) and loaded["language"][0] == "es"


@pytest.mark.slow  # trains the tiny matrix (once per session)
def test_the_identifier_embedding_joins_the_study_as_its_own_latent_kind(tiny_study):
    from core.identify.predict import DEFAULT_CHECKPOINT
    from core.study.latents import MAX_IDENTIFY_DIM, extract_identify_latents

    assert DEFAULT_CHECKPOINT.exists(), "the shipped identifier checkpoints/identify-default/best.pt is missing"
    study, _, _ = tiny_study
    extract_identify_latents(study)
    arrays, manifest = load_latents(study / "identify")
    latent = pd.read_csv(study / "latent_manifest.tsv", sep="\t")
    assert list(arrays) == ["identify"] and list(manifest["path"]) == list(latent["path"])
    assert arrays["identify"].shape[0] == len(latent)
    assert arrays["identify"].shape[1] <= MAX_IDENTIFY_DIM and np.isfinite(arrays["identify"]).all()
    # The shipped identifier is Whisper-based: the kind is labelled as the pretrained reference space.
    from core.study.latent_files import WHISPER_LABEL, identify_label

    assert identify_label(study) == WHISPER_LABEL


@pytest.mark.slow  # trains the tiny matrix (once per session)
def test_the_identifier_embeds_at_most_its_cap_of_clips_per_language(tiny_study, monkeypatch):
    import core.study.latents as latents

    study, _, _ = tiny_study
    monkeypatch.setattr(latents, "MAX_IDENTIFY_PER_LANGUAGE", 2)
    latents.extract_identify_latents(study)
    arrays, manifest = load_latents(study / "identify")
    assert manifest.groupby("language").size().max() == 2 and len(arrays["identify"]) == len(manifest)
    assert manifest.groupby("language")["speaker"].nunique().min() == 2  # two voices, not one speaker's two clips
    monkeypatch.undo()
    latents.extract_identify_latents(study)  # leave the fixture's study as the other tests expect it


def test_packed_encoding_equals_encoding_each_clip_alone():
    import torch

    from core.study.latents import encode_lstm
    from core.study.nextframe import NextFrameConfig, NextFrameLSTM

    torch.manual_seed(0)
    model = NextFrameLSTM(NextFrameConfig(n_mels=8, hidden_size=6))
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal((n, 8)).astype(np.float32) for n in (37, 5, 90, 1, 37, 64)]
    batched = encode_lstm(model, clips, batch_size=4)  # two batches, lengths unsorted
    for i, clip in enumerate(clips):
        alone = model.encode(torch.from_numpy(clip)[None])
        for kind, value in zip(LSTM_KINDS, alone):
            np.testing.assert_allclose(batched[kind][i], value[0].numpy(), atol=1e-5)
