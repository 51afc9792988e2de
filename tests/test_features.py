import librosa
import numpy as np
import pytest

from core import audio
from core.audio.features import FeatureConfig, log_mel, log_mel_pair, normalize_utterance
from tests.conftest import SR, speechlike


def _librosa_reference(clip, config):
    power = librosa.feature.melspectrogram(
        y=clip, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, n_mels=config.n_mels, center=True, pad_mode="constant")
    log = np.log10(np.maximum(power, 1e-10))
    return np.maximum(log, log.max() - 8)


@pytest.mark.parametrize("n_mels", [40, 64, 80])
def test_log_mel_matches_librosa(n_mels):
    config = FeatureConfig(n_mels=n_mels)
    clip = speechlike(1.5)
    ours = log_mel(clip, config)
    assert ours.shape == (n_mels, 1 + len(clip) // config.hop_length) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _librosa_reference(clip, config), atol=1e-4)


def test_defaults_are_25ms_10ms_64_mels():
    config = FeatureConfig()
    assert (config.win_length, config.hop_length, config.n_fft, config.n_mels) == (400, 160, 512, 64)
    assert config.frames_per_second == 100


def test_path_array_and_tensor_give_identical_features(clip_files):
    import torch

    from_path = log_mel(clip_files["flac"])
    clip = audio.load_audio(clip_files["flac"])
    np.testing.assert_array_equal(from_path, log_mel(clip))
    np.testing.assert_array_equal(from_path, log_mel(torch.from_numpy(clip)))


def test_lowpass_variant_is_the_filtered_clip_and_drops_high_bands():
    config = FeatureConfig()
    clip = speechlike(2.0)
    full, low = log_mel_pair(clip, config)
    np.testing.assert_array_equal(low, log_mel(clip, config, lowpass=True))
    bands = librosa.mel_frequencies(config.n_mels + 2, fmax=SR / 2)[1:-1]
    below, above = bands < 350, bands > 1000
    # Below the cutoff the spectral low-pass agrees with filtering the waveform (edges aside).
    filtered = log_mel(audio.lowpass(clip), config)
    assert np.median(np.abs(low[below] - filtered[below])) < 0.05
    # Above it: at the floor, 80 dB under the peak, where the full band has energy.
    assert np.allclose(low[above], low.max() - 8, atol=1e-3)
    harmonics = (bands > 1000) & (bands < 1400)  # the test signal's top harmonics live here
    assert full[harmonics].mean() > low[harmonics].mean() + 2


def test_config_key_changes_with_any_parameter():
    keys = {FeatureConfig().key(), FeatureConfig(n_mels=80).key(), FeatureConfig(hop_ms=20).key(),
            FeatureConfig(lowpass_hz=300).key()}
    assert len(keys) == 4
    assert FeatureConfig().key() == FeatureConfig().key()


def test_normalisation_is_per_band():
    features = np.random.default_rng(0).normal(3, 2, size=(64, 200)).astype(np.float32)
    normed = normalize_utterance(features)
    np.testing.assert_allclose(normed.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(normed.std(axis=1), 1, atol=1e-3)
    assert np.all(normalize_utterance(np.ones((4, 10), np.float32)) == 0)  # constant bands stay finite


@pytest.mark.parametrize("locale", ["es", "ja"])
def test_real_clip_features_match_a_plain_reference(cv_sample, locale):
    """prepare's fast path (dense frame-major products, log via ln) against the plain computation on real
    Common Voice speech: librosa's decode-and-resample, its STFT, the mel filterbank, log10 and the clamp."""
    from core.audio.filters import lowpass_gain
    from core.audio.features import mel_filters

    path = sorted((cv_sample / locale / "clips").glob("*.mp3"))[0]
    config = FeatureConfig()
    clip = audio.load_audio(path)
    reference_clip, _ = librosa.load(path, sr=config.sample_rate, res_type="soxr_hq")
    np.testing.assert_allclose(clip, reference_clip, atol=1e-5)

    stft = librosa.stft(clip, n_fft=config.n_fft, hop_length=config.hop_length, win_length=config.win_length,
                        center=True, pad_mode="constant")
    power = np.abs(stft.astype(np.complex128)) ** 2
    gain = lowpass_gain(librosa.fft_frequencies(sr=config.sample_rate, n_fft=config.n_fft), config.lowpass_hz)

    def reference(mel):
        log = np.log10(np.maximum(mel, 1e-10))
        return np.maximum(log, log.max() - 8)

    full, low = log_mel_pair(clip, config)
    assert full.shape == low.shape == (config.n_mels, stft.shape[1])
    filters = mel_filters(config).astype(np.float64)
    # 1e-3 log10 units is 0.01 dB; the floor of near-silent bins (power ~1e-20) is where float32 differs most.
    np.testing.assert_allclose(full, reference(filters @ power), atol=1e-3)
    np.testing.assert_allclose(low, reference((filters * gain) @ power), atol=1e-3)


def test_filtered_spectra_put_each_filter_s_attenuation_under_the_full_band():
    from core.audio.features import filtered_spectra

    rng = np.random.default_rng(0)
    spectra = filtered_spectra(rng.standard_normal(16000).astype(np.float32))
    freqs = spectra["freqs_hz"]
    at = {f: int(np.argmin(np.abs(freqs - f))) for f in (250.0, 500.0, 2000.0)}
    assert spectra["full band"].max() == 0  # relative to the full band's peak
    utero_drop = spectra["full band"][at[2000.0]] - spectra["in utero"][at[2000.0]]
    assert 55 < utero_drop < 59  # the published filter: 57 dB at 2 kHz
    assert spectra["full band"][at[2000.0]] - spectra["butterworth"][at[2000.0]] > 100  # 8th order, both ways
    assert abs(spectra["full band"][at[250.0]] - spectra["butterworth"][at[250.0]]) < 0.1  # passband
