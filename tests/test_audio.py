import io

import numpy as np
import pytest
import soundfile as sf

from core import audio
from core.audio import decode, filters, speech
from core.errors import DeepLanguageError
from tests.conftest import SR, speechlike


@pytest.mark.parametrize("suffix", ["wav", "flac", "mp3", "ogg", "opus", "m4a", "webm"])
def test_every_format_decodes_to_16k_mono(clip_files, suffix):
    if suffix not in clip_files:
        pytest.skip("ffmpeg is not installed: m4a and webm can't be made or read")
    clip = audio.load_audio(clip_files[suffix])
    assert clip.dtype == np.float32 and clip.ndim == 1
    assert abs(len(clip) / SR - 2.0) < 0.1  # codecs pad a little, never much
    original = speechlike()
    n = min(len(original), len(clip))
    # Lossy codecs shift and smear, but the clip's energy envelope survives.
    assert np.corrcoef(speech.frame_energy_db(original[:n]), speech.frame_energy_db(clip[:n]))[0, 1] > 0.9


def test_bytes_and_path_decode_the_same(clip_files):
    from_path = audio.load_audio(clip_files["flac"])
    from_bytes = audio.load_audio(clip_files["flac"].read_bytes(), name="clip.flac")
    np.testing.assert_array_equal(from_path, from_bytes)


def test_stereo_48k_is_mixed_down_and_resampled():
    t = np.arange(48000) / 48000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    clip = audio.load_audio(stereo.astype(np.float32), source_rate=48000)
    assert len(clip) == 16000
    spectrum = np.abs(np.fft.rfft(clip))
    assert abs(np.argmax(spectrum) * SR / len(clip) - 440) < 2


def test_m4a_without_ffmpeg_names_the_format_and_the_fix(clip_files, monkeypatch, tmp_path):
    path = clip_files.get("m4a") or tmp_path / "clip.m4a"
    if not path.exists():
        path.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(100))
    monkeypatch.setattr(decode.shutil, "which", lambda name: None)
    with pytest.raises(DeepLanguageError, match=r"m4a files need ffmpeg.*install"):
        audio.load_audio(path)


def _wav_bytes(data, rate=SR, channels=1):
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV", subtype="FLOAT" if data.dtype == np.float32 else "PCM_16")
    return buffer.getvalue()


def test_bad_inputs_raise_the_project_error(tmp_path):
    cases = {}
    cases["missing"] = (tmp_path / "nope.wav", "no such file")
    (tmp_path / "empty.wav").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.wav", "empty")
    (tmp_path / "text.wav").write_text("this is not audio at all, just text " * 20)
    cases["not audio"] = (tmp_path / "text.wav", "text.wav is not audio: it looks like text")
    good = _wav_bytes(speechlike(1.0))
    (tmp_path / "truncated.wav").write_bytes(good[:30])
    cases["truncated header"] = (tmp_path / "truncated.wav", "could not be decoded")
    (tmp_path / "zero.wav").write_bytes(_wav_bytes(np.zeros(0, dtype=np.int16)))
    cases["zero length"] = (tmp_path / "zero.wav", "zero length")
    nan = speechlike(0.5)
    nan[100] = np.nan
    (tmp_path / "nan.wav").write_bytes(_wav_bytes(nan))
    cases["nan"] = (tmp_path / "nan.wav", "NaN or infinite")
    (tmp_path / "folder.wav").mkdir()
    cases["folder"] = (tmp_path / "folder.wav", "is a folder")
    for what, (path, message) in cases.items():
        with pytest.raises(DeepLanguageError, match=message):
            audio.load_audio(path)


class _Upload(io.BytesIO):
    """Like Streamlit's UploadedFile: a name, and a repr full of internals that no message should show."""
    name = "notes.mp3"

    def __repr__(self) -> str:
        return "UploadedFile(file_id='x', _file_urls=upload_url)"


def test_a_text_file_renamed_mp3_is_called_text_by_its_own_name_without_decoder_chatter(tmp_path, capfd):
    text = "Shopping list\nmilk, eggs, bread\nCall Ana at 5 — café\n" * 3
    (tmp_path / "notes.mp3").write_text(text, encoding="utf-8")
    for source, name in ((tmp_path / "notes.mp3", str(tmp_path / "notes.mp3")), (_Upload(text.encode()), "notes.mp3")):
        with pytest.raises(DeepLanguageError) as error:
            audio.load_audio(source)
        message = str(error.value)
        assert message.startswith(f"{name} is not audio: it looks like text"), message
        assert "UploadedFile" not in message and "does not exist" not in message
    assert "Audio-MPEG-Header" not in capfd.readouterr().err  # mpg123 never saw it


def test_an_undecodable_upload_is_named_by_its_name_not_its_repr():
    with pytest.raises(DeepLanguageError) as error:
        audio.load_audio(_Upload(bytes(range(256)) * 8))
    assert str(error.value).startswith("notes.mp3 could not be decoded as audio") and "UploadedFile" not in str(error.value)

def test_absurd_headers_and_lengths_are_refused(tmp_path):
    many = tmp_path / "many.wav"
    sf.write(many, np.zeros((1600, 40), dtype=np.float32), SR, subtype="FLOAT")
    with pytest.raises(DeepLanguageError, match="40 channels"):
        audio.load_audio(many)
    with pytest.raises(DeepLanguageError, match="sample rate of 100 Hz"):
        audio.load_audio(np.zeros(1000, np.float32), source_rate=100)
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(SR * 5, dtype=np.int16), SR)
    with pytest.raises(DeepLanguageError, match="5 s long; the limit is 2 s"):
        audio.load_audio(long, max_seconds=2)


def test_truncated_mp3_body_is_an_error_or_a_short_clip(clip_files, tmp_path):
    data = clip_files["mp3"].read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 3])
    try:
        clip = audio.load_audio(cut)
    except DeepLanguageError as error:
        assert "cut.mp3" in str(error)
    else:  # mp3 is a stream of frames: what survives decodes, and is shorter
        assert len(clip) < 0.6 * 2 * SR


def test_speech_detection():
    assert audio.has_speech(speechlike(2.0))
    assert not audio.has_speech(np.zeros(SR * 2, np.float32))
    noise = 0.05 * np.random.default_rng(0).standard_normal(SR * 2).astype(np.float32)
    assert not audio.has_speech(noise)  # loud but steady: not speech
    assert audio.speech_seconds(speechlike(2.0)) > 0.5


def test_lowpass_removes_energy_above_the_cutoff():
    t = np.arange(SR) / SR
    clip = (np.sin(2 * np.pi * 200 * t) + np.sin(2 * np.pi * 2000 * t)).astype(np.float32)
    filtered = audio.lowpass(clip, cutoff_hz=500)
    spectrum = np.abs(np.fft.rfft(filtered)) / np.abs(np.fft.rfft(clip)).max()
    assert spectrum[200] > 0.9  # 1 Hz bins: 200 Hz passes
    assert spectrum[2000] < 1e-3  # 2 kHz is over 60 dB down, even with filtfilt's edge transients
    with pytest.raises(DeepLanguageError, match="cutoff"):
        audio.lowpass(clip, cutoff_hz=9000)


def test_lowpass_gain_matches_the_filter():
    from scipy import signal

    freqs = np.linspace(0, 7900, 80)
    _, response = signal.sosfreqz(filters._lowpass_sos(500.0, SR), worN=freqs, fs=SR)
    np.testing.assert_allclose(audio.lowpass_gain(freqs), np.abs(response) ** 4, atol=1e-6)


def test_resampling_through_a_kept_stream_gives_soxr_resample_samples():
    """load_audio resamples through one soxr stream per thread and rate pair: exactly what soxr.resample gives,
    clip after clip, whatever the lengths, and from several threads at once."""
    import concurrent.futures

    import soxr

    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(n).astype(np.float32) for n in (1, 3, 479, 480, 4801, 48000, 70001)]
    for rate in (48000, 44100, 8000):
        for clip in clips:
            np.testing.assert_array_equal(decode.resample(clip, rate, SR), soxr.resample(clip, rate, SR, quality="HQ"))

    def run(clip):
        return [decode.resample(clip, 48000, SR) for _ in range(20)]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for clip, results in zip(clips, pool.map(run, clips)):
            expected = soxr.resample(clip, 48000, SR, quality="HQ")
            assert all(np.array_equal(result, expected) for result in results)
