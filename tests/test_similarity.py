"""core.study.similarity: five language similarities, each symmetric with higher = more similar."""

import json

import numpy as np
import pandas as pd
import pytest

from core.errors import DeepLanguageError
from core.study import similarity
from core.study.layout import load_study
from core.study.report import study_summary
from tests.test_study import tiny_study  # noqa: F401  (a shared fixture)


def test_family_similarity_counts_shared_levels():
    table = similarity.family_similarity()
    assert table.loc["es", "pt"] == 1.0  # same subgroup
    assert table.loc["es", "it"] == pytest.approx(2 / 3)  # both Romance
    assert table.loc["es", "de"] == pytest.approx(1 / 3)  # both Indo-European
    assert table.loc["es", "ja"] == 0.0
    assert table.loc["ja", "zh-CN"] == 0.0  # unrelated families share no level below either
    np.testing.assert_array_equal(table.to_numpy(), table.to_numpy().T)


def test_confusion_similarity_symmetrises_row_rates(tmp_path):
    report = {"labels": ["a", "b", "c"], "confusion": [[8, 2, 0], [1, 3, 0], [0, 5, 5]], "accuracy": 0.6,
              "accuracy_ci95": [0.5, 0.7], "chance": 1 / 3, "n_clips": 24, "n_speakers": 12, "n_folds": 5}
    (tmp_path / "cv.json").write_text(json.dumps(report))
    similarity.store_confusion(tmp_path / "cv.json", tmp_path / "confusion.json")
    table = similarity.confusion_similarity(tmp_path / "confusion.json")
    assert table.loc["a", "b"] == pytest.approx((2 / 10 + 1 / 4) / 2)
    assert table.loc["b", "c"] == pytest.approx((0 + 5 / 10) / 2) == table.loc["c", "b"]
    assert np.isnan(table.loc["a", "a"])


def test_a_missing_stored_file_says_how_to_regenerate_it(tmp_path):
    with pytest.raises(DeepLanguageError, match="cv-out"):
        similarity.confusion_similarity(tmp_path / "nothing.json")
    with pytest.raises(DeepLanguageError, match="family, confusion, phonemes, whisper-centroid"):
        similarity.language_similarity("spelling")
    with pytest.raises(DeepLanguageError, match="study's clips"):
        similarity.language_similarity("whisper-centroid")
    with pytest.raises(DeepLanguageError, match="probe --study .* --identify"):
        similarity.language_similarity("whisper-confusion", tmp_path)


def test_normalize_phoneme_drops_stress_tone_and_diacritics():
    assert similarity.normalize_phoneme("ˈa") == "a"
    assert similarity.normalize_phoneme("e̞") == "e"
    assert similarity.normalize_phoneme("ɯᵝ") == "ɯ"
    assert similarity.normalize_phoneme("ˈo2") == "o"
    assert similarity.normalize_phoneme("ää") == "aː"
    assert similarity.normalize_phoneme("tʃ") == "tʃ"


def test_espeak_phonemizes_real_sentences():
    spanish = similarity.phoneme_counts(["Gracias, la cerveza está muy fría."], "es")
    assert {"θ", "ɾ", "a"} <= set(spanish)
    # Kanji are read as English "Chinese letter": those words are left out, the kana kept.
    japanese = similarity.phoneme_counts(["わたしは日曜日も働いています。"], "ja")
    assert "w" in japanese and "ð" not in japanese and "aɪ" not in japanese


def test_shipped_similarities_cover_the_sample_and_agree_on_the_obvious():
    for method in similarity.METHODS:
        if method in similarity.STUDY_METHODS:
            continue  # a study's: tested on the shipped studies below
        table = similarity.language_similarity(method)
        assert set(table.index) == set(table.columns)
        assert {"es", "it", "ja", "en", "fr", "de"} <= set(table.index), method
        values = table.to_numpy()
        np.testing.assert_allclose(values, values.T, equal_nan=True)
        assert np.nanmin(values) >= 0 and np.nanmax(values) <= 1
        # Two Romance languages are more alike than a Romance language and Japanese, every way.
        assert table.loc["es", "it"] > table.loc["es", "ja"], method


def test_whisper_centroid_distance_is_zero_to_itself_symmetric_and_ranks_the_near_one_first():
    rng = np.random.default_rng(0)
    centre = {"a": rng.normal(size=32), "c": rng.normal(size=32)}
    centre["b"] = centre["a"] + 0.3 * rng.normal(size=32)  # b lies near a, c far from both
    languages = np.repeat(["a", "b", "c"], 40)
    embeddings = np.stack([centre[lang] + 0.2 * rng.normal(size=32) for lang in languages]) + 5.0  # a shared offset
    distance = similarity.centroid_distance(embeddings, languages)
    assert list(distance.index) == ["a", "b", "c"]
    np.testing.assert_array_equal(np.diag(distance.to_numpy()), 0.0)
    np.testing.assert_array_equal(distance.to_numpy(), distance.to_numpy().T)
    assert distance.loc["a", "b"] < distance.loc["a", "c"] and distance.loc["a", "b"] < distance.loc["b", "c"]
    assert (distance.to_numpy() >= 0).all() and (distance.to_numpy() <= 2).all()


def test_whisper_lid_rates_are_restricted_to_the_study_languages_and_renormalised():
    codes = ["en", "zh", "es", "pt", "de"]
    # Clip 1 (es) gives most mass to pt, a language outside the study: it must not count.
    log_probs = np.log(np.array([[0.01, 0.01, 0.28, 0.60, 0.10],
                                 [0.02, 0.08, 0.45, 0.05, 0.40],
                                 [0.05, 0.80, 0.05, 0.05, 0.05]]))
    rates = similarity.restricted_lid_rates(log_probs, ["es", "es", "zh-CN"], codes)
    assert list(rates.index) == ["es", "zh-CN"]
    np.testing.assert_allclose(rates.sum(1), 1.0)
    first, second = 0.28 / 0.29, 0.45 / 0.53
    assert rates.loc["es", "es"] == pytest.approx((first + second) / 2)
    assert rates.loc["zh-CN", "zh-CN"] == pytest.approx(0.80 / 0.85)


def test_the_capped_sample_takes_every_speaker_before_a_second_clip_of_any():
    manifest = pd.DataFrame({"language": ["es"] * 6 + ["it"] * 2, "speaker": ["s1"] * 4 + ["s2", "s3", "t1", "t2"],
                             "path": [f"{i}.mp3" for i in range(8)]})
    capped = similarity.capped_sample(manifest, 3)
    assert capped.groupby("language").size().to_dict() == {"es": 3, "it": 2}
    assert set(capped.loc[capped["language"] == "es", "speaker"]) == {"s1", "s2", "s3"}
    assert list(capped["path"]) == ["0.mp3", "4.mp3", "5.mp3", "6.mp3", "7.mp3"]  # the manifest's order
    assert similarity.capped_sample(manifest, 10).equals(manifest)  # nothing to cap: unchanged


@pytest.mark.parametrize("study", ["matrix-study", "real-study", "dose-study", "demo-study"])
def test_shipped_studies_carry_whisper_similarities_of_their_own_clips(study):
    from core.paths import CHECKPOINTS_DIR

    folder = CHECKPOINTS_DIR / study
    languages = similarity.compared_languages(load_study(folder)["config"])
    stored = json.loads((folder / similarity.WHISPER_FILE).read_text())
    assert stored["languages"] == languages and sum(stored["n_clips"].values()) > 0
    distance = np.asarray(stored["centroid_distance"])
    np.testing.assert_array_equal(np.diag(distance), 0.0)
    np.testing.assert_allclose(distance, distance.T)
    for method in similarity.STUDY_METHODS:
        table = similarity.language_similarity(method, folder)
        np.testing.assert_allclose(table.to_numpy(), table.to_numpy().T, equal_nan=True)
        assert "speakers" in similarity.similarity_source(method, folder)


@pytest.mark.slow  # trains the tiny matrix (once per session)
def test_a_study_of_languages_whisper_does_not_know_keeps_the_centroids_and_says_why_no_confusion(tiny_study):
    study, _, _ = tiny_study
    centroid = similarity.language_similarity("whisper-centroid", study)
    assert set(centroid.index) == set(similarity.compared_languages(load_study(study)["config"]))
    np.testing.assert_allclose(np.diag(centroid.to_numpy()), 1.0)
    with pytest.raises(DeepLanguageError, match="no language token for aa"):
        similarity.language_similarity("whisper-confusion", study)
    methods = {m["method"]: m for m in study_summary(study, use_cache=False)["similarity_methods"]}
    assert "no language token" in methods["whisper-confusion"]["reason"]
    assert "speakers" in methods["whisper-centroid"]["source"]
