"""Decode any clip to 16 kHz mono float32, and write wav.

wav, flac, mp3 and ogg (vorbis, opus) are decoded by soundfile (libsndfile, bundled with the
wheel); m4a, webm and other containers go through the ffmpeg binary when it is installed.
Every problem a user's file can have raises :class:`DeepLanguageError` with a message that
names the file and says what to do.

A file costs at most what its duration allows: soundfile files are read, mixed down and resampled
block by block, so memory is the 16 kHz mono output plus one block; ffmpeg is stopped at the length
limit (``-t``, after probing the declared duration) and at most that many bytes are read from it.
A header declaring more than ``max_seconds``, or more samples a second than 8 channels at 48 kHz, is
refused before decoding.
"""


import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf
import soxr

from core.errors import DeepLanguageError
from core.files import atomic_path


SAMPLE_RATE = 16000  # Hz, what every model and feature in the project expects
MAX_SECONDS = 600.0  # longest clip accepted by default: ten minutes
MAX_CHANNELS = 16  # more than this is not a recording of speech
MIN_SOURCE_RATE, MAX_SOURCE_RATE = 2000, 768000  # Hz, outside this the header is broken
TEXT_SNIFF_BYTES = 4096  # read from a file's start to tell text from audio
AUDIO_MAGIC = (b"RIFF", b"RIFX", b"fLaC", b"OggS", b"ID3", b"FORM", b"\x1aE\xdf\xa3")  # wav, flac, ogg, mp3 tag, aiff, webm
READ_BLOCK_FRAMES = 1 << 18  # frames per block read, mixed down and resampled (~5 s at 48 kHz)
# Decoding costs per source sample, so channels x rate is capped too: a second of clip costs at most
# 8 channels at 48 kHz (or stereo at 192 kHz), and a 600 s clip at most 230 million samples (about 3 s here).
MAX_SOURCE_SAMPLES_PER_SECOND = 8 * 48000
FFMPEG_TIMEOUT_S = 120  # a decode stopped at the length limit takes a few seconds; this only catches a hang

SOUNDFILE_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aiff", ".aif"}
FFMPEG_SUFFIXES = {".m4a", ".mp4", ".webm", ".aac", ".wma", ".amr", ".3gp", ".mkv", ".mov", ".weba"}

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
        data, rate, name = _decode(source, sample_rate, max_seconds, name)
    return _to_mono_rate(data, rate, sample_rate, max_seconds, name)


def _decode(source, target: int, max_seconds: float, name: str | None) -> tuple[np.ndarray, int, str]:
    """Decode a path, bytes or file object to ``(samples, 1)`` float32 at ``target`` Hz, and that rate."""
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
        with open(path, "rb") as handle:
            _refuse_text(handle.read(TEXT_SNIFF_BYTES), name)
        if suffix in FFMPEG_SUFFIXES:
            return _decode_ffmpeg(path, name, suffix, target, max_seconds) + (name,)
        try:
            return _decode_soundfile(path, target, max_seconds, name) + (name,)
        except _Undecodable as failure:
            if ffmpeg_available() and suffix not in SOUNDFILE_SUFFIXES:
                return _decode_ffmpeg(path, name, suffix, target, max_seconds) + (name,)
            raise DeepLanguageError(_undecodable_message(name, suffix, str(failure))) from None

    # Bytes or a file object: an upload. soundfile reads it where it lies (BytesIO over bytes shares
    # them, an upload's file object is read in place): no copy of a file that may be tens of MB.
    name = name or getattr(source, "name", None) or "the uploaded audio"
    file = io.BytesIO(source) if isinstance(source, bytes) else _seekable(source)
    if file.seek(0, io.SEEK_END) == 0:
        raise DeepLanguageError(f"{name} is empty (0 bytes). Upload or record it again.")
    file.seek(0)
    _refuse_text(file.read(TEXT_SNIFF_BYTES), name)
    suffix = Path(name).suffix.lower()
    if suffix not in FFMPEG_SUFFIXES:
        try:
            file.seek(0)
            return _decode_soundfile(file, target, max_seconds, name) + (name,)
        except _Undecodable as failure:
            if not ffmpeg_available() or suffix in SOUNDFILE_SUFFIXES:
                raise DeepLanguageError(_undecodable_message(name, suffix, str(failure))) from None
    with tempfile.NamedTemporaryFile(suffix=suffix or ".bin") as tmp:
        file.seek(0)
        shutil.copyfileobj(file, tmp)
        tmp.flush()
        return _decode_ffmpeg(Path(tmp.name), name, suffix, target, max_seconds) + (name,)


def _seekable(file: BinaryIO) -> BinaryIO:
    """The file object itself when it can seek (uploads can), else its bytes read into memory (a pipe)."""
    try:
        if file.seekable():
            return file
    except (AttributeError, OSError, ValueError):
        pass
    return io.BytesIO(file.read())


class _Undecodable(Exception):
    """soundfile could not read the file; maybe ffmpeg can."""


def _decode_soundfile(file, target: int, max_seconds: float, name: str) -> tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(file) as handle:
            rate = handle.samplerate
            # libsndfile says "unknown length" (a FLAC header's 0, a stream) as a count near 2**63.
            declared = handle.frames if 0 < handle.frames < 1 << 60 else 0
            seconds = declared / rate if declared else None
            _check_header(handle.channels, rate, name, seconds)
            if seconds:
                _check_length(name, seconds, max_seconds)
            data, n_read = _read_resampled(handle, target, max_seconds, name)
    except sf.LibsndfileError as error:
        # Its own words only: str(error) names the file by the object's repr (an upload's internals), and
        # it says "does not exist" of a file that exists but that its mp3 decoder refused.
        reason = error.error_string
        raise _Undecodable("format not recognised" if "does not exist" in reason else reason) from None
    except (RuntimeError, TypeError, ValueError) as error:
        # mp3 and ogg streams that end mid-frame surface as decoder errors here.
        raise _Undecodable(str(error)) from None
    if 0 < n_read < declared * 0.9:
        raise DeepLanguageError(
            f"{name} is truncated: its header promises {declared / rate:.2f} s but only "
            f"{n_read / rate:.2f} s could be read. Re-export or re-download it."
        )
    return data[:, None], target


def _read_resampled(handle: sf.SoundFile, target: int, max_seconds: float, name: str) -> tuple[np.ndarray, int]:
    """An open file mixed to mono and resampled to ``target`` block by block: ``(n_samples,)`` float32
    and the number of source frames read.

    The peak is the output plus one block, whatever the file's rate and channels; a file longer than
    its header said (or with no length in it) is stopped as soon as it passes ``max_seconds``.
    """
    rate, n_channels = handle.samplerate, handle.channels
    stream = _stream(rate, target) if rate != target else None
    parts, n_read = [], 0
    # SoundFile.blocks trusts the header's length and pads a short read; reading until empty does not.
    while len(block := handle.read(READ_BLOCK_FRAMES, dtype="float32", always_2d=True)):
        n_read += len(block)
        if n_read > (max_seconds * 1.05 + 1) * rate:  # the header's tolerance; the exact check follows
            raise ClipTooLongError(name, n_read / rate, max_seconds, at_least=True)
        mono = block.mean(axis=1, dtype=np.float32) if n_channels > 1 else np.ascontiguousarray(block[:, 0])
        parts.append(stream.resample_chunk(mono, last=False) if stream else mono)
    if stream:
        parts.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), n_read


def _check_length(name: str, seconds: float, max_seconds: float) -> None:
    """Refuse, before decoding, a clip whose header declares more than the limit."""
    if seconds > max_seconds * 1.05 + 1:  # headers round; a clip at the limit is still decoded and checked
        _raise_too_long(name, seconds, max_seconds)


def _decode_ffmpeg(path: Path, name: str, suffix: str, target: int, max_seconds: float) -> tuple[np.ndarray, int]:
    """ffmpeg's mono ``target`` Hz output, ``(n_samples, 1)``; it is stopped at the length limit, so a
    file declaring nothing (a browser recording) or lying about its length costs at most that much."""
    if not ffmpeg_available():
        kind = suffix.lstrip(".") or "this"
        raise DeepLanguageError(
            f"{name}: {kind} files need ffmpeg, which is not installed. Install it "
            f"(`apt-get install ffmpeg` or `brew install ffmpeg`) or convert the clip to wav, flac, mp3 or ogg."
        )
    seconds, n_channels, rate = _probe(path)
    _check_header(n_channels or 1, rate or target, name, seconds)
    if seconds:
        _check_length(name, seconds, max_seconds)
    # ffmpeg downmixes and resamples itself; asking for our rate avoids a second resampling. "file:" keeps a
    # name starting with "-" a file, and the whitelist keeps a playlist posing as audio from opening anything else.
    limit_s = max_seconds + 1
    command = ["ffmpeg", "-nostdin", "-v", "error", "-protocol_whitelist", "file", "-i", f"file:{path}",
               "-t", f"{limit_s:.3f}", "-f", "f32le", "-ac", "1", "-ar", str(target), "-"]
    data, returncode, errors = _run_capped(command, 4 * int(np.ceil(limit_s * target)))
    if returncode != 0 and len(data) < max_seconds * target:
        if returncode in (-9, 137):
            errors = f"ffmpeg took over {FFMPEG_TIMEOUT_S} s"
        reason = errors.strip().splitlines()[-1:] or ["unknown"]
        raise DeepLanguageError(_undecodable_message(name, suffix, reason[0]))
    if len(data) >= int(limit_s * target) - target // 100:  # ffmpeg was cut at the limit (to within 10 ms)
        raise ClipTooLongError(name, len(data) / target, max_seconds, at_least=True)
    return data[:, None], target


def _probe(path: Path) -> tuple[float | None, int | None, int | None]:
    """The duration (s), channels and rate ffprobe reads from the header; None where it can't tell
    (no ffprobe, a browser recording that declares no length, a file it can't read: ffmpeg then says why)."""
    if shutil.which("ffprobe") is None:
        return None, None, None
    command = ["ffprobe", "-v", "error", "-protocol_whitelist", "file", "-select_streams", "a:0",
               "-show_entries", "format=duration:stream=channels,sample_rate", "-of", "json", f"file:{path}"]
    try:
        result = subprocess.run(command, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        info = json.loads(result.stdout or b"{}")
    except (subprocess.TimeoutExpired, ValueError):
        return None, None, None
    stream = (info.get("streams") or [{}])[0]

    def number(value, kind):
        try:
            return kind(float(value))
        except (TypeError, ValueError):
            return None

    return (number(info.get("format", {}).get("duration"), float), number(stream.get("channels"), int),
            number(stream.get("sample_rate"), int))


def _run_capped(command: list[str], max_bytes: int) -> tuple[np.ndarray, int, str]:
    """Run ``command``, reading at most ``max_bytes`` of its float32 output: the samples, exit code, stderr.

    stderr goes to a temporary file, so a chatty decoder can't block on a full pipe while we read stdout.
    """
    buffer = bytearray(max_bytes)  # zero pages: only what ffmpeg writes is ever touched
    view, n_read = memoryview(buffer), 0
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        timer = threading.Timer(FFMPEG_TIMEOUT_S, process.kill)
        timer.start()
        try:
            while n_read < max_bytes:
                got = process.stdout.readinto(view[n_read:])
                if not got:
                    break
                n_read += got
        finally:
            timer.cancel()
            if process.poll() is None and n_read >= max_bytes:
                process.kill()
            process.stdout.close()
            returncode = process.wait()
        errors.seek(0)
        message = errors.read(1 << 16).decode(errors="replace")
    view.release()
    # No copy: the array keeps the buffer, whose pages past what ffmpeg wrote were never touched.
    return np.frombuffer(buffer, dtype=np.float32, count=n_read // 4), returncode, message


def _refuse_text(head: bytes, name: str) -> None:
    """A text file renamed .mp3 (or .wav): said in those words, before any decoder prints its complaints."""
    # Audio headers hold zero bytes, text never does; one that opens with an audio container's magic is
    # a broken audio file, said as such by the decoder.
    if not head or b"\0" in head or head.startswith(AUDIO_MAGIC):
        return
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # not just a character cut at the end of the sample
            return
        text = head[:error.start].decode("utf-8")
    if sum(c.isprintable() or c.isspace() for c in text) >= 0.95 * len(text):
        raise DeepLanguageError(f"{name} is not audio: it looks like text (it starts {text[:40]!r}). "
                                "Choose an audio file instead.")


def _undecodable_message(name: str, suffix: str, reason: str) -> str:
    hint = "Check that it is an audio file (wav, flac, mp3, ogg/opus"
    hint += ", m4a, webm)" if ffmpeg_available() else "; m4a and webm need ffmpeg installed)"
    return f"{name} could not be decoded as audio ({reason.strip() or 'unknown format'}). {hint} and not truncated."


def _check_header(n_channels: int, rate: int, name: str, seconds: float | None = None) -> None:
    if not 1 <= n_channels <= MAX_CHANNELS:
        raise DeepLanguageError(
            f"{name} has {n_channels} channels; at most {MAX_CHANNELS} are accepted. Mix it down to mono or stereo."
        )
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise DeepLanguageError(
            f"{name} declares a sample rate of {rate} Hz, outside {MIN_SOURCE_RATE}-{MAX_SOURCE_RATE} Hz; "
            f"its header is probably broken. Re-export it."
        )
    if n_channels * rate > MAX_SOURCE_SAMPLES_PER_SECOND:
        length = f"{seconds:.0f} s of " if seconds else ""
        raise DeepLanguageError(
            f"{name} is {length}{n_channels} channel(s) at {rate} Hz: {n_channels * rate / 1e6:.2f} million samples "
            f"per second to decode, more than the {MAX_SOURCE_SAMPLES_PER_SECOND / 1e6:.2f} million accepted "
            f"(8 channels at 48 kHz, or stereo at 192 kHz). Mix it down to mono at 48 kHz or less."
        )


class ClipTooLongError(DeepLanguageError):
    """A clip over ``max_seconds``; callers that let the user raise the limit add how (e.g. prepare's
    ``--max-seconds``), so this message names no option that the caller may not have.

    ``at_least``: decoding was stopped at the limit, so ``seconds`` is a lower bound of its length."""

    def __init__(self, name: str, seconds: float, max_seconds: float, at_least: bool = False):
        length = f"over {seconds:.0f} s long (decoding stopped there)" if at_least else f"{seconds:.0f} s long"
        super().__init__(f"{name} is {length}; the limit is {max_seconds:.0f} s. "
                         f"Trim it or split it into shorter clips.")
        self.name, self.seconds, self.max_seconds, self.at_least = name, seconds, max_seconds, at_least

    def __reduce__(self):  # so it pickles across worker processes with its fields
        return type(self), (self.name, self.seconds, self.max_seconds, self.at_least)


def _raise_too_long(name: str, seconds: float, max_seconds: float) -> None:
    raise ClipTooLongError(name, seconds, max_seconds)


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
        mono = resample(mono, rate, target)
    return np.ascontiguousarray(mono, dtype=np.float32)


_STREAMS = threading.local()  # soxr streams are stateful: one per thread (and per process, after a fork)


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``soxr.resample(audio, rate, target, quality="HQ")`` for mono float32 ``(n_samples,)``: the same samples.

    It goes through a soxr stream kept per thread, process and rate pair, cleared for each clip: building the
    HQ filter is about a quarter of resampling a 5 s clip from 48 kHz (1.05 vs 1.37 ms here), and `prepare`
    resamples thousands of them.
    """
    return _stream(rate, target).resample_chunk(np.ascontiguousarray(audio, dtype=np.float32), last=True)


def _stream(rate: int, target: int) -> soxr.ResampleStream:
    """This thread's (and process's) mono float32 HQ stream from ``rate`` to ``target`` Hz, cleared."""
    streams = _STREAMS.__dict__
    if streams.get("pid") != os.getpid():
        streams.clear()
        streams["pid"] = os.getpid()
    stream = streams.get((rate, target))
    if stream is None:
        stream = streams[(rate, target)] = soxr.ResampleStream(rate, target, 1, dtype="float32", quality="HQ")
    stream.clear()
    return stream



def write_wav(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM atomically (temporary name, then rename)."""

    with atomic_path(path) as tmp:
        sf.write(tmp, audio, sample_rate, subtype="PCM_16", format="WAV")


def to_wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A clip as wav bytes, for players (st.audio) and downloads."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()
