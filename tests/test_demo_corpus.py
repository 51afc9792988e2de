"""The demo corpus: Common Voice's layout, 2-6 s 16 kHz mono clips, >= 12 voices, same seed -> same corpus."""

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.data import demo_corpus
from core.commands import demo_corpus as command
from core.data.demo_corpus import (DEMO_LANGUAGES, MARKER_NAME, SENTENCES, TSV_COLUMNS,
                              build_demo_corpus, voices_for)
from core.errors import DeepLanguageError

LANGUAGES = ("es", "ja", "en")
N_CLIPS = 6


def read_tsv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_clips(corpus: Path, language: str) -> list[np.ndarray]:
    return [sf.read(corpus / language / "clips" / row["path"], dtype="int16")[0]
            for row in read_tsv(corpus / language / "validated.tsv")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return build_demo_corpus(tmp_path_factory.mktemp("demo"), seed=0, n_clips=N_CLIPS,
                             languages=LANGUAGES, workers=2)


@pytest.mark.slow
def test_layout_and_tsv_match_common_voice(corpus):
    assert (corpus / "README.md").read_text().startswith("# deepLanguage demo corpus")
    assert json.loads((corpus / MARKER_NAME).read_text())["seed"] == 0
    assert sorted(d.name for d in corpus.iterdir() if d.is_dir()) == sorted(LANGUAGES)
    for language in LANGUAGES:
        tsv = corpus / language / "validated.tsv"
        assert tsv.read_text(encoding="utf-8").splitlines()[0].split("\t") == list(TSV_COLUMNS)
        rows = read_tsv(tsv)
        assert len(rows) == N_CLIPS
        assert [row["path"] for row in rows] == [f"demo_{language}_{i:05d}.flac" for i in range(N_CLIPS)]
        assert sorted(p.name for p in (corpus / language / "clips").iterdir()) == [r["path"] for r in rows]
        for row in rows:
            assert row["locale"] == language
            assert row["gender"] in {"male", "female"}
            assert re.fullmatch(rf"{language}-voice\d\d", row["client_id"])
            assert row["sentence"].strip()


@pytest.mark.slow
def test_clips_are_16k_mono_and_2_to_6_seconds(corpus):
    for language in LANGUAGES:
        for clip in (corpus / language / "clips").glob("*.flac"):
            info = sf.info(clip)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert 2.0 <= info.duration <= 6.0, (clip.name, info.duration)
            audio, _ = sf.read(clip)
            assert 0.2 < np.abs(audio).max() <= 1.0  # random gain, never clipped, never silent


@pytest.mark.slow
def test_same_seed_same_corpus_whatever_the_order_and_workers(corpus, tmp_path):
    again = build_demo_corpus(tmp_path / "again", seed=0, n_clips=N_CLIPS,
                              languages=LANGUAGES[::-1], workers=1)
    for language in LANGUAGES:
        tsv = f"{language}/validated.tsv"
        assert (again / tsv).read_bytes() == (corpus / tsv).read_bytes()
        for a, b in zip(read_clips(corpus, language), read_clips(again, language), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_another_seed_gives_another_corpus(corpus, tmp_path):
    other = build_demo_corpus(tmp_path / "other", seed=1, n_clips=N_CLIPS, languages=("es",))
    for a, b in zip(read_clips(corpus, "es"), read_clips(other, "es"), strict=True):
        assert a.shape != b.shape or not np.array_equal(a, b)


def test_every_language_has_at_least_12_consistent_voices():
    assert len(DEMO_LANGUAGES) >= 8
    assert {"es", "it", "ja", "en", "fr", "de"} <= set(DEMO_LANGUAGES)
    for language in DEMO_LANGUAGES:
        voices = voices_for(language)
        assert len(voices) >= 12
        assert len({v.client_id for v in voices}) == len(voices)
        assert len({(v.espeak_name, v.rate_wpm, v.pitch) for v in voices}) == len(voices)
        assert {v.gender for v in voices} == {"male", "female"}
        assert voices_for(language) == voices  # the table is fixed, not drawn per call


@pytest.mark.slow
def test_enough_clips_use_at_least_12_speakers_each_with_one_gender(tmp_path):
    corpus = build_demo_corpus(tmp_path, n_clips=24, languages=("it",))
    rows = read_tsv(corpus / "it" / "validated.tsv")
    assert len({row["client_id"] for row in rows}) >= 12
    genders = {}
    for row in rows:
        assert genders.setdefault(row["client_id"], row["gender"]) == row["gender"]


def test_sentence_pools_are_large_and_tsv_safe():
    for language in DEMO_LANGUAGES:
        sentences = SENTENCES[language]
        assert len(sentences) >= 40
        assert len(set(sentences)) == len(sentences)
        assert not any(ch in s for s in sentences for ch in '\t\n"')


@pytest.mark.slow
def test_japanese_is_kana_only(corpus):
    written = list(SENTENCES["ja"]) + [row["sentence"] for row in read_tsv(corpus / "ja" / "validated.tsv")]
    for sentence in written:
        assert not re.search(r"[\u3400-\u4dbf\u4e00-\u9fff]", sentence), sentence  # no kanji
        assert re.fullmatch(r"[\u3041-\u309f\u30a0-\u30ff 、。？！]+", sentence), sentence


def test_japanese_particles_are_spoken_as_said():
    spoken = demo_corpus._spoken_text("ja", "こんにちは、やまへ いきます。はるは はなが さきます。")
    assert spoken == "こんにちわ、やまえ いきます。はるわ はなが さきます。"
    assert demo_corpus._spoken_text("es", "¿Qué tal?") == "¿Qué tal?"


@pytest.mark.slow
def test_a_complete_corpus_is_not_rebuilt(tmp_path):
    build_demo_corpus(tmp_path, n_clips=3, languages=("fr",))
    clip = tmp_path / "fr" / "clips" / "demo_fr_00000.flac"
    built_at = clip.stat().st_mtime_ns
    calls = []
    started = time.perf_counter()
    build_demo_corpus(tmp_path, n_clips=3, languages=("fr",), on_progress=lambda *a: calls.append(a))
    assert time.perf_counter() - started < 0.5
    assert clip.stat().st_mtime_ns == built_at
    assert calls == [(3, 3)]


@pytest.mark.slow
def test_an_interrupted_or_different_build_is_redone(tmp_path):
    build_demo_corpus(tmp_path, n_clips=3, languages=("de",))
    (tmp_path / MARKER_NAME).unlink()  # as if the build had stopped before its end
    (tmp_path / "de" / "clips" / "demo_de_00001.flac").write_bytes(b"half a file")
    build_demo_corpus(tmp_path, n_clips=3, languages=("de",))
    assert sf.info(tmp_path / "de" / "clips" / "demo_de_00001.flac").samplerate == 16000

    build_demo_corpus(tmp_path, n_clips=2, languages=("nl",))  # other settings: old clips go
    assert sorted(p.name for p in tmp_path.rglob("*.flac")) == ["demo_nl_00000.flac", "demo_nl_00001.flac"]
    assert not (tmp_path / "de").exists()
    assert json.loads((tmp_path / MARKER_NAME).read_text())["languages"] == ["nl"]


def test_ensure_keeps_any_complete_corpus(tmp_path):
    (tmp_path / MARKER_NAME).write_text(json.dumps({"seed": 7}))  # a finished build, other settings
    assert demo_corpus.ensure_demo_corpus(tmp_path) == tmp_path
    assert not list(tmp_path.rglob("*.flac"))


@pytest.mark.slow
def test_progress_counts_every_clip(tmp_path):
    calls = []
    build_demo_corpus(tmp_path, n_clips=2, languages=("pt", "it"), workers=2,
                      on_progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (4, 4)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


@pytest.mark.parametrize("kwargs, message", [
    ({"languages": ("es", "xx")}, "choose from"),
    ({"n_clips": 0}, ">= 1"),
    ({"seed": -1}, ">= 0"),
])
def test_bad_settings_give_a_clear_error(tmp_path, kwargs, message):
    with pytest.raises(DeepLanguageError, match=message):
        build_demo_corpus(tmp_path, **kwargs)


def test_missing_espeak_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # `import espeakng_loader` fails
    with pytest.raises(DeepLanguageError, match="pip install espeakng-loader"):
        build_demo_corpus(tmp_path, n_clips=1, languages=("es",))


@pytest.mark.slow
def test_cli_builds_and_summarizes(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--clips", "2", "--languages", "en,fr"])
    assert command.run(args) == 0
    summary = capsys.readouterr().out
    assert "2 languages, 4 clips, 4 voices" in summary
    assert len(read_tsv(tmp_path / "fr" / "validated.tsv")) == 2
