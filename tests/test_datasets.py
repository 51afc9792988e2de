import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from core.data import clipscan, datasets
from core.errors import DeepLanguageError
from tests.conftest import SR, speechlike


def test_common_voice_sample_reads_with_speakers_and_durations(cv_sample):
    manifest = datasets.read_dataset(cv_sample)
    assert set(manifest.columns) >= {"path", "language", "speaker", "duration", "sentence"}
    assert manifest["language"].nunique() == 12
    assert len(manifest) > 800
    assert manifest["duration"].between(0.1, 30).all()
    assert manifest.groupby("language")["speaker"].nunique().min() >= 10


def test_one_locale_folder_reads_alone(cv_sample):
    manifest = datasets.read_dataset(cv_sample / "es")
    assert set(manifest["language"]) == {"es"}


def test_speaker_splits_are_disjoint_and_near_their_fractions(cv_sample):
    manifest = datasets.assign_splits(datasets.read_dataset(cv_sample), seed=3)
    speakers = {s: set(manifest.loc[manifest["split"] == s, "speaker"]) for s in datasets.SPLITS}
    assert not speakers["train"] & speakers["validation"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["validation"] & speakers["test"]
    share = manifest["split"].value_counts(normalize=True)
    assert 0.55 < share["train"] < 0.85 and share["test"] > 0.08
    # Every language is in every split.
    assert (manifest.groupby("split")["language"].nunique() == 12).all()


def test_leakage_check_catches_a_planted_leak(cv_sample):
    manifest = datasets.assign_splits(datasets.read_dataset(cv_sample), seed=0)
    datasets.check_leakage(manifest)
    leaky = manifest.copy()
    speaker = leaky.loc[leaky["split"] == "train", "speaker"].iloc[0]
    victim = leaky.index[(leaky["speaker"] == speaker)][0]
    leaky.loc[victim, "split"] = "test"
    if (leaky["speaker"] == speaker).sum() == 1:  # a one-clip speaker can't leak: plant a copy instead
        leaky = pd.concat([leaky, leaky.loc[[victim]].assign(split="train")])
    with pytest.raises(datasets.SpeakerLeakError, match="more than one split"):
        datasets.check_leakage(leaky)


def test_balance_and_min_duration(cv_sample):
    manifest = datasets.read_dataset(cv_sample)
    balanced = datasets.balance(manifest, seed=1)
    counts = balanced["language"].value_counts()
    assert counts.nunique() == 1 and counts.iloc[0] == manifest["language"].value_counts().min()
    assert set(datasets.balance(manifest, 10)["language"].value_counts()) == {10}
    longer = datasets.filter_min_duration(manifest, 3.0)
    assert (longer["duration"] >= 3.0).all() and len(longer) < len(manifest)


def test_folder_per_language_with_and_without_speakers(tmp_path):
    seeds = iter(range(100))  # every clip different: the same audio twice is one clip (see test_hostile)
    for lang in ("xx", "yy"):
        for speaker in ("ann", "bob"):
            (tmp_path / "nested" / lang / speaker).mkdir(parents=True)
            for i in range(2):
                sf.write(tmp_path / "nested" / lang / speaker / f"{i}.wav", speechlike(0.5, seed=next(seeds)), SR)
        (tmp_path / "flat" / lang).mkdir(parents=True)
        sf.write(tmp_path / "flat" / lang / "a.flac", speechlike(0.5, seed=next(seeds)), SR)
    (tmp_path / "flat" / "xx" / "notes.txt").write_text("not audio")
    nested = datasets.read_dataset(tmp_path / "nested")
    assert len(nested) == 8 and nested["speaker"].nunique() == 4 and nested.attrs["speakers_known"]
    assert np.allclose(nested["duration"], 0.5)
    flat = datasets.read_dataset(tmp_path / "flat")
    assert len(flat) == 2 and not flat.attrs["speakers_known"]


def test_common_voice_with_splits_and_missing_clips(cv_sample, tmp_path):
    locale = tmp_path / "es"
    shutil.copytree(cv_sample / "es", locale)
    table = pd.read_csv(locale / "validated.tsv", sep="\t", dtype=str, keep_default_na=False)
    table.iloc[:10].to_csv(locale / "test.tsv", sep="\t", index=False)
    (locale / "clips" / table["path"].iloc[-1]).unlink()
    manifest = datasets.read_dataset(locale)
    assert manifest.attrs["missing"] == 1 and len(manifest) == len(table) - 1
    assert (manifest["cv_split"] == "test").sum() == 10


def test_bad_dataset_paths_are_clear(tmp_path):
    with pytest.raises(DeepLanguageError, match="does not exist"):
        datasets.read_dataset(tmp_path / "nowhere")
    with pytest.raises(DeepLanguageError, match="no audio clips found"):
        datasets.read_dataset(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DeepLanguageError, match="is a file"):
        datasets.read_dataset(tmp_path / "file.txt")


def _aged(root, seconds: float = 60.0) -> None:
    """Every file and folder under ``root`` dated ``seconds`` ago: a listing that old is safe to cache."""
    import os
    import time

    then = time.time() - seconds
    for path in [root, *root.rglob("*")]:
        os.utime(path, (then, then))


def test_a_second_read_comes_from_the_manifest_cache_and_a_changed_tsv_is_seen(cv_sample, tmp_path, monkeypatch):
    monkeypatch.setattr("core.paths.CACHE_DIR", tmp_path / "cache")
    locale = tmp_path / "es"
    shutil.copytree(cv_sample / "es", locale)
    _aged(locale)
    first = datasets.read_dataset(locale)
    assert len(first) > 50 and first["duration"].notna().all()

    def no_headers(paths):
        raise AssertionError("read the clip headers again")

    monkeypatch.setattr(datasets, "_durations", no_headers)
    again = datasets.read_dataset(locale)
    pd.testing.assert_frame_equal(again, first)
    assert again.attrs["missing"] == first.attrs["missing"] == 0

    lines = (locale / "validated.tsv").read_text(encoding="utf-8").splitlines()
    (locale / "validated.tsv").write_text("\n".join(lines[:11]) + "\n", encoding="utf-8")
    monkeypatch.undo()
    monkeypatch.setattr("core.paths.CACHE_DIR", tmp_path / "cache")
    changed = datasets.read_dataset(locale)
    assert len(changed) == 10 and set(changed["path"]) < set(first["path"])


def test_a_removed_clip_is_seen_through_the_cache(cv_sample, tmp_path, monkeypatch):
    monkeypatch.setattr("core.paths.CACHE_DIR", tmp_path / "cache")
    locale = tmp_path / "es"
    shutil.copytree(cv_sample / "es", locale)
    _aged(locale)
    first = datasets.read_dataset(locale, durations=False)
    Path(first["path"].iloc[0]).unlink()
    again = datasets.read_dataset(locale, durations=False)
    assert len(again) == len(first) - 1 and again.attrs["missing"] == 1


def test_the_leak_check_after_a_cached_read_opens_only_clips_that_changed(cv_sample, tmp_path, monkeypatch):
    """The split's leak check used to open every clip again (29 s at 57k clips on a cold disk): a process that
    reads the dataset from its kept manifest now opens none, and still sees a clip rewritten since."""
    monkeypatch.setattr("core.paths.CACHE_DIR", tmp_path / "cache")
    locale = tmp_path / "es"
    shutil.copytree(cv_sample / "es", locale)
    _aged(locale)
    datasets.read_dataset(locale, durations=False)
    monkeypatch.setattr(clipscan, "_remembered", clipscan._remembered.iloc[:0])  # as in a new process
    opened = []
    scan_part = clipscan._scan_part
    monkeypatch.setattr(clipscan, "_scan_part", lambda paths: opened.extend(paths) or scan_part(paths))
    manifest = datasets.read_dataset(locale, durations=False)
    split = datasets.assign_splits(manifest)
    assert opened == []
    first = split.groupby("split")["path"].first()
    train, test = first["train"], first["test"]
    shutil.copy(train, test)  # the same audio now in two splits, under the test clip's name
    with pytest.raises(datasets.SpeakerLeakError, match="same audio in more than one split"):
        datasets.check_leakage(split)
    assert opened == [test]


def test_a_scan_in_batches_gives_each_clip_its_own_row_and_leaves_no_file_open(cv_sample, tmp_path, monkeypatch):
    """Clips are opened a batch at a time (their heads asked of the disk together): rows stay in order across
    batches, a missing file or a folder gets size -1 or no duration, and every handle is closed."""
    monkeypatch.setattr(clipscan, "BATCH", 3)
    monkeypatch.setattr(clipscan, "_remembered", clipscan._remembered.iloc[:0])
    clips = [str(p) for p in sorted(cv_sample.glob("*/clips/*.mp3"))[:5]]
    paths = [*clips[:2], str(tmp_path / "gone.mp3"), *clips[2:], str(tmp_path)]
    open_before = len(os.listdir("/proc/self/fd"))
    scan = clipscan.scan_clips(paths)
    assert len(os.listdir("/proc/self/fd")) == open_before
    assert list(scan.index) == paths
    assert scan.loc[str(tmp_path / "gone.mp3"), "size"] == -1
    assert np.isnan(scan.loc[str(tmp_path), "seconds"])
    sizes = [os.path.getsize(p) for p in clips]
    assert scan.loc[clips, "size"].tolist() == sizes and scan.loc[clips, "seconds"].gt(1).all()
    alone = pd.concat([clipscan.scan_clips([p]) for p in clips])
    assert scan.loc[clips, "head"].tolist() == alone["head"].tolist()


def test_mp3_durations_come_from_the_head_and_agree_with_libsndfile(cv_sample):
    clips = sorted(cv_sample.glob("*/clips/*.mp3"))[::40]
    scan = clipscan.scan_clips(clips)
    from_head = scan["seconds"].to_numpy()
    from_libsndfile = np.array([sf.info(p).duration for p in clips])
    assert np.isfinite(from_head).all()
    assert np.abs(from_head - from_libsndfile).max() < 0.1  # the size over the bit rate, vs libsndfile's count


def test_an_mp3_head_that_cannot_tell_its_duration_says_so():
    from core.audio.headers import mp3_seconds

    frame = bytes([0xFF, 0xFB, 0x90, 0x64]) + bytes(413)  # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz: 417 bytes
    assert mp3_seconds(frame * 2, 417 * 100) == pytest.approx(417 * 100 * 8 / 128_000)
    louder = bytes([0xFF, 0xFB, 0xA0, 0x64]) + bytes(449)  # the next frame at 160 kbit/s: a variable bit rate
    assert mp3_seconds(frame + louder, 10_000) is None
    assert mp3_seconds(b"RIFF" + bytes(100), 104) is None
    xing = bytearray(frame)
    xing[36:48] = b"Xing" + (1).to_bytes(4, "big") + (1000).to_bytes(4, "big")  # flag 1: the frame count is there
    assert mp3_seconds(bytes(xing), 10_000) == pytest.approx(1000 * 1152 / 44100)


def test_reading_an_mp3_dataset_decodes_no_header(cv_sample, tmp_path, monkeypatch):
    monkeypatch.setattr("core.paths.CACHE_DIR", tmp_path / "cache")

    def no_decoder(path):
        raise AssertionError(f"libsndfile opened {path}")

    monkeypatch.setattr(datasets.sf, "info", no_decoder)
    manifest = datasets.read_dataset(cv_sample / "es")
    assert len(manifest) > 50 and manifest["duration"].between(0.5, 30).all()
