"""Audio in: decode any clip to 16 kHz mono float32, find speech, low-pass filter.

wav, flac, mp3 and ogg (vorbis, opus) are decoded by soundfile (libsndfile, bundled with the
wheel); m4a, webm and other containers go through the ffmpeg binary when it is installed.
Every problem a user's file can have raises :class:`DeepLanguageError` with a message that
names the file and says what to do.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf
import soxr

from core.errors import DeepLanguageError

SAMPLE_RATE = 16000  # Hz, what every model and feature in the project expects
MAX_SECONDS = 600.0  # longest clip accepted by default: ten minutes
MAX_CHANNELS = 16  # more than this is not a recording of speech
MIN_SOURCE_RATE, MAX_SOURCE_RATE = 2000, 768000  # Hz, outside this the header is broken
LOWPASS_HZ = 500.0  # the pretraining study's cutoff: prosody and voicing, few phonemes
LOWPASS_ORDER = 8  # Butterworth order; applied forward and backward, so 96 dB/octave

SOUNDFILE_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aiff", ".aif"}
FFMPEG_SUFFIXES = {".m4a", ".mp4", ".webm", ".aac", ".wma", ".amr", ".3gp", ".mkv", ".mov", ".weba"}

# Speech detection on 25 ms frames every 10 ms.
VAD_FRAME, VAD_HOP = 400, 160  # samples at 16 kHz
VAD_FLOOR_DB = -55.0  # dBFS below which a frame is silence whatever the clip
VAD_ABOVE_NOISE_DB = 12.0  # speech stands this far above the clip's own noise floor
MIN_SPEECH_SECONDS = 0.25  # less voiced time than this is "no speech"

AudioSource = Union[str, os.PathLike, bytes, BinaryIO, np.ndarray]


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def load_audio(
    source: AudioSource,
    sample_rate: int = SAMPLE_RATE,
    *,
    source_rate: int | None = None,
    max_seconds: float = MAX_SECONDS,
    name: str | None = None,
) -> np.ndarray:
    """Decode ``source`` to mono float32 at ``sample_rate``; shape ``(n_samples,)``.

    ``source`` is a path, the bytes of a file (an upload), a binary file object, or an array
    of samples (then ``source_rate`` says its rate, default ``sample_rate``; shape
    ``(n_samples,)`` or ``(n_samples, n_channels)``). ``name`` is what messages call it.
    """
    if isinstance(source, np.ndarray):
        name = name or "the audio array"
        data = source.astype(np.float32, copy=False)
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2:
            raise DeepLanguageError(f"{name} has shape {source.shape}; expected (samples,) or (samples, channels).")
        rate = int(source_rate or sample_rate)
    else:
        data, rate, name = _decode(source, max_seconds, name)
    return _to_mono_rate(data, rate, sample_rate, max_seconds, name)


def _decode(source, max_seconds: float, name: str | None) -> tuple[np.ndarray, int, str]:
    """Decode a path, bytes or file object to ``(samples, channels)`` float32 and its rate."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = name or str(path)
        if not path.exists():
            raise DeepLanguageError(f"{name}: no such file. Check the path.")
        if path.is_dir():
            raise DeepLanguageError(f"{name} is a folder, not an audio file.")
        if path.stat().st_size == 0:
            raise DeepLanguageError(f"{name} is empty (0 bytes). Re-export or re-download it.")
        suffix = path.suffix.lower()
        if suffix in FFMPEG_SUFFIXES:
            return _decode_ffmpeg(path, name, suffix) + (name,)
        try:
            return _decode_soundfile(path, max_seconds, name) + (name,)
        except _Undecodable as failure:
            if ffmpeg_available() and suffix not in SOUNDFILE_SUFFIXES:
                return _decode_ffmpeg(path, name, suffix) + (name,)
            raise DeepLanguageError(_undecodable_message(name, suffix, str(failure))) from None

    # Bytes or a file object: an upload. soundfile reads it from memory; ffmpeg needs a file.
    payload = source if isinstance(source, bytes) else source.read()
    name = name or getattr(source, "name", None) or "the uploaded audio"
    if len(payload) == 0:
        raise DeepLanguageError(f"{name} is empty (0 bytes). Upload or record it again.")
    suffix = Path(name).suffix.lower()
    if suffix not in FFMPEG_SUFFIXES:
        try:
            return _decode_soundfile(io.BytesIO(payload), max_seconds, name) + (name,)
        except _Undecodable as failure:
            if not ffmpeg_available() or suffix in SOUNDFILE_SUFFIXES:
                raise DeepLanguageError(_undecodable_message(name, suffix, str(failure))) from None
    with tempfile.NamedTemporaryFile(suffix=suffix or ".bin") as tmp:
        tmp.write(payload)
        tmp.flush()
        return _decode_ffmpeg(Path(tmp.name), name, suffix) + (name,)


class _Undecodable(Exception):
    """soundfile could not read the file; maybe ffmpeg can."""


def _decode_soundfile(file, max_seconds: float, name: str) -> tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(file) as handle:
            _check_header(handle.channels, handle.samplerate, name)
            declared = handle.frames
            if declared > 0 and declared / handle.samplerate > max_seconds * 1.05 + 1:
                _raise_too_long(name, declared / handle.samplerate, max_seconds)
            data = handle.read(dtype="float32", always_2d=True)
            rate = handle.samplerate
    except sf.LibsndfileError as error:
        raise _Undecodable(str(error)) from None
    except (RuntimeError, TypeError, ValueError) as error:
        # mp3 and ogg streams that end mid-frame surface as decoder errors here.
        raise _Undecodable(str(error)) from None
    if 0 < len(data) < declared * 0.9:
        raise DeepLanguageError(
            f"{name} is truncated: its header promises {declared / rate:.2f} s but only "
            f"{len(data) / rate:.2f} s could be read. Re-export or re-download it."
        )
    return data, rate


def _decode_ffmpeg(path: Path, name: str, suffix: str) -> tuple[np.ndarray, int]:
    if not ffmpeg_available():
        kind = suffix.lstrip(".") or "this"
        raise DeepLanguageError(
            f"{name}: {kind} files need ffmpeg, which is not installed. Install it "
            f"(`apt-get install ffmpeg` or `brew install ffmpeg`) or convert the clip to wav, flac, mp3 or ogg."
        )
    # ffmpeg downmixes and resamples itself; asking for our rate avoids a second resampling.
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1",
               "-ar", str(SAMPLE_RATE), "-"]
    result = subprocess.run(command, capture_output=True, timeout=300)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown"]
        raise DeepLanguageError(_undecodable_message(name, suffix, reason[0]))
    data = np.frombuffer(result.stdout, dtype=np.float32).copy()
    return data[:, None], SAMPLE_RATE


def _undecodable_message(name: str, suffix: str, reason: str) -> str:
    hint = "Check that it is an audio file (wav, flac, mp3, ogg/opus"
    hint += ", m4a, webm)" if ffmpeg_available() else "; m4a and webm need ffmpeg installed)"
    return f"{name} could not be decoded as audio ({reason.strip() or 'unknown format'}). {hint} and not truncated."


def _check_header(n_channels: int, rate: int, name: str) -> None:
    if not 1 <= n_channels <= MAX_CHANNELS:
        raise DeepLanguageError(
            f"{name} has {n_channels} channels; at most {MAX_CHANNELS} are accepted. Mix it down to mono or stereo."
        )
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise DeepLanguageError(
            f"{name} declares a sample rate of {rate} Hz, outside {MIN_SOURCE_RATE}-{MAX_SOURCE_RATE} Hz; "
            f"its header is probably broken. Re-export it."
        )


def _raise_too_long(name: str, seconds: float, max_seconds: float) -> None:
    raise DeepLanguageError(
        f"{name} is {seconds:.0f} s long; the limit is {max_seconds:.0f} s. Trim it, or raise the limit "
        f"(max_seconds / --max-seconds)."
    )


def _to_mono_rate(data: np.ndarray, rate: int, target: int, max_seconds: float, name: str) -> np.ndarray:
    _check_header(data.shape[1], rate, name)
    if data.shape[0] == 0:
        raise DeepLanguageError(f"{name} has zero length: it holds no samples. Record or export it again.")
    if data.shape[0] / rate > max_seconds:
        _raise_too_long(name, data.shape[0] / rate, max_seconds)
    if not np.isfinite(data).all():
        raise DeepLanguageError(f"{name} contains NaN or infinite samples. Re-export it from the source.")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != target:
        mono = soxr.resample(mono, rate, target, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def frame_energy_db(audio: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of 25 ms frames every 10 ms; shape ``(n_frames,)``. Expects 16 kHz."""
    if len(audio) < VAD_FRAME:
        audio = np.pad(audio, (0, VAD_FRAME - len(audio)))
    # Frames are whole numbers of 80-sample blocks (5 per frame, 2 per hop): sum squares per
    # block once, then add neighbouring blocks. O(n), and float32 sums of 80 samples are exact enough.
    block = math.gcd(VAD_FRAME, VAD_HOP)
    n_blocks = len(audio) // block
    blocks = np.square(audio[: n_blocks * block], dtype=np.float32).reshape(n_blocks, block).sum(axis=1)
    per_frame, per_hop = VAD_FRAME // block, VAD_HOP // block
    sums = np.convolve(blocks, np.ones(per_frame, dtype=np.float32), mode="valid")[::per_hop]
    return (10 * np.log10(np.maximum(sums / VAD_FRAME, 1e-12))).astype(np.float32)


def speech_mask(audio: np.ndarray) -> np.ndarray:
    """True for each 10 ms frame that holds speech; shape ``(n_frames,)``.

    A frame is speech when it is above an absolute floor and clearly above the clip's own
    noise floor (its quietest decile), so steady noise, hum or silence count as no speech.
    """
    level = frame_energy_db(audio)
    noise_floor = np.percentile(level, 10)
    return (level > VAD_FLOOR_DB) & (level > noise_floor + VAD_ABOVE_NOISE_DB)


def speech_seconds(audio: np.ndarray) -> float:
    """How many seconds of a 16 kHz clip are speech."""
    return float(speech_mask(audio).sum() * VAD_HOP / SAMPLE_RATE)


def has_speech(audio: np.ndarray, min_seconds: float = MIN_SPEECH_SECONDS) -> bool:
    return speech_seconds(audio) >= min_seconds


def _check_cutoff(cutoff_hz: float, sample_rate: int) -> None:
    if not 0 < cutoff_hz < sample_rate / 2:
        raise DeepLanguageError(
            f"low-pass cutoff {cutoff_hz} Hz must lie between 0 and {sample_rate / 2:.0f} Hz (half the sample rate)."
        )


@lru_cache(maxsize=16)
def _lowpass_sos(cutoff_hz: float, sample_rate: int) -> np.ndarray:
    from scipy import signal  # deferred: 0.6 s to import, and only filtering waveforms needs it

    _check_cutoff(cutoff_hz, sample_rate)
    return signal.butter(LOWPASS_ORDER, cutoff_hz, btype="low", fs=sample_rate, output="sos")


def lowpass(audio: np.ndarray, cutoff_hz: float = LOWPASS_HZ, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Zero-phase Butterworth low-pass of a clip; same shape, float32."""
    from scipy import signal

    return signal.sosfiltfilt(_lowpass_sos(float(cutoff_hz), sample_rate), audio).astype(np.float32)


def lowpass_gain(freqs_hz: np.ndarray, cutoff_hz: float = LOWPASS_HZ, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Power gain of :func:`lowpass` at each frequency (Hz), in closed form.

    A digital Butterworth made by the bilinear transform has
    |H(f)|^2 = 1 / (1 + (tan(pi f / fs) / tan(pi fc / fs))^(2 order)); filtering forward and
    backward squares it again.
    """
    _check_cutoff(cutoff_hz, sample_rate)
    ratio = np.tan(np.pi * np.minimum(freqs_hz, sample_rate / 2 - 1e-6) / sample_rate)
    ratio = ratio / np.tan(np.pi * cutoff_hz / sample_rate)
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + ratio ** (2 * LOWPASS_ORDER)) ** 2).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM atomically (temporary name, then rename)."""
    from core.files import atomic_path

    with atomic_path(path) as tmp:
        sf.write(tmp, audio, sample_rate, subtype="PCM_16", format="WAV")


def to_wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A clip as wav bytes, for players (st.audio) and downloads."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()
