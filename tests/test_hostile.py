"""Hostile input, each fixture made here on the fly: files that cost far more than their size, paths that
leave their folder, dataset text that is markup, and damaged caches. Each gets a clear message and a
bounded cost (memory measured in a fresh subprocess, so one test's arrays don't hide another's)."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from core.audio import decode
from tests.conftest import ROOT

MEMORY_CEILING_MB = 200  # issue 19: a file under the upload limit costs at most this above idle
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed: webm can't be made")


def peak_cost(path, *, as_upload: bool = False, declare_nothing: bool = False, root=ROOT) -> dict:
    """Decode ``path`` in a fresh Python: the peak resident memory it added (MB), the seconds it took, and
    its length or its error. ``declare_nothing`` hides the header's duration from the decoder, as a browser
    recording does; ``root`` is the project whose decoder runs (bench/hostile_decode.py passes another).
    """
    script = f"""
import json, sys, time
sys.path.insert(0, {str(root)!r})
import numpy as np
from core.audio import decode
from core.errors import DeepLanguageError
decode.load_audio(np.zeros(16000, np.float32))  # imports and first-call allocations are idle, not the file's
if {declare_nothing}:
    decode._probe = lambda path: (None, None, None)
started = time.perf_counter()
def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) restarts from here: imports are idle
idle = kib("VmRSS")
path = {str(path)!r}
source = open(path, "rb").read() if {as_upload} else path
try:
    result = {{"seconds": len(decode.load_audio(source, name=path.rsplit("/", 1)[-1])) / 16000}}
except DeepLanguageError as error:
    result = {{"error": str(error)}}
result["wall_s"] = time.perf_counter() - started
result["rise_mb"] = (kib("VmHWM") - idle) / 1024
print(json.dumps(result))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def long_webm(folder, seconds: int = 14400):
    """An opus webm of ``seconds`` of silence (8.7 MB for 4 hours): one minute encoded, then repeated by
    stream copy, so writing it takes a second or two while decoding it would take minutes."""
    minute = folder / "minute.webm"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "60",
                    "-c:a", "libopus", "-b:a", "6k", str(minute)], check=True)
    path = folder / "long.webm"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(seconds // 60 - 1), "-i", str(minute),
                    "-c", "copy", str(path)], check=True)
    return path


def declare_frames(path, n_frames: int) -> None:
    """Rewrite a FLAC's STREAMINFO total-samples field (36 bits at byte 21.5): the header then promises
    ``n_frames`` whatever the file holds."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC"
    fields = int.from_bytes(data[18:26], "big")
    data[18:26] = ((fields & ~((1 << 36) - 1)) | n_frames).to_bytes(8, "big")
    path.write_bytes(bytes(data))


# 1. A file costs at most what its duration allows

@needs_ffmpeg
def test_four_hour_webm_is_refused_at_once_naming_its_length(tmp_path):
    path = long_webm(tmp_path)
    assert path.stat().st_size < 10e6
    for as_upload in (False, True):
        cost = peak_cost(path, as_upload=as_upload)
        assert "long.webm is 14400 s long; the limit is 600 s" in cost["error"]
        assert cost["rise_mb"] < MEMORY_CEILING_MB


@needs_ffmpeg
def test_webm_declaring_no_length_is_stopped_at_the_limit(tmp_path):
    cost = peak_cost(long_webm(tmp_path, seconds=1200), declare_nothing=True)
    assert "long.webm is over 601 s long (decoding stopped there); the limit is 600 s" in cost["error"]
    assert cost["rise_mb"] < MEMORY_CEILING_MB  # the whole output would be 77 MB read, then copied


@needs_ffmpeg
def test_webm_under_the_limit_still_decodes(tmp_path):
    cost = peak_cost(long_webm(tmp_path, seconds=120))
    assert abs(cost["seconds"] - 120) < 1


def test_flac_declaring_8_channels_at_384k_is_refused_before_decoding(tmp_path):
    path = tmp_path / "wide.flac"
    sf.write(path, np.zeros((384000, 8), np.int16), 384000, format="FLAC")
    declare_frames(path, 600 * 384000)
    cost = peak_cost(path)
    assert "wide.flac is 600 s of 8 channel(s) at 384000 Hz" in cost["error"]
    assert "Mix it down" in cost["error"]


def test_high_rate_flac_costs_its_16k_output_not_its_source_samples(tmp_path):
    # 300 s of mono at 384 kHz: 115 million samples, 460 MB as float32; 19 MB at 16 kHz.
    path = tmp_path / "fast.flac"
    with sf.SoundFile(path, "w", 384000, 1, format="FLAC", subtype="PCM_16") as out:
        for _ in range(30):
            out.write(np.zeros(3840000, np.int16))
    cost = peak_cost(path, as_upload=True)
    assert cost["seconds"] == 300
    assert cost["rise_mb"] < 100  # the source is 400 kB: memory follows the output


def test_clip_longer_than_its_header_says_is_stopped_at_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "liar.wav"
    sf.write(path, np.zeros(16000 * 5, np.int16), 16000)
    monkeypatch.setattr(decode, "_check_length", lambda *args: None)  # as if the header said 1 s
    with pytest.raises(decode.ClipTooLongError, match="liar.wav is over 5 s long .decoding stopped there.; the lim"):
        decode.load_audio(path, max_seconds=2)


# 2. Every path stays inside its folder

def tiny_locale(root, cv_sample, rows: list[str], name: str = "es"):
    """A Common Voice locale folder holding four real clips, and a validated.tsv of ``rows`` (tab-separated
    ``client_id, path, sentence, locale``) under the real header."""
    locale = root / name
    (locale / "clips").mkdir(parents=True)
    for clip in sorted((cv_sample / "es" / "clips").iterdir())[:4]:
        shutil.copy(clip, locale / "clips" / clip.name)
    (locale / "validated.tsv").write_text("\n".join(["client_id\tpath\tsentence\tlocale", *rows]) + "\n")
    return locale


def clip_names(locale) -> list[str]:
    return sorted(p.name for p in (locale / "clips").iterdir())


@pytest.mark.parametrize("bad", ["../../outside.mp3", "/etc/passwd", "link.mp3", ""])
def test_clip_paths_leaving_the_dataset_are_refused(tmp_path, cv_sample, bad):
    from core.data.datasets import read_dataset
    from core.errors import DeepLanguageError

    (tmp_path / "outside.mp3").write_bytes(b"secret")
    locale = tiny_locale(tmp_path / "data", cv_sample, [])
    (locale / "clips" / "link.mp3").symlink_to(tmp_path / "outside.mp3")
    good = [f"spk{i}\t{name}\tUna frase.\tes" for i, name in enumerate(clip_names(locale)) if name != "link.mp3"]
    (locale / "validated.tsv").write_text("client_id\tpath\tsentence\tlocale\n" + "\n".join(
        [*good, f"evil\t{bad}\tx\tes", f"evil\t{bad}\ty\tes"]) + "\n")
    with pytest.raises(DeepLanguageError, match=f"validated.tsv: 2 row.s. name a clip outside .*clips or no clip at "
                                                f"all .e.g. {re.escape(repr(bad))}"):
        read_dataset(locale, durations=False)


def test_folder_dataset_symlink_out_is_refused(tmp_path, cv_sample):
    from core.data.datasets import read_dataset
    from core.errors import DeepLanguageError

    (tmp_path / "data" / "es").mkdir(parents=True)
    shutil.copy(next((cv_sample / "es" / "clips").iterdir()), tmp_path / "data" / "es" / "a.mp3")
    (tmp_path / "secret.wav").write_bytes(b"RIFF")
    (tmp_path / "data" / "es" / "b.wav").symlink_to(tmp_path / "secret.wav")
    with pytest.raises(DeepLanguageError, match="1 clip.s. are symlinks to files outside the dataset .e.g. .*b.wav"):
        read_dataset(tmp_path / "data", durations=False)


def test_duplicate_clips_are_dropped_before_splitting(tmp_path, cv_sample):
    from core.data.datasets import assign_splits, read_dataset

    locale = tiny_locale(tmp_path, cv_sample, [])
    names = clip_names(locale)
    shutil.copy(locale / "clips" / names[0], locale / "clips" / "copy.mp3")  # the same bytes, another name
    rows = [f"spk{i}\t{name}\tUna frase.\tes" for i, name in enumerate(names)]
    rows += [f"other{i}\t{names[0]}\tUna frase.\tes" for i in range(2)] + ["third\tcopy.mp3\tUna frase.\tes"]
    (locale / "validated.tsv").write_text("client_id\tpath\tsentence\tlocale\n" + "\n".join(rows) + "\n")
    manifest = read_dataset(locale, durations=False)
    assert len(manifest) == 4 and manifest.attrs["duplicates"] == 3
    split = assign_splits(manifest, (0.5, 0.25, 0.25))
    assert split.groupby("path")["split"].nunique().max() == 1


def test_leak_check_catches_the_same_audio_across_splits(tmp_path, cv_sample):
    import pandas as pd

    from core.data.datasets import SpeakerLeakError, check_leakage

    clips = sorted((cv_sample / "es" / "clips").iterdir())[:2]
    shutil.copy(clips[0], tmp_path / "renamed.mp3")
    manifest = pd.DataFrame({"path": [str(clips[0]), str(clips[1]), str(tmp_path / "renamed.mp3")],
                             "speaker": ["a", "b", "c"], "split": ["train", "train", "test"]})
    with pytest.raises(SpeakerLeakError, match="1 clip.s. are the same audio in more than one split"):
        check_leakage(manifest)
    check_leakage(manifest.iloc[:2])


def test_language_codes_are_safe_names_from_dataset_to_study_folder(tmp_path, cv_sample):
    from core.data.datasets import read_dataset
    from core.errors import DeepLanguageError, UsageError
    from core.study.layout import STUDIES_DIR, StudyConfig, default_study_dir

    locale = tiny_locale(tmp_path / "data", cv_sample, [])
    (locale / "validated.tsv").write_text("client_id\tpath\tsentence\tlocale\n" + "\n".join(
        f"spk{i}\t{name}\tx\t../../../../tmp/x" for i, name in enumerate(clip_names(locale))) + "\n")
    with pytest.raises(DeepLanguageError, match="language '../../../../tmp/x' is not a valid language code"):
        read_dataset(locale, durations=False)
    for targets, pretrain in [(("../../../../tmp/x",), ("none",)), (("es",), ("../up:full",)), (("es",), ("a__b",))]:
        with pytest.raises(UsageError):
            StudyConfig(targets=targets, pretrain=pretrain)
    folder = default_study_dir(tmp_path / "../my data; rm -rf", StudyConfig(targets=("zh-CN", "es")))
    assert folder.parent == STUDIES_DIR and folder.name.startswith("my_data__rm_-rf-zh-CN-es-")


def test_tsv_with_an_unbalanced_quote_is_an_error_naming_the_line(tmp_path, cv_sample):
    from core.data.datasets import read_dataset
    from core.errors import DeepLanguageError

    locale = tiny_locale(tmp_path, cv_sample, [])
    names = clip_names(locale)
    rows = [f"spk{i}\t{name}\tUna frase.\tes" for i, name in enumerate(names)]
    rows[1] = f'spk1\t{names[1]}\t"Una frase sin cierre.\tes'
    (locale / "validated.tsv").write_text("client_id\tpath\tsentence\tlocale\n" + "\n".join(rows) + "\n")
    with pytest.raises(DeepLanguageError, match="validated.tsv, line 3: .*quote that is never closed"):
        read_dataset(locale, durations=False)
    rows[1] = f"spk1\t{names[1]}\tUna\tfrase.\tes"  # a stray tab: one field too many
    (locale / "validated.tsv").write_text("client_id\tpath\tsentence\tlocale\n" + "\n".join(rows) + "\n")
    with pytest.raises(DeepLanguageError, match="validated.tsv, line 3: 5 field.s. where the header has 4"):
        read_dataset(locale, durations=False)


# 3. Dataset text is shown as text

def test_data_page_shows_sentences_as_plain_text_and_cuts_a_huge_one(tmp_path, cv_sample):
    from streamlit.testing.v1 import AppTest

    from ui.common import CUSTOM

    image = "![tracker](http://127.0.0.1:9/pixel.png) **bold** :red[red]"
    huge = "palabra " * 130000  # about 1 MB
    locale = tiny_locale(tmp_path, cv_sample, [])
    names = clip_names(locale)
    sentences = [image, huge, "Una frase.", "Otra frase."]
    rows = [f"spk{i}\t{name}\t{sentence}\tes" for i, (name, sentence) in enumerate(zip(names, sentences))]
    (locale / "validated.tsv").write_text("client_id\tpath\tsentence\tlocale\n" + "\n".join(rows) + "\n")
    at = AppTest.from_file(str(ROOT / "ui/pages/data.py"), default_timeout=60).run()
    at.selectbox(key="data_choice").set_value(CUSTOM).run()
    at.text_input(key="data_path").set_value(str(locale)).run()
    for row, sentence in enumerate(sentences[:2]):
        at.selectbox(key="data_clip").set_value(row).run()
        assert not at.exception
        assert not any("tracker" in m.value or "palabra" in m.value for m in [*at.markdown, *at.caption])
        shown = at.text[1].value
        assert shown == sentence if row == 0 else (len(shown) < 400 and huge.startswith(shown.removesuffix(" ...")))
    assert "Full text (1,040,000 characters)" in at.expander[0].label and at.expander[0].text[0].value.strip() == huge.strip()


def test_csv_export_neutralises_formulas():
    import pandas as pd

    from core.files import neutralize_formulas

    table = pd.DataFrame({"speaker": ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tx", "\ry", "fine"],
                          "x": [1.0, -2.0, 3.0, 4.0, 5.0, 6.0, 7.0]})
    safe = neutralize_formulas(table)
    assert list(safe["speaker"]) == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\ry", "fine"]
    assert list(safe["x"]) == list(table["x"])  # numbers stay numbers


def test_html_report_escapes_every_value_of_a_crafted_summary(tmp_path):
    import pandas as pd

    from core.study.report import study_summary
    from core.study.report_html import render_report
    from tests.test_report import write_planted_study

    write_planted_study(tmp_path, seeds=2)
    summary = study_summary(tmp_path)
    bad = "<img src=x onerror=alert(1)>"
    summary["progress"].update(finished=bad, planned=bad, n_missing=bad, complete=False)
    summary["data"].update(n_clips=bad, n_speakers=bad)
    summary["filters"]["lowpass_cutoff_hz"] = bad
    summary["threshold"]["per_target"]["es"] = bad
    html = render_report(summary, pd.DataFrame(columns=["target"]))
    assert "<img" not in html and html.count("&lt;img src=x") >= 7


# 4. Serve safely by default

def test_the_server_listens_on_loopback_and_hides_tracebacks():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["client"]["showErrorDetails"] in ("type", "none")


def test_training_jobs_are_capped_and_the_train_page_says_so(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from core import runs
    from core.errors import DeepLanguageError
    from core.jobs import launch

    monkeypatch.setattr(runs, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setenv("DEEPLANGUAGE_MAX_JOBS", "1")
    live = runs.create_run("identify", {"train": {"model": "cnn-baseline", "epochs": 3}}, runs.RUNS_DIR, name="live")
    with runs.RunLock(live):  # a live trainer holds its run's lock
        runs.set_status(live, "running")
        with pytest.raises(DeepLanguageError, match=r"1 training job\(s\) are running \(live\), the most this server "
                                                    r"allows at once \(1, set by DEEPLANGUAGE_MAX_JOBS\)"):
            launch.launch("nextframe", launch.study_run_config(tmp_path), runs_dir=runs.RUNS_DIR)
        assert [p.name for p in runs.list_runs(runs.RUNS_DIR)] == ["live"]  # the refused launch left nothing
        at = AppTest.from_file(str(ROOT / "ui" / "pages" / "train.py"), default_timeout=60).run()
        assert not at.exception
        assert "the most this server allows at once" in at.warning[0].value
        assert at.button(key="train_launch").disabled


# 5. Damaged caches get a message naming the file (and are rebuilt where they can be)

def test_damaged_mel_filters_cache_is_rebuilt(tmp_path, monkeypatch):
    from core.audio import features

    monkeypatch.setattr(features, "FILTERS_DIR", tmp_path)
    config = features.FeatureConfig()
    stored = tmp_path / f"{config.key()}.npy"
    stored.write_bytes(b"\x93NUMPY damaged")
    features.mel_filters.cache_clear()
    try:
        filters = features.mel_filters(config)
    finally:
        features.mel_filters.cache_clear()
    assert filters.shape == (config.n_mels, config.n_fft // 2 + 1)
    np.testing.assert_array_equal(np.load(stored), filters)  # replaced by the intact filterbank


def test_damaged_latents_and_ltas_name_the_file(tmp_path):
    from core.errors import DeepLanguageError
    from core.study.latent_files import latent_kinds, load_latents
    from core.study.noise import ltas_intact, read_ltas

    (tmp_path / "latents.npz").write_bytes(b"PK\x03\x04 cut short")
    (tmp_path / "latents.tsv").write_text("key\tpath\n")
    for read in (load_latents, latent_kinds):
        with pytest.raises(DeepLanguageError, match=r"the latents file .*latents.npz is damaged .*run the study"):
            read(tmp_path)
    (tmp_path / "ltas.npy").write_bytes(b"\x93NUMPY damaged")
    with pytest.raises(DeepLanguageError, match=r"the speech spectrum .*ltas.npy is damaged .*rebuilds the file"):
        read_ltas(tmp_path / "ltas.npy")
    assert not ltas_intact(tmp_path / "ltas.npy")  # so the study command builds it again


def test_prepare_counts_unique_clips_and_says_what_it_skipped(tmp_path, cv_sample, capsys):
    import argparse

    from core.commands import prepare

    locale = tiny_locale(tmp_path, cv_sample, [])
    names = clip_names(locale)
    sf.write(locale / "clips" / "tick.wav", 0.1 * np.random.default_rng(0).standard_normal(160), 16000)  # 10 ms
    rows = [f"spk{i}\t{name}\tx\tes" for i, name in enumerate(names)]
    rows += [f"again\t{names[0]}\tx\tes", "short\ttick.wav\tx\tes"]
    (locale / "validated.tsv").write_text("client_id\tpath\tsentence\tlocale\n" + "\n".join(rows) + "\n")
    parser = argparse.ArgumentParser()
    prepare.add_arguments(parser)
    prepare.run(parser.parse_args(["--data", str(locale), "--cache", str(tmp_path / "cache"), "--workers", "1"]))
    out = capsys.readouterr().out
    assert "prepared 5 clips of 1 languages (5 new, 0 cached, 0 failed)" in out
    assert "1 duplicate row(s) skipped: the same clip listed twice" in out
    assert "1 clip(s) are shorter than 1.5 s (e.g. " in out and "tick.wav, 0.01 s)" in out
