"""The transfer matrix end to end on a tiny synthetic corpus (3 languages x 6 speakers x 2 clips)."""

import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from core import runs
from core.errors import DeepLanguageError
from core.audio.features import mel_filters
from core.study.grouped import make_members
from core.study.layout import StudyConfig, load_study, parse_run_name, pretrain_name, study_runs
from core.study.plan import plan_study
from core.study.results import convergence, study_curves, study_results, study_status
from core.study.run import run_study
from core.study.trainer import StudyData, initial_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

SR = 16000
# Two targets x (none + 4 conditions x 2 doses) x 2 seeds = 36 runs, in groups of at most 4.
TINY = StudyConfig(targets=("aa", "bb"), pretrain=("none", "bb", "cc:full", "noise", "aa:utero"), seeds=2,
                   pretrain_epochs=(1, 2), pretrain_epoch_steps=3, budget_steps=20, loss_budgets=(10, 20),
                   threshold_step=10, hidden_size=16, crop_frames=50, crops_per_clip=2, batch_size=8,
                   eval_every=5, group_size=4, split_fractions=(0.35, 0.15, 0.5), ae_epochs=1)


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
        run_study(TINY, root / "corpus", root / "study", cache_dir=root / "cache", workers=2, n_permutations=5)
    return root / "study", root / "corpus", root / "cache"


@pytest.mark.slow  # trains the tiny matrix (once per session)
def test_every_cell_of_the_matrix_finishes_with_the_three_measures(tiny_study):
    study, _, _ = tiny_study
    assert study_status(study)["phase"] == "finished" and study_status(study)["state"] == "finished"
    assert all(runs.run_status(p)["state"] == "finished" for p in study_runs(study))
    results = study_results(study)
    assert len(results) == 2 * (1 + 4 * 2) * 2
    assert set(results["pretrain"]) == {"none", "bb", "cc:full", "noise", "aa:utero"}
    assert set(results.loc[results["pretrain"] == "none", "pretrain_epochs"]) == {0}
    assert set(results.loc[results["pretrain"] != "none", "pretrain_epochs"]) == {1, 2}
    for column in ("converged", "steps_to_threshold", "auc", "loss_at_10", "loss_at_20", "threshold",
                   "seconds_to_threshold", "run"):
        assert column in results
    # The threshold is the none runs' mean loss at step 10: they cross it around there.
    none = results[results["pretrain"] == "none"]
    assert none["threshold"].gt(0).all() and none["steps_to_threshold"].dropna().between(0, 20).all()
    assert (results["auc"] > 0).all() and results["loss_at_20"].notna().all()
    curves = study_curves(study)
    assert list(curves.columns[:6]) == ["pretrain", "target", "seed", "pretrain_epochs", "step", "val_loss"]
    assert set(curves["step"]) == {0, 5, 10, 15, 20}
    assert all(parse_run_name(r)["target"] == t for r, t in zip(results["run"], results["target"]))


def test_convergence_interpolates_the_crossing_and_integrates_the_budget():
    measures = convergence([0, 10, 20], [1.0, 0.6, 0.2], threshold=0.4, budget=20, budgets=(10, 15))
    assert measures["converged"] and measures["steps_to_threshold"] == pytest.approx(15.0)
    assert measures["auc"] == pytest.approx(((1.0 + 0.6) / 2 * 10 + (0.6 + 0.2) / 2 * 10) / 20)
    assert measures["loss_at_15"] == pytest.approx(0.4)
    never = convergence([0, 10, 20], [1.0, 0.9, 0.8], threshold=0.4, budget=20, budgets=(10,))
    assert not never["converged"] and np.isnan(never["steps_to_threshold"])


@pytest.mark.slow  # trains the tiny matrix (once per session)
def test_each_pretraining_is_computed_once_and_saved_at_every_dose(tiny_study):
    study, _, _ = tiny_study
    stored = sorted(p.name for p in (study / "pretrain").iterdir())
    expected = sorted(pretrain_name(c, s, e) for c in ("bb", "cc:full", "noise", "aa:utero")
                      for s in range(2) for e in (1, 2))
    assert stored == expected  # one per (condition, seed, dose), shared by both targets


def test_a_batched_group_gives_each_member_what_training_it_alone_would():
    import torch

    rng = np.random.default_rng(0)
    batches = rng.standard_normal((4, 3, 8, 12, 16)).astype(np.float32)  # steps, members, batch, frames, mels
    val = torch.from_numpy(rng.standard_normal((5, 12, 16)).astype(np.float32))
    config = StudyConfig(hidden_size=8)
    grouped = make_members([initial_model(config, 16, s) for s in range(3)], 0.01, "grouped")
    alone = [make_members([initial_model(config, 16, s)], 0.01, "grouped") for s in range(3)]
    fused = make_members([initial_model(config, 16, s) for s in range(3)], 0.01, "sequential")
    for step in batches:
        together = grouped.step(step)
        apart = np.concatenate([member.step(step[k:k + 1]) for k, member in enumerate(alone)])
        np.testing.assert_allclose(together, apart, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(together, fused.step(step), rtol=1e-4, atol=1e-5)  # nn.LSTM's own kernel
    np.testing.assert_allclose(grouped.evaluate(val), [m.evaluate(val)[0] for m in alone], rtol=1e-5)
    for k in range(3):
        for a, b in zip(grouped.member(k).state_dict().values(), fused.member(k).state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # trains the tiny matrix (once per session)
def test_splits_never_share_a_speaker_and_latents_are_held_out(tiny_study):
    study, _, _ = tiny_study
    manifest = pd.read_csv(study / "manifest.tsv", sep="\t")
    assert (manifest.groupby("speaker")["split"].nunique() == 1).all()
    latent = pd.read_csv(study / "latent_manifest.tsv", sep="\t")
    trained = set(manifest.loc[manifest["split"] != "test", "speaker"])
    assert not set(latent["speaker"]) & trained
    assert latent["language"].value_counts().nunique() == 1  # balanced


@pytest.mark.slow  # trains the tiny matrix (once per session)
def test_each_condition_hears_its_own_filter(tiny_study):
    study, _, _ = tiny_study
    loaded = load_study(study)
    data = StudyData(loaded)
    features = loaded["features"]
    freqs = np.fft.rfftfreq(features.n_fft, 1 / features.sample_rate)
    high = freqs[mel_filters(features).argmax(axis=1)] > 2 * TINY.cutoff_hz  # 96 dB down: below the floor
    lowpass, full = np.concatenate(data.condition_clips("bb")), np.concatenate(data.condition_clips("bb:full"))
    noise = np.concatenate(data.condition_clips("noise"))
    utero = np.concatenate(data.condition_clips("aa:utero"))
    # Corpus normalisation keeps the attenuation: filtered high bands sit far below the full band's.
    assert lowpass[:, high].mean() < full[:, high].mean() - 1 and utero[:, high].mean() < full[:, high].mean() - 1
    assert abs(full.mean()) < 0.5  # the statistics come from full-band training clips
    assert not np.allclose(utero, np.concatenate(data.clips("aa", "train", "full")))
    assert noise[:, ~high].std() > 0.5  # the noise is not silence


@pytest.mark.slow  # trains the tiny matrix (once per session)
def test_an_interrupted_run_is_redone_alone_and_gives_the_same_curve(tiny_study):
    study, corpus, cache = tiny_study
    name = "bb__aa__e2__s1"  # trained in a group of four in a pool worker
    before = runs.read_json(study / "runs" / name / "curve.json")
    stamps = {p: p.stat().st_mtime_ns for p in [*study.glob("runs/*/curve.json"), *study.glob("pretrain/*")]
              if p.parent.name != name}  # every other run and pretraining
    (study / "runs" / name / "curve.json").unlink()
    runs.set_status(study / "runs" / name, "stopped")
    run_study(TINY, corpus, study, cache_dir=cache, workers=1, probe=False)
    after = runs.read_json(study / "runs" / name / "curve.json")
    np.testing.assert_allclose(after["val_loss"], before["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(after["train_loss"], before["train_loss"], rtol=1e-4, atol=1e-5)
    changed = [p for p, t in stamps.items() if p.exists() and p.stat().st_mtime_ns != t]
    assert changed == []  # nothing finished was redone, not even the pretraining it started from
    runs.set_status(study, "finished")


@pytest.mark.slow  # trains the tiny matrix (once per session)
def test_other_settings_are_refused_naming_the_setting(tiny_study):
    study, corpus, cache = tiny_study
    with pytest.raises(DeepLanguageError, match="hidden_size is 16 there but 8 now"):
        plan_study(StudyConfig(targets=("aa",), hidden_size=8), corpus, study, cache_dir=cache)
    with pytest.raises(DeepLanguageError, match="normalization is corpus there but utterance now"):
        plan_study(replace(TINY, normalization="utterance"), corpus, study, cache_dir=cache)
    with pytest.raises(DeepLanguageError, match="zz.*it has aa, bb, cc"):
        plan_study(StudyConfig(targets=("zz",), pretrain=("none",)), corpus, study.parent / "other", cache_dir=cache)
    with pytest.raises(DeepLanguageError, match="unknown pretraining condition 'aa:loud'"):
        plan_study(StudyConfig(targets=("aa",), pretrain=("aa:loud",)), corpus, study.parent / "other",
                   cache_dir=cache)


@pytest.mark.slow  # trains the tiny matrix (once per session)
def test_a_target_with_too_few_speakers_is_named_with_its_counts(tiny_study, tmp_path):
    _, corpus, cache = tiny_study
    small = tmp_path / "corpus"
    shutil.copytree(corpus / "aa", small / "aa")
    (small / "dd" / "spk0").mkdir(parents=True)
    shutil.copy(corpus / "bb" / "spk0" / "0.wav", small / "dd" / "spk0" / "0.wav")
    with pytest.raises(DeepLanguageError, match=r"language dd has too few speakers to split: 1 speakers with 1 clips"):
        plan_study(StudyConfig(targets=("dd",), pretrain=("none",)), small, tmp_path / "s", cache_dir=tmp_path / "c")


@pytest.mark.slow  # trains the tiny matrix (once per session)
def test_the_cli_refuses_unknown_languages_with_exit_2_and_the_known_list(tiny_study, capsys):
    from core.__main__ import main

    _, corpus, _ = tiny_study
    assert main(["study", "--data", str(corpus), "--targets", "aa,xx", "--pretrain", "none,yy"]) == 2
    assert "unknown language xx, yy" in capsys.readouterr().err
    assert main(["study", "--data", str(corpus), "--target", "aa", "--pretrain", "none,aa:loud"]) == 2
    assert "'aa:loud'" in capsys.readouterr().err


def test_the_in_utero_filter_is_the_published_one_and_has_its_own_cache():
    from core.audio.features import FeatureConfig
    from core.audio.filters import utero, utero_gain

    # Cruz Blandon et al. 2025 target about 10 / 35 / 44 dB at 100 / 500 / 2000 Hz; their second-order
    # coefficients give 5.6 / 32.1 / 57.0 dB at 16 kHz (12 dB per octave cannot meet all three).
    decibels = -10 * np.log10(utero_gain(np.array([100.0, 500.0, 2000.0])))
    np.testing.assert_allclose(decibels, [5.6, 32.1, 57.0], atol=0.1)
    assert abs(decibels[1] - 35) < 3 and decibels[2] >= 44 and 3 < decibels[0] < 10
    # The waveform filter does what the gain the features use says, on sines measured after the transient.
    t = np.arange(SR) / SR
    for f, db in zip((100.0, 500.0, 2000.0), decibels):
        out = utero(np.sin(2 * np.pi * f * t))[SR // 2:]
        measured = -20 * np.log10(out.std() / np.sqrt(0.5))
        assert abs(measured - db) < 0.5, (f, measured, db)
    # Maternal masking noise at 10 dB SNR: the filtered noise alone sits about 10 dB under the filtered speech.
    noise_only = utero(np.zeros(SR), masking=True, seed=1)
    assert noise_only.std() == 0  # no signal, no noise: the SNR is relative to the clip
    white = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    masked, clean = utero(white, masking=True), utero(white)
    snr = 10 * np.log10(np.mean(clean ** 2) / np.mean((masked - clean) ** 2))
    assert 9 < snr < 11
    # A new cache for the new filter; the Butterworth's cache keeps the key it had before the field.
    assert FeatureConfig(lowpass_filter="utero").key() != FeatureConfig().key()
    import hashlib
    import json
    from dataclasses import asdict

    from core.audio.features import FEATURES_VERSION

    before = {k: v for k, v in asdict(FeatureConfig()).items() if k != "lowpass_filter"}
    old_key = hashlib.sha1(json.dumps({**before, "version": FEATURES_VERSION}, sort_keys=True).encode()).hexdigest()
    assert FeatureConfig().key() == old_key[:12]


# One target, "none" and its own language: the shape of the seed's design and the Train page's study.
ONE_LANGUAGE = StudyConfig(targets=("aa",), pretrain=("none", "aa"), seeds=2, pretrain_epochs=(1,),
                           pretrain_epoch_steps=3, budget_steps=20, loss_budgets=(10, 20), threshold_step=10,
                           hidden_size=16, crop_frames=50, crops_per_clip=2, batch_size=8, eval_every=5,
                           group_size=4, split_fractions=(0.35, 0.15, 0.5), autoencoder=False)


@pytest.fixture(scope="session")
def one_language_studies(tmp_path_factory):
    """Two finished one-language studies: the default latent sample, and one told to probe only "aa"."""
    root = tmp_path_factory.mktemp("one-language")
    make_corpus(root / "corpus")
    run_study(ONE_LANGUAGE, root / "corpus", root / "default", cache_dir=root / "cache", workers=2, n_permutations=2)
    run_study(replace(ONE_LANGUAGE, latent_languages=("aa",)), root / "corpus", root / "aa-only",
              cache_dir=root / "cache", workers=2, n_permutations=2)
    return root / "default", root / "aa-only"


@pytest.mark.slow  # trains two tiny studies
def test_a_one_language_study_probes_its_language_against_the_dataset_s_others(one_language_studies):
    from core.study.probes import load_probes
    from core.study.report import study_summary
    from core.study.report_text import summary_text

    study, _ = one_language_studies
    assert study_status(study)["state"] == "finished"
    latent = pd.read_csv(study / "latent_manifest.tsv", sep="\t")
    assert sorted(latent["language"].unique()) == ["aa", "bb", "cc"]  # widened to the dataset's languages
    probes = load_probes(study)
    assert set(probes["task"]) == {"target-vs-rest", "all-languages"} and set(probes["target"]) == {"aa"}
    summary = study_summary(study)
    assert {p["target"] for p in summary["probes"]} == {"aa"} and summary["probe_note"] is None
    assert "no probes" not in summary_text(summary) and "linear probes" in summary_text(summary)
    # The study wrote its one summary (report_summary.json, the pages' cache), not a second one.
    assert (study / "report_summary.json").exists() and not (study / "summary.json").exists()


@pytest.mark.slow  # trains two tiny studies
def test_a_study_told_to_probe_one_language_finishes_and_says_why_it_has_no_probes(one_language_studies,
                                                                                  tmp_path):
    from core.study.report import study_summary
    from core.study.report_html import write_report
    from core.study.report_text import summary_text

    _, study = one_language_studies
    assert study_status(study)["state"] == "finished" and not (study / "probes.tsv").exists()
    assert len(study_results(study)) == 4
    summary = study_summary(study, use_cache=False)
    text = summary_text(summary)
    assert "no probes for this study" in text and "--latent-languages" in text
    assert summary["probes"] == [] and summary["probe_note"].startswith("no probes for this study")
    assert "no probes for this study" in write_report(study, tmp_path / "report.html").read_text()


def test_a_job_keeps_no_clip_list_it_has_finished_with(tiny_study):
    import gc
    import weakref

    study, _, _ = tiny_study
    data = StudyData(load_study(study))
    clips = data.clips("aa", "train", "full")
    first = weakref.ref(clips[0])
    del clips
    gc.collect()
    assert first() is None  # released with the caller's list, not cached for the process's life


def test_the_latent_sample_is_capped_per_language_however_big_the_test_split(tiny_study, tmp_path, monkeypatch):
    from core.study import plan

    _, corpus, cache = tiny_study
    monkeypatch.setattr(plan, "MAX_LATENT_PER_LANGUAGE", 3)
    planned = plan_study(TINY, corpus, tmp_path / "capped", cache_dir=cache)
    latent = pd.read_csv(planned / "latent_manifest.tsv", sep="\t")
    assert latent["language"].value_counts().to_dict() == dict.fromkeys(sorted(set(latent["language"])), 3)
    chosen = plan_study(replace(TINY, n_per_language=4), corpus, tmp_path / "chosen", cache_dir=cache)
    assert (pd.read_csv(chosen / "latent_manifest.tsv", sep="\t")["language"].value_counts() == 4).all()


def test_pretraining_groups_go_condition_by_condition(tiny_study, tmp_path):
    from core.study.run import plan_jobs

    _, corpus, cache = tiny_study
    planned = plan_study(TINY, corpus, tmp_path / "fresh", cache_dir=cache)
    first, _ = plan_jobs(planned, workers=2)
    pretrain = [items for kind, items in first if kind == "pretrain"]
    assert sorted(item for items in pretrain for item in items) == sorted(
        (c, s) for c in TINY.pretrain if c != "none" for s in range(TINY.seeds))
    # 4 conditions x 2 seeds in 2 groups of 4: two conditions each (seed by seed, each group held all four).
    assert [len({condition for condition, _ in items}) for items in pretrain] == [2, 2]
