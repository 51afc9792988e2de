"""espeak-ng through ctypes, from the PyPI package espeakng-loader (no system package).

Its state is global to the process (and, as measured, the audio of one utterance depends on what the
process synthesized before it), so callers that need repeatable audio use a fresh process per batch.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from core.errors import DeepLanguageError

ESPEAK_SAMPLE_RATE = 22050  # Hz, what espeak-ng synthesizes

# espeak_Initialize / espeak_Synth / espeak_SetParameter constants from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_WORDGAP = 1, 2, 3, 7
# Below espeak's default of 100 so that loud variants (m7 peaks at 99.6 % there) never clip.
_ESPEAK_VOLUME_LEVEL = 80
_ESPEAK_RAND_SEED = 1
# espeak_TextToPhonemes' phonememode: bit 1 = IPA; bits 8-23 = the character between phonemes.
_PHONEMES_IPA = 0x02
_PHONEME_SEPARATOR = ord("_") << 8


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: the same settings for every clip it says."""

    client_id: str  # e.g. "es-voice03", the speaker id in validated.tsv
    espeak_name: str  # e.g. "es-419+m3", what espeak_SetVoiceByName takes
    accent: str  # the espeak base voice, e.g. "es-419"
    gender: str  # "male" or "female"
    rate_wpm: int
    pitch: int
    word_gap: int



_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)
_INSTALL_HINT = "install it into this environment with `pip install espeakng-loader`"


def load_espeak_library() -> tuple[ctypes.CDLL, str]:
    """libespeak-ng and its data folder from the espeakng-loader package, or a clear error."""
    try:
        import espeakng_loader
    except ImportError as error:
        raise DeepLanguageError(
            f"the demo corpus is synthesized with espeak-ng, but the Python package "
            f"espeakng-loader is missing: {_INSTALL_HINT}") from error
    try:
        library = ctypes.CDLL(espeakng_loader.get_library_path())
        data_path = espeakng_loader.get_data_path()
    except (OSError, RuntimeError) as error:
        raise DeepLanguageError(
            f"espeak-ng from espeakng-loader could not be loaded ({error}); "
            f"reinstall it with `pip install --force-reinstall espeakng-loader`") from error
    return library, data_path


class Espeak:
    """This process's espeak-ng, initialised once: synthesize(text, voice) -> int16 at 22050 Hz."""

    def __init__(self) -> None:
        self._lib, data_path = load_espeak_library()
        self._chunks: list[bytes] = []
        sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                                  data_path.encode(), 0)
        if sample_rate != ESPEAK_SAMPLE_RATE:
            raise DeepLanguageError(
                f"espeak-ng did not start (it answered {sample_rate}, expected "
                f"{ESPEAK_SAMPLE_RATE} Hz); reinstall it with "
                f"`pip install --force-reinstall espeakng-loader`")
        # Kept on self: ctypes must hold the callback for as long as espeak may call it.
        self._callback = _SYNTH_CALLBACK(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lib.espeak_Info.restype = ctypes.c_char_p
        self.version = self._lib.espeak_Info(None).decode()

    def _collect(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(ctypes.string_at(wav, n_samples * 2))
        return 0  # 0 = carry on synthesizing

    def synthesize(self, text: str, voice: Voice) -> np.ndarray:
        """(n_samples,) int16 at ESPEAK_SAMPLE_RATE."""
        # Every setting again for every utterance, so no clip depends on the previous voice's.
        if self._lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != 0:
            raise DeepLanguageError(
                f"espeak-ng has no voice {voice.espeak_name!r}; reinstall its data with "
                f"`pip install --force-reinstall espeakng-loader`")
        self._lib.espeak_SetParameter(_ESPEAK_RATE, voice.rate_wpm, 0)
        self._lib.espeak_SetParameter(_ESPEAK_PITCH, voice.pitch, 0)
        self._lib.espeak_SetParameter(_ESPEAK_WORDGAP, voice.word_gap, 0)
        self._lib.espeak_SetParameter(_ESPEAK_VOLUME, _ESPEAK_VOLUME_LEVEL, 0)
        # Breathy variants (f2, f3, f5) mix in noise from espeak's own generator, which it seeds
        # from the clock: a fixed seed per utterance makes them repeatable.
        self._lib.espeak_ng_SetRandSeed(ctypes.c_long(_ESPEAK_RAND_SEED))
        self._chunks.clear()
        data = text.encode() + b"\0"
        self._lib.espeak_Synth(data, len(data), 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        return np.frombuffer(b"".join(self._chunks), dtype=np.int16)

    def phonemes(self, text: str, voice_name: str) -> list[str]:
        """espeak-ng's IPA phonemes of ``text`` read by voice ``voice_name``, one string per word,
        phonemes joined by "_" (e.g. "k_ˈo_m_o"); words espeak reads in another language come
        wrapped in language switches such as "(en)...(ja)"."""
        if self._lib.espeak_SetVoiceByName(voice_name.encode()) != 0:
            raise DeepLanguageError(f"espeak-ng has no voice {voice_name!r}")
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                                    ctypes.c_int]
        buffer = ctypes.create_string_buffer(text.encode())
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        words = []
        # One clause per call; espeak moves the pointer on and sets it to NULL at the end.
        while pointer.value:
            clause = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), _ESPEAK_CHARS_UTF8,
                                                     _PHONEMES_IPA | _PHONEME_SEPARATOR)
            words += (clause or b"").decode(errors="replace").split()
        return words


# ---------------------------------------------------------------------------------------------
# One clip: choose text, synthesize, resample, augment. Pure given (espeak's history, rng).
