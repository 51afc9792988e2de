"""Rhythm and prosody of a clip, from its log-mel alone: a fixed-length vector beside the GMM supervector.

The GMM front end (MFCC + SDC, :mod:`core.identify.supervector`) sees 10 ms spectra and their changes over
about 0.2 s; languages also differ in slower things: syllable rate and its regularity (stress- vs
syllable-timed), how energy and voicing rise and fall, intonation. A model that answers from the log-mel
(as the shipped one does) can only get them from the log-mel, so every feature here is computed from the
per-band mean-normalised log-mel ``(n_mels, n_frames)`` the model sees (10 ms hop), never from audio:

* modulation spectrum of the energy envelope in log-spaced bands from 0.5 to 16 Hz (rhythm, syllable rate),
  and of a voicing contour (low-band minus high-band energy: vowels vs fricatives and pauses);
* syllable-nucleus proxy: peaks of the smoothed envelope, their rate, and the regularity of the intervals
  between them (coefficient of variation, normalised pairwise variability index nPVI);
* spectral-tilt contour (slope of each frame's spectrum over the bands): level, spread, speed of change;
* a pitch proxy: the power-weighted centroid of the lowest bands (about 50-400 Hz, where F0 and its first
  harmonics lie; a mel band there is about 45 Hz wide, so this tracks intonation coarsely, not Hz);
* the envelope's spread, skew and kurtosis over speech frames.

Each is a summary over the clip, so the vector has :data:`N_FEATURES` entries whatever the clip's length.
"""

from __future__ import annotations

import numpy as np

MODULATION_EDGES_HZ = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0)  # 11 bands
SPEECH_FRACTION = 0.7  # loudest fraction of frames counted as speech, as the GMM front end does
LOW_BANDS = slice(1, 9)  # mel bands of the pitch proxy: about 50-400 Hz with 64 Slaney bands to 8 kHz
VOICED_BANDS = slice(0, 16)  # about 0-750 Hz: voiced energy ...
FRICATIVE_BANDS = slice(40, None)  # ... against about 3-8 kHz
SMOOTH_FRAMES = 5  # envelope smoothing before peak picking, frames (50 ms)
MIN_PEAK_DISTANCE_S = 0.08  # syllable nuclei are at least this far apart
PEAK_PROMINENCE = 0.15  # log10 units (1.5 dB) above the surrounding dips
N_MODULATION = len(MODULATION_EDGES_HZ) - 1
N_FEATURES = 2 * N_MODULATION + 5 + 5 + 5 + 3


def _modulation(contour: np.ndarray, fps: float) -> np.ndarray:
    """Log share of a contour's modulation power ``(N_MODULATION,)`` in each band of MODULATION_EDGES_HZ."""
    n = max(len(contour), int(2 * fps))  # zero-padded to at least 2 s so the 0.5-1 Hz band has bins
    x = (contour - contour.mean()) * np.hanning(len(contour))
    power = np.abs(np.fft.rfft(x, n)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / fps)
    bands = np.array([power[(freqs >= lo) & (freqs < hi)].mean() if ((freqs >= lo) & (freqs < hi)).any() else 0.0
                      for lo, hi in zip(MODULATION_EDGES_HZ[:-1], MODULATION_EDGES_HZ[1:])])
    return np.log(bands / (bands.sum() + 1e-12) + 1e-6)


def _summary(values: np.ndarray, fps: float) -> np.ndarray:
    """Median, spread (10-90 % range), std, and mean absolute change per second of a contour ``(n,)``: 4 numbers."""
    if len(values) < 2:
        return np.zeros(4)
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return np.array([p50, p90 - p10, values.std(), np.abs(np.diff(values)).mean() * fps / 100])


def _rhythm(envelope: np.ndarray, fps: float) -> np.ndarray:
    """Nucleus rate (per s), interval mean (s), interval CV, nPVI (/100), peak-height std: 5 numbers."""
    from scipy.signal import find_peaks

    smooth = np.convolve(envelope, np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES, mode="same")
    peaks, props = find_peaks(smooth, prominence=PEAK_PROMINENCE, distance=max(1, int(MIN_PEAK_DISTANCE_S * fps)))
    seconds = len(envelope) / fps
    if len(peaks) < 3:
        return np.array([len(peaks) / seconds, seconds, 0.0, 0.0, 0.0])
    intervals = np.diff(peaks) / fps
    npvi = np.mean(np.abs(np.diff(intervals)) / ((intervals[1:] + intervals[:-1]) / 2))
    return np.array([len(peaks) / seconds, intervals.mean(), intervals.std() / intervals.mean(), npvi,
                     smooth[peaks].std()])


def prosody_vector(log_mel: np.ndarray, frames_per_second: float = 100.0) -> np.ndarray:
    """Rhythm and prosody features ``(N_FEATURES,)`` of one clip's log-mel ``(n_mels, n_frames)`` (log10 power).

    The log-mel may be raw or per-band mean-normalised: each band's mean over time is removed first, as the
    model's input normalisation does, so both give the same vector.
    """
    x = np.asarray(log_mel, dtype=np.float64)
    x = x - x.mean(1, keepdims=True)
    fps = frames_per_second
    envelope = x.mean(0)
    speech = envelope >= np.quantile(envelope, 1 - SPEECH_FRACTION)
    voicing = x[VOICED_BANDS].mean(0) - x[FRICATIVE_BANDS].mean(0)
    bands = np.arange(len(x), dtype=np.float64)
    centred = bands - bands.mean()
    tilt = centred @ x / (centred @ centred)  # least-squares slope of each frame over the band index
    low = 10.0 ** x[LOW_BANDS]
    centroid = (np.arange(LOW_BANDS.start, LOW_BANDS.stop)[:, None] * low).sum(0) / (low.sum(0) + 1e-12)
    e = envelope[speech]
    spread = e.std() + 1e-9
    shape = np.array([spread, ((e - e.mean()) ** 3).mean() / spread ** 3, ((e - e.mean()) ** 4).mean() / spread ** 4])
    out = np.concatenate([_modulation(envelope, fps), _modulation(voicing, fps), _rhythm(envelope, fps),
                          _summary(tilt[speech], fps), [tilt[speech].mean()], _summary(centroid[speech], fps),
                          [np.corrcoef(centroid[speech], envelope[speech])[0, 1] if speech.sum() > 2 else 0.0],
                          shape])
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
