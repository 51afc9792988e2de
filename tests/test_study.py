"""The pretraining study end to end on a tiny synthetic corpus (3 languages x 6 speakers x 2 clips)."""

import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from core import runs
from core.errors import DeepLanguageError
from core.audio.features import mel_filters
from core.study.trainer import RunData, train_run
from core.study.layout import StudyConfig, load_study, study_runs
from core.study.plan import plan_study
from core.study.run import run_study
from core.study.results import study_curves, study_results

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

SR = 16000
TINY = StudyConfig(target="aa", pretrain=("none", "bb"), seeds=2, threshold=10.0, hidden_size=16,
                   crop_frames=50, crops_per_clip=2, batch_size=8, max_epochs=2, eval_every=2,
                   split_fractions=(0.35, 0.15, 0.5), ae_epochs=1)


def voice(f0: float, seconds: float, seed: int, brightness: float) -> np.ndarray:
    """A harmonic tone with syllable-rate gaps; ``brightness`` tilts its spectrum (the 'language')."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))) / SR
    tone = sum(np.sin(k * phase) * k ** -brightness for k in range(1, 30))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t + seed), 0, None)
    return (0.2 * tone * envelope + 1e-3 * rng.standard_normal(len(t))).astype(np.float32)


def make_corpus(root) -> None:
    """``<root>/<lang>/<speaker>/*.wav``: languages differ in spectral tilt, speakers in pitch."""
    for li, (language, brightness) in enumerate({"aa": 0.5, "bb": 1.5, "cc": 3.0}.items()):
        for speaker in range(6):
            folder = root / language / f"spk{speaker}"
            folder.mkdir(parents=True)
            for clip in range(2):
                seed = li * 100 + speaker * 10 + clip
                sf.write(folder / f"{clip}.wav", voice(100 + 15 * speaker, 2.0, seed, brightness), SR)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """A finished, probed tiny study: (study folder, corpus folder, cache folder).

    Other test modules import this fixture, which makes a fixture per module: the study is kept
    in the session's base temp folder so that it is built once per session all the same.
    """
    root = tmp_path_factory.getbasetemp() / "tiny-study"
    if runs.read_json(root / "study" / "status.json", {}).get("state") != "finished":
        shutil.rmtree(root, ignore_errors=True)
        make_corpus(root / "corpus")
        run_study(TINY, root / "corpus", root / "study", cache_dir=root / "cache", workers=2)
    return root / "study", root / "corpus", root / "cache"


def test_every_run_finishes_and_records_the_threshold_crossing(tiny_study):
    study, _, _ = tiny_study
    assert sorted(p.name for p in study_runs(study)) == ["ae-s0", "ae-s1", "bb-s0", "bb-s1", "none-s0", "none-s1"]
    assert all(runs.run_status(p)["state"] == "finished" for p in study_runs(study))
    results = study_results(study)
    assert len(results) == 4
    # An easy threshold: crossed at the first validation check of the target phase.
    assert results["converged"].all()
    assert results["steps_to_threshold"].between(1, TINY.eval_every).all()
    assert (results["epochs_to_threshold"] == 1).all()
    assert (results["seconds_to_threshold"] > 0).all()
    assert (results.loc[results["condition"] == "bb", "pretrain_seconds"] > 0).all()
    validation, training = study_curves(study)
    assert set(validation["step"]) >= {0, 1}
    assert (training.loc[training["phase"] == "pretrain", "step"] < 0).all()


def test_splits_never_share_a_speaker_and_latents_are_held_out(tiny_study):
    study, _, _ = tiny_study
    manifest = pd.read_csv(study / "manifest.tsv", sep="\t")
    assert (manifest.groupby("speaker")["split"].nunique() == 1).all()
    latent = pd.read_csv(study / "latent_manifest.tsv", sep="\t")
    trained = set(manifest.loc[manifest["split"] != "test", "speaker"])
    assert not set(latent["speaker"]) & trained
    assert latent["language"].value_counts().nunique() == 1  # balanced


def test_pretraining_sees_only_low_pass_features(tiny_study):
    study, _, _ = tiny_study
    loaded = load_study(study)
    data = RunData(loaded, "bb")
    features = loaded["features"]
    freqs = np.fft.rfftfreq(features.n_fft, 1 / features.sample_rate)
    centres = freqs[mel_filters(features).argmax(axis=1)]
    high = centres > 2 * TINY.cutoff_hz  # an octave above the cutoff: 96 dB down, below the 80 dB floor
    pretrain = np.concatenate(data.clips("pretrain"))
    target = np.concatenate(data.clips("target"))
    # At the floor, a band is constant over time: zero after per-utterance normalisation.
    assert np.abs(pretrain[:, high]).max() < 1e-3
    assert target[:, high].std() > 0.5
    assert data.clips("target") is data.target and RunData(loaded, "none").clips("pretrain") == []


def test_an_interrupted_run_resumes_where_it_stopped(tiny_study, monkeypatch):
    study, _, _ = tiny_study
    import core.progress

    run_dir = study / "runs" / "none-s0"
    for name in ("last.pt", "result.json", "metrics.jsonl", "latents.npz"):
        (run_dir / name).unlink()
    monkeypatch.setattr(core.progress, "PROGRESS_EVERY_S", 0.0)  # report every step

    def stop_in_epoch_two(done, total, **metrics):
        if len(runs.read_metrics(run_dir)) >= 1:
            raise KeyboardInterrupt

    # An unreachable threshold, for this run only, so it runs all its epochs and can be stopped in one.
    stored = runs.read_json(study / "study.json")
    runs.write_json(study / "study.json", {**stored, "threshold": -1.0})
    try:
        with pytest.raises(KeyboardInterrupt):
            train_run(run_dir, on_progress=stop_in_epoch_two)
        assert runs.run_status(run_dir)["state"] == "stopped"
        first_epoch = runs.read_metrics(run_dir)
        assert len(first_epoch) == 1
        result = train_run(run_dir)
    finally:
        runs.write_json(study / "study.json", stored)
    rows = runs.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2]  # epoch 1 kept, epoch 2 done once, from the checkpoint
    assert rows[0] == first_epoch[0]
    assert not result["converged"] and result["epochs"] == 2
    assert (run_dir / "latents.npz").exists() and runs.run_status(run_dir)["state"] == "finished"


def test_a_run_is_reproducible_from_its_seed(tiny_study):
    study, _, _ = tiny_study
    run_dir = study / "runs" / "bb-s1"  # trained in a pool worker, perhaps after another run
    before = [row["step_losses"] for row in runs.read_metrics(run_dir)]
    for name in ("last.pt", "result.json", "metrics.jsonl", "latents.npz"):
        (run_dir / name).unlink()
    train_run(run_dir)  # again, in this process
    assert [row["step_losses"] for row in runs.read_metrics(run_dir)] == before


def test_rerunning_skips_finished_runs_and_other_settings_are_refused(tiny_study):
    study, corpus, cache = tiny_study
    stamps = {p.name: (p / "last.pt").stat().st_mtime_ns for p in study_runs(study) if p.name != "none-s0"}
    run_study(TINY, corpus, study, cache_dir=cache, workers=1, probe=False)
    assert stamps == {p.name: (p / "last.pt").stat().st_mtime_ns for p in study_runs(study) if p.name != "none-s0"}
    with pytest.raises(DeepLanguageError, match="other settings"):
        plan_study(StudyConfig(target="aa", hidden_size=8), corpus, study, cache_dir=cache)
    with pytest.raises(DeepLanguageError, match="not in"):
        plan_study(StudyConfig(target="zz"), corpus, study.parent / "other", cache_dir=cache)


def test_the_default_threshold_is_a_fraction_of_the_copy_baseline(tiny_study, tmp_path):
    _, corpus, cache = tiny_study
    config = StudyConfig(target="aa", pretrain=("none",), seeds=1, hidden_size=8, threshold=None,
                         threshold_ratio=0.5, split_fractions=(0.35, 0.15, 0.5))
    study = plan_study(config, corpus, tmp_path / "s", cache_dir=cache)
    threshold = load_study(study)["threshold"]
    assert 0 < threshold < 1
