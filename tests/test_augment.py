"""core.identify.augment: each copy changes what it should (length, SNR, band, level) and is reproducible."""

import numpy as np
import pytest

from core.audio.decode import SAMPLE_RATE
from core.identify.augment import KINDS, add_noise, augmented_copies, reverberate, speed, telephone
from tests.conftest import speechlike


def _band_power(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_speed_perturbation_scales_duration_and_pitch():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    fast = speed(tone, 1.1)
    assert len(fast) == pytest.approx(SAMPLE_RATE / 1.1, abs=2)
    peak = np.fft.rfftfreq(len(fast), 1 / SAMPLE_RATE)[np.abs(np.fft.rfft(fast)).argmax()]
    assert peak == pytest.approx(220, abs=3)


def test_noise_is_added_at_the_asked_snr():
    clean = speechlike(2.0)
    noisy = add_noise(clean, 10.0, np.random.default_rng(0))
    snr = 10 * np.log10(np.mean(clean ** 2) / np.mean((noisy - clean) ** 2))
    assert snr == pytest.approx(10.0, abs=0.1)


def test_reverb_keeps_length_and_level_and_smears_time():
    clean = speechlike(2.0)
    wet = reverberate(clean, 0.5, np.random.default_rng(0))
    assert wet.shape == clean.shape and np.mean(wet ** 2) == pytest.approx(np.mean(clean ** 2), rel=1e-3)
    assert not np.allclose(wet, clean)


def test_phone_channel_removes_what_a_phone_cannot_carry():
    white = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
    narrow = telephone(white)
    assert len(narrow) == len(white)
    kept = _band_power(narrow, 500, 3000) / _band_power(white, 500, 3000)
    assert _band_power(narrow, 4500, 8000) / _band_power(white, 4500, 8000) < 0.01 * kept
    assert _band_power(narrow, 0, 150) / _band_power(white, 0, 150) < 0.1 * kept


def test_copies_are_reproducible_from_their_seed():
    clean = speechlike(1.0)
    first, again = augmented_copies(clean, KINDS, seed=3), augmented_copies(clean, KINDS, seed=3)
    assert [k for k, _ in first] == list(KINDS)
    for (_, a), (_, b) in zip(first, again):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="unknown augmentation"):
        augmented_copies(clean, ["echo"], seed=0)


def test_clip_copies_are_the_same_computed_fresh_read_from_the_cache_or_uncached(tmp_path):
    from core.audio.decode import write_wav
    from core.audio.features import FeatureConfig
    from core.identify.augment import clip_copies

    write_wav(tmp_path / "a.wav", speechlike(2.0))
    path, kinds = str(tmp_path / "a.wav"), ["speed0.9", "noise"]
    fresh = clip_copies(path, "0123abcd", kinds, FeatureConfig(), tmp_path / "cache")
    cached = clip_copies(path, "0123abcd", kinds, FeatureConfig(), tmp_path / "cache")
    uncached = clip_copies(path, "0123abcd", kinds, FeatureConfig())
    assert [kind for kind, _ in fresh] == kinds and len(cached) == len(uncached) == 2
    for (_, a), (_, b), (_, c) in zip(fresh, cached, uncached):
        assert a.dtype == np.float32 and np.array_equal(a, b) and np.array_equal(a, c)
