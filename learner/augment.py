"""Waveform augmentation for training copies. Arrays in, arrays out, seeded; no Django.

Each training clip may get `copies` augmented copies. Copy k always uses the same speed
factor (so that, like a new speaker, all of a speaker's copy-k clips share one voice
change and can be normalised together), and a random mix of:
- additive noise at an SNR drawn from `snr_db` (white or pink, generated here: no noise corpus
  is downloaded);
- reverberation with a synthetic room impulse response (exponentially decaying noise with an
  RT60 drawn from `rt60_s`, plus the direct path), applied with fftconvolve.
Whether this helps is measured by bench/learner_loso.py; the project default is off.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torchaudio.functional as taf

SAMPLE_RATE = 16000
# Part of the cache key of augmented feature vectors: bump when copies would come out different.
VERSION = "1"


@dataclass(frozen=True)
class AugmentConfig:
    copies: int = 2
    speed_factors: tuple[float, ...] = (0.9, 1.1)
    noise_probability: float = 0.5
    snr_db: tuple[float, float] = (10.0, 30.0)
    reverb_probability: float = 0.3
    rt60_s: tuple[float, float] = (0.2, 0.7)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def speed_for(self, copy: int) -> float:
        """Copy numbers start at 1; factors repeat when there are more copies than factors."""
        if not self.speed_factors:
            return 1.0
        return self.speed_factors[(copy - 1) % len(self.speed_factors)]


def add_noise(
    wave: np.ndarray, snr_db: float, rng: np.random.Generator, colour: str = "white"
) -> np.ndarray:
    """(samples,) -> (samples,) with Gaussian noise at `snr_db` relative to the clip's power."""
    noise = rng.standard_normal(len(wave))
    if colour == "pink":  # 1/f power: shape white noise's spectrum by 1/sqrt(f)
        spectrum = np.fft.rfft(noise)
        f = np.arange(spectrum.shape[0])
        spectrum[1:] /= np.sqrt(f[1:])
        spectrum[0] = 0
        noise = np.fft.irfft(spectrum, n=wave.shape[0])
    out: torch.Tensor = taf.add_noise(
        torch.as_tensor(wave, dtype=torch.float32)[None],
        torch.as_tensor(noise, dtype=torch.float32)[None],
        torch.tensor([snr_db], dtype=torch.float32),
    )[0]
    return out.numpy()


def synthetic_rir(
    rt60_s: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """A room impulse response: a unit direct path, then exponentially decaying noise that
    falls by 60 dB in `rt60_s` seconds (starting after 2.5 ms of pre-delay)."""
    length = int(rt60_s * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.9078 * t / rt60_s)  # ln(1000) = 6.9078
    tail[: int(0.0025 * sample_rate)] = 0.0
    rir: np.ndarray = 0.3 * tail / (np.sqrt((tail**2).sum()) + 1e-9)
    rir[0] = 1.0
    return rir


def reverberate(wave: np.ndarray, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    rir = torch.as_tensor(synthetic_rir(rt60_s, rng), dtype=torch.float32)
    wet: torch.Tensor = taf.fftconvolve(torch.as_tensor(wave, dtype=torch.float32), rir)[
        : wave.shape[0]
    ]
    peak_in = float(np.abs(wave).max()) or 1.0
    peak_out = float(wet.abs().max()) or 1.0
    return (wet * (peak_in / peak_out)).numpy()


def change_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """Faster (> 1) or slower (< 1) speech with pitch and formants moved alike, as a
    resampling does: the voice sounds like another speaker's."""
    if abs(factor - 1.0) < 1e-6:
        return wave
    out: torch.Tensor
    out, _ = taf.speed(torch.as_tensor(wave, dtype=torch.float32)[None], SAMPLE_RATE, factor)
    return out[0].numpy()


def augment(wave: np.ndarray, copy: int, config: AugmentConfig, seed: int) -> np.ndarray:
    """Copy number `copy` (1-based) of a 16 kHz mono clip; the same (copy, seed) always gives
    the same samples."""
    rng = np.random.default_rng([seed, copy])
    out = change_speed(np.asarray(wave, dtype=np.float32), config.speed_for(copy))
    if rng.random() < config.reverb_probability:
        out = reverberate(out, float(rng.uniform(*config.rt60_s)), rng)
    if rng.random() < config.noise_probability:
        colour = "pink" if rng.random() < 0.5 else "white"
        out = add_noise(out, float(rng.uniform(*config.snr_db)), rng, colour)
    clipped: np.ndarray = np.clip(out, -1.0, 1.0).astype(np.float32)
    return clipped
