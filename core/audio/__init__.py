"""Audio in: decode any clip to 16 kHz mono float32, find its speech, filter it, turn it into log-mels.

    decode    load_audio (any file, bytes or array -> 16 kHz mono float32), write_wav, to_wav_bytes
    speech    energy-based speech detection (speech_mask, speech_seconds, has_speech)
    filters   what a listener hears: the study's low-pass and its power gain
    features  the log-mel spectrogram, full band and low-pass, from one STFT

May import: numpy, scipy, soundfile, soxr, librosa's mel filters, and core's shared modules
(errors, files, paths, configs). Nothing else in core.
"""

from core.audio.decode import (FFMPEG_SUFFIXES, MAX_SECONDS, SAMPLE_RATE, SOUNDFILE_SUFFIXES, AudioSource,
                               ffmpeg_available, load_audio, to_wav_bytes, write_wav)
from core.audio.filters import LOWPASS_HZ, lowpass, lowpass_gain
from core.audio.speech import MIN_SPEECH_SECONDS, VAD_HOP, has_speech, speech_mask, speech_seconds

__all__ = ["FFMPEG_SUFFIXES", "MAX_SECONDS", "SAMPLE_RATE", "SOUNDFILE_SUFFIXES", "AudioSource", "ffmpeg_available",
           "load_audio", "to_wav_bytes", "write_wav", "LOWPASS_HZ", "lowpass", "lowpass_gain",
           "MIN_SPEECH_SECONDS", "VAD_HOP", "has_speech", "speech_mask", "speech_seconds"]
