"""core.study.similarity: three language similarities, each symmetric with higher = more similar."""

import json

import numpy as np
import pytest

from core.errors import DeepLanguageError
from core.study import similarity


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
    with pytest.raises(DeepLanguageError, match="family, confusion, phonemes"):
        similarity.language_similarity("spelling")


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
        table = similarity.language_similarity(method)
        assert set(table.index) == set(table.columns)
        assert {"es", "it", "ja", "en", "fr", "de"} <= set(table.index), method
        values = table.to_numpy()
        np.testing.assert_allclose(values, values.T, equal_nan=True)
        assert np.nanmin(values) >= 0 and np.nanmax(values) <= 1
        # Two Romance languages are more alike than a Romance language and Japanese, every way.
        assert table.loc["es", "it"] > table.loc["es", "ja"], method
