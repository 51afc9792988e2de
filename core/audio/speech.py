"""Energy-based speech detection: which 10 ms frames of a clip hold speech."""


import math

import numpy as np

from core.audio.decode import SAMPLE_RATE

# Speech detection on 25 ms frames every 10 ms.
VAD_FRAME, VAD_HOP = 400, 160  # samples at 16 kHz
VAD_FLOOR_DB = -55.0  # dBFS below which a frame is silence whatever the clip
VAD_ABOVE_NOISE_DB = 12.0  # speech stands this far above the clip's own noise floor
MIN_SPEECH_SECONDS = 0.25  # less voiced time than this is "no speech"


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


