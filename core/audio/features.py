"""The log-mel spectrogram, full band and low-pass, in the spirit of whisper's ``audio.py``.

One pure function, :func:`log_mel`, turns a path, an array or a tensor into
``(n_mels, n_frames)`` float32: window -> STFT -> power -> (low-pass gain) -> mel -> log10
-> clamp -> (per-utterance normalisation). The filterbank is built once per parameter set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
from threadpoolctl import ThreadpoolController
from scipy import sparse

from core.audio.filters import LOWPASS_HZ, prenatal_gain
from core.audio.decode import SAMPLE_RATE, AudioSource, load_audio
from core.configs import known_fields, setting, validate
from core.files import save_array
from core.paths import CACHE_DIR

FILTERS_DIR = CACHE_DIR / "mel_filters"

WIN_MS = 25.0  # analysis window: 400 samples at 16 kHz
HOP_MS = 10.0  # 160 samples at 16 kHz: 100 frames per second
N_MELS = 64
DYNAMIC_RANGE = 8.0  # log10 units kept below the loudest bin: 80 dB, as whisper
LOG_FLOOR = 1e-10  # power floor before the log
# Power below this is 100 dB under LOG_FLOOR, so flooring it changes no output. It matters for
# speed: near-silent frames of decoded mp3 give float32 denormals, and arithmetic on those crawls.
POWER_FLOOR = 1e-20
LOG10_E = np.float32(1 / np.log(10))  # log10(x) = ln(x) * LOG10_E
FEATURES_VERSION = 1  # bump when the computation changes, so caches are rebuilt
UTERO_VERSION = 2  # 2: the published second-order filter (was a 6 dB/octave slope)


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = setting(SAMPLE_RATE, low=1000)  # Hz
    win_ms: float = setting(WIN_MS, low=1, high=1000)  # window length, ms
    hop_ms: float = setting(HOP_MS, low=1, high=1000)  # hop between frames, ms
    n_mels: int = setting(N_MELS, low=1, high=256)
    fmin: float = setting(0.0, low=0)  # lowest mel band edge, Hz
    fmax: float | None = setting(None, above=0)  # highest mel band edge, Hz; None = half the sample rate
    lowpass_hz: float = setting(LOWPASS_HZ, above=0, high=8000)  # cutoff of the low-pass variant, Hz
    # The filter of the second ("low-pass") variant: "butterworth" (lowpass_hz) or "utero" (the
    # published in-utero filter, core.audio.filters.utero_gain). Each has its own cache folder.
    lowpass_filter: str = setting("butterworth", choices=("butterworth", "utero"))

    def __post_init__(self) -> None:
        validate(self)

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def n_fft(self) -> int:
        return 1 << (self.win_length - 1).bit_length()  # next power of two: 512 for 400

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def key(self) -> str:
        """A short stable hash of every parameter: names a cache that can never go stale."""
        fields = asdict(self)
        if fields["lowpass_filter"] == "butterworth":
            del fields["lowpass_filter"]  # so caches made before the field existed keep their key
        else:
            fields["utero_version"] = UTERO_VERSION  # the in-utero filter changed alone: only its caches go
        text = json.dumps({**fields, "version": FEATURES_VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, values: dict) -> "FeatureConfig":
        return cls(**known_fields(cls, values))


@lru_cache(maxsize=8)
def mel_filters(config: FeatureConfig) -> np.ndarray:
    """librosa's Slaney mel filterbank, ``(n_mels, n_fft // 2 + 1)``, built once per config.

    Kept on disk too (``data/cache/mel_filters``): importing librosa costs about a second,
    which every short command (prepare, identify) would otherwise pay.
    """
    stored = FILTERS_DIR / f"{config.key()}.npy"
    if stored.exists():
        try:
            filters = np.load(stored)
            if filters.shape == (config.n_mels, config.n_fft // 2 + 1) and np.isfinite(filters).all():
                return filters
        except (OSError, ValueError, EOFError):
            pass  # damaged (cut short, overwritten): a cache, so it is built again and replaced below
    import librosa

    filters = librosa.filters.mel(
        sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax
    ).astype(np.float32)
    try:
        save_array(stored, filters)
    except OSError:
        pass  # a read-only checkout still works, just slower to start
    return filters


@lru_cache(maxsize=8)
def _window(config: FeatureConfig) -> np.ndarray:
    """Periodic Hann of ``win_length`` centred in ``n_fft`` samples, as librosa pads it."""
    n = config.win_length
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)
    left = (config.n_fft - n) // 2
    return np.pad(window, (left, config.n_fft - n - left))


@lru_cache(maxsize=8)
def _mel_bases(config: FeatureConfig) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """The filterbank as sparse matrices: full band, and full band times the low-pass gain.

    Each mel band spans a few STFT bins, so a sparse product does 30x less work than a dense
    one, and it never calls BLAS, whose threads crawl on a busy 2-core machine. The low-pass
    basis keeps only bins attenuated by less than 120 dB: the rest can't lift a band above
    the 80 dB floor.
    """
    filters = mel_filters(config)
    freqs = np.fft.rfftfreq(config.n_fft, 1 / config.sample_rate)
    gain = prenatal_gain(freqs, config.lowpass_filter, config.lowpass_hz, config.sample_rate)
    n_kept = int(np.flatnonzero(gain > 1e-12).max()) + 1
    return sparse.csr_matrix(filters), sparse.csr_matrix(filters[:, :n_kept] * gain[:n_kept])


def _mel(power: np.ndarray, config: FeatureConfig, lowpass: bool) -> np.ndarray:
    full, low = _mel_bases(config)
    return np.asarray(low @ power[: low.shape[1]] if lowpass else full @ power)


def log_mel_from_power(power: np.ndarray, config: FeatureConfig, lowpass: bool = False) -> np.ndarray:
    """The log-mel of a power spectrogram ``(n_fft // 2 + 1, n_frames)``: ``(n_mels, n_frames)``."""
    return _log(_mel(power.astype(np.float32, copy=False), config, lowpass))


# A mel product is a few hundred frames x 257 x 64: too small for BLAS threads to pay off, and on a
# 2-core machine OpenBLAS's waiting threads keep spinning and take the cores from torch afterwards
# (measured: identify of a 10 s clip 40 ms with them, 14 ms without). So it runs on one BLAS thread.
_BLAS = ThreadpoolController()


def _project(power: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``power (n_frames, n_bins) @ basis (n_bins, n_mels)`` on one BLAS thread."""
    with _BLAS.limit(limits=1, user_api="blas"):
        return power @ basis


@lru_cache(maxsize=8)
def _frame_major_bases(config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_mel_bases` dense and transposed, for ``power (n_frames, n_bins) @ basis``:
    ``(n_bins, n_mels)`` and ``(n_kept, n_mels)``. On frame-major power one BLAS call per variant
    beats the sparse product on frequency-major power (prepare's hot path)."""
    full, low = _mel_bases(config)
    return np.ascontiguousarray(full.toarray().T), np.ascontiguousarray(low.toarray().T)


STFT_BLOCK = 128  # frames per FFT call: 256 KB of windowed float32 frames, so each block's work stays in cache


def _power_frames(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """|STFT|^2 with centred, zero-padded frames, frame-major: ``(n_frames, n_fft // 2 + 1)`` float32.

    Done ``STFT_BLOCK`` frames at a time: the windowed copy, its spectrum and the squares of a block stay in
    cache instead of streaming megabytes through memory three times (a 10 s clip: 1.7 vs 2.4 ms here).
    """
    pad = config.n_fft // 2
    padded = np.pad(audio.astype(np.float32, copy=False), (pad, pad))
    if len(padded) < config.n_fft:
        padded = np.pad(padded, (0, config.n_fft - len(padded)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft)[:: config.hop_length]
    window = _window(config)
    power = np.empty((len(frames), config.n_fft // 2 + 1), dtype=np.float32)
    for start in range(0, len(frames), STFT_BLOCK):
        # float32 in, complex64 out; the windowed copy is ours, so the FFT may overwrite it.
        spectrum = scipy.fft.rfft(frames[start: start + STFT_BLOCK] * window, axis=1, overwrite_x=True)
        parts = spectrum.view(np.float32)  # (block, 2 * n_bins): re, im, re, im...
        np.multiply(parts, parts, out=parts)
        np.add(parts[:, 0::2], parts[:, 1::2], out=power[start: start + STFT_BLOCK])
    return np.maximum(power, POWER_FLOOR, out=power)


def power_spectrogram(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """|STFT|^2 with centred, zero-padded frames: ``(n_fft // 2 + 1, n_frames)`` float32 (a transposed view)."""
    return _power_frames(audio, config).T


def log_mel_pair(audio: np.ndarray, config: FeatureConfig = FeatureConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Full-band and low-pass log-mels of one clip from a single STFT; each ``(n_mels, n_frames)``.

    The low-pass variant weights the power spectrum by the low-pass filter's gain, which is
    what filtering the waveform with :func:`core.audio.lowpass` does to it, at no extra STFT.
    Both are transposed views of frame-major arrays: callers that stack or convert them copy anyway.
    """
    power = _power_frames(audio, config)
    full, low = _frame_major_bases(config)
    return _log(_project(power, full)).T, _log(_project(power[:, : low.shape[0]], low)).T


def log_mel(
    source: AudioSource,
    config: FeatureConfig = FeatureConfig(),
    *,
    lowpass: bool = False,
    normalize: bool = False,
) -> np.ndarray:
    """Log-mel spectrogram of a clip: ``(n_mels, n_frames)`` float32, log10 power clamped to 80 dB.

    ``source`` is anything :func:`core.audio.load_audio` reads (a path, bytes, an array at
    ``config.sample_rate``) or a 1-D torch tensor. ``lowpass`` keeps only what lies below
    ``config.lowpass_hz``; ``normalize`` gives each mel band zero mean and unit variance.
    """
    if hasattr(source, "detach"):  # a torch tensor, without importing torch here
        source = source.detach().cpu().numpy()
    audio = load_audio(source, config.sample_rate)
    power = _power_frames(audio, config)
    full, low = _frame_major_bases(config)
    mel = _project(power[:, : low.shape[0]], low) if lowpass else _project(power, full)
    features = np.ascontiguousarray(_log(mel).T)
    return normalize_utterance(features) if normalize else features


def _log(mel: np.ndarray) -> np.ndarray:
    """log10 of mel power, clamped to ``DYNAMIC_RANGE`` under its loudest bin; in place, float32."""
    np.maximum(mel, LOG_FLOOR, out=mel)
    np.log(mel, out=mel)  # then scaled: numpy's float32 log10 is not vectorised, 3x slower than log here
    mel *= LOG10_E
    return np.maximum(mel, mel.max() - DYNAMIC_RANGE, out=mel)


def normalize_utterance(features: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Per-utterance, per-band mean and variance normalisation of ``(..., n_mels, n_frames)``.

    It removes the recording channel (microphone, gain) so models hear the language, not the device.
    """
    mean = features.mean(axis=-1, keepdims=True)
    std = features.std(axis=-1, keepdims=True)
    return ((features - mean) / np.maximum(std, eps)).astype(np.float32)


def filtered_spectra(audio: np.ndarray, config: FeatureConfig = FeatureConfig()) -> dict[str, np.ndarray]:
    """A clip's long-term average power spectrum in dB, as heard full band, through the Butterworth
    (``config.lowpass_hz``) and through the in-utero filter: ``{"freqs_hz", "full band",
    "butterworth", "in utero"}``, each ``(n_fft // 2 + 1,)``; dB relative to the full band's peak."""
    power = _power_frames(audio, config).mean(axis=0)
    freqs = np.fft.rfftfreq(config.n_fft, 1 / config.sample_rate)
    spectra = {"full band": power,
               "butterworth": power * prenatal_gain(freqs, "butterworth", config.lowpass_hz, config.sample_rate),
               "in utero": power * prenatal_gain(freqs, "utero")}
    peak = power.max()
    return {"freqs_hz": freqs, **{name: 10 * np.log10(np.maximum(s / peak, 1e-12)) for name, s in spectra.items()}}
