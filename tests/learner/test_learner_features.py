"""Acoustic features and augmentation, on synthetic audio (no database)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learner import augment
from learner.features import ExtractorUnavailable, acoustic, describe, get_extractor

RATE = 16000


def vowel(f0: float, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a little noise: what a sustained vowel looks like to a tracker."""
    t = np.arange(int(RATE * seconds)) / RATE
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    noise = np.random.default_rng(seed).normal(scale=0.01, size=t.shape)
    return (0.2 * wave / np.abs(wave).max() + noise).astype(np.float32)


@pytest.mark.parametrize("f0", [90.0, 140.0, 220.0, 330.0])
def test_the_pitch_tracker_finds_the_fundamental_of_a_harmonic_tone(f0):
    wave = torch.from_numpy(vowel(f0))
    estimate, peak = acoustic._pitch(wave, 1 + wave.numel() // acoustic.HOP)
    voiced = peak > acoustic.VOICING_THRESHOLD
    assert voiced.float().mean() > 0.9
    assert float(estimate[voiced].median()) == pytest.approx(f0, rel=0.02)


def test_features_have_the_declared_size_names_and_are_finite_on_odd_input():
    assert len(acoustic.FEATURE_NAMES) == acoustic.DIM == len(set(acoustic.FEATURE_NAMES))
    for wave in (
        vowel(150.0),
        np.zeros(RATE, dtype=np.float32),  # silence
        np.zeros(10, dtype=np.float32),  # far too short
        np.random.default_rng(0).normal(size=RATE).astype(np.float32),  # noise
    ):
        vector = acoustic.extract(wave)
        assert vector.shape == (acoustic.DIM,)
        assert vector.dtype == np.float32
        assert np.isfinite(vector).all()


def test_higher_pitch_shows_in_the_pitch_features_and_extraction_is_deterministic():
    low, high = acoustic.extract(vowel(120.0)), acoustic.extract(vowel(240.0))
    i = acoustic.FEATURE_NAMES.index("f0_semitones_p50")
    assert high[i] - low[i] == pytest.approx(12.0, abs=0.5)  # one octave
    assert np.array_equal(acoustic.extract(vowel(120.0)), low)


def test_acoustic_rejects_other_sample_rates():
    with pytest.raises(ValueError, match="16000"):
        acoustic.extract(vowel(120.0), 8000)


def test_augmented_copies_are_reproducible_and_change_the_audio_as_asked():
    wave = vowel(150.0, seconds=2.0)
    config = augment.AugmentConfig(noise_probability=0.0, reverb_probability=0.0)
    slow = augment.augment(wave, 1, config, seed=5)
    assert len(slow) == pytest.approx(len(wave) / 0.9, rel=0.01)  # copy 1: speed 0.9
    assert np.array_equal(slow, augment.augment(wave, 1, config, seed=5))
    noisy = augment.add_noise(wave, 10.0, np.random.default_rng(0))
    snr = 10 * np.log10((wave**2).mean() / ((noisy - wave) ** 2).mean())
    assert snr == pytest.approx(10.0, abs=0.5)
    wet = augment.reverberate(wave, 0.5, np.random.default_rng(0))
    assert wet.shape == wave.shape
    assert np.abs(wet).max() == pytest.approx(np.abs(wave).max())


def test_opensmile_and_ssl_say_clearly_why_they_are_unavailable():
    sets = {row["name"]: row for row in describe()}
    assert sets["acoustic"]["available"]
    assert not sets["ssl"]["available"]
    assert "EMOLOOP_SSL_CHECKPOINT" in sets["ssl"]["reason"]
    with pytest.raises(ExtractorUnavailable, match="no SSL checkpoint"):
        get_extractor("ssl")
    try:
        import opensmile  # noqa: F401
    except ImportError:
        with pytest.raises(ExtractorUnavailable, match="research licence"):
            get_extractor("egemaps")
    with pytest.raises(ValueError, match="unknown feature set"):
        get_extractor("mfcc-only")
