"""The default feature set: log-mel/MFCC statistics plus eGeMAPS-style prosody functionals.

Everything here is written for this project on torch/torchaudio primitives (BSD-licensed), so
the default install carries no research-only licence. No Django imports: waveforms in,
vectors out.

Frame-level descriptors (10 ms hop on 16 kHz mono):
- a log-mel spectrogram (40 bands, 20 Hz-8 kHz) and 20 MFCCs with their deltas;
- F0 from a normalised cross-correlation (NCCF) pitch tracker (50-500 Hz), voicing from the
  NCCF peak, a harmonics-to-noise ratio from the same peak;
- energy, loudness, spectral slopes (0-500 Hz, 500-1500 Hz, as in eGeMAPS), alpha ratio,
  Hammarberg index, centroid, roll-off, flatness and flux;
- jitter- and shimmer-like period and amplitude perturbation between consecutive voiced frames.

Functionals over the active (non-silent) part of the clip: mean, standard deviation,
percentiles, range and the slope over time, plus rhythm figures (voiced segments per second,
segment and pause lengths). The result is one float32 vector of `DIM` values whose names are
`FEATURE_NAMES`.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
import torchaudio.functional as taf

NAME = "acoustic"
# Bump whenever the numbers an unchanged clip gets would change: cached vectors of an older
# version are then recomputed, and older models keep pointing at the version they used.
VERSION = "1"

SAMPLE_RATE = 16000
HOP = 160  # 10 ms
WIN = 400  # 25 ms analysis window for spectra
N_FFT = 512
N_MELS = 40
N_MFCC = 20
F0_MIN, F0_MAX = 50.0, 500.0
PITCH_WIN = 400  # NCCF correlation window (25 ms)
VOICING_THRESHOLD = 0.5  # NCCF peak above which a frame counts as voiced
SILENCE_DB = 40.0  # frames this far below the loud end of the clip are silence
MIN_SAMPLES = WIN + 2 * HOP


@cache
def _constants() -> dict[str, torch.Tensor]:
    """Filterbanks and windows, built once per process."""
    n_freqs = N_FFT // 2 + 1
    mel = taf.melscale_fbanks(
        n_freqs, 20.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE, norm="slaney", mel_scale="slaney"
    )
    dct = taf.create_dct(N_MFCC, N_MELS, norm="ortho")
    freqs = torch.linspace(0, SAMPLE_RATE / 2, n_freqs)
    return {
        "window": torch.hann_window(WIN),
        "mel": mel,
        "dct": dct,
        "freqs": freqs,
    }


def _functionals(x: torch.Tensor) -> torch.Tensor:
    """(frames,) -> (7,): mean, std, p10, p50, p90, p90-p10, slope per second.

    An empty input (no voiced frame, say) gives zeros, which the per-feature standardisation
    downstream treats as "typical" rather than as an outlier.
    """
    if x.numel() == 0:
        return torch.zeros(7)
    if x.numel() == 1:
        v = x[0]
        return torch.stack([v, torch.tensor(0.0), v, v, v, torch.tensor(0.0), torch.tensor(0.0)])
    q = torch.quantile(x, torch.tensor([0.1, 0.5, 0.9]))
    t = torch.arange(x.numel(), dtype=torch.float32) * (HOP / SAMPLE_RATE)
    tc = t - t.mean()
    slope = (tc * (x - x.mean())).sum() / (tc * tc).sum().clamp_min(1e-9)
    return torch.stack([x.mean(), x.std(), q[0], q[1], q[2], q[2] - q[0], slope])


FUNCTIONALS = ("mean", "std", "p10", "p50", "p90", "range", "slope")


def a_inner(mask: torch.Tensor) -> torch.Tensor:
    """The mask without its first and last frame (aligned with interior-frame comparisons)."""
    return mask[1:-1]


def _segments(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lengths (in frames) of the runs of True and of False inside the active span."""
    m = mask.to(torch.int8)
    if m.numel() == 0:
        return torch.zeros(0), torch.zeros(0)
    change = torch.nonzero(m[1:] != m[:-1]).flatten() + 1
    bounds = torch.cat([torch.tensor([0]), change, torch.tensor([m.numel()])])
    lengths = (bounds[1:] - bounds[:-1]).float()
    values = m[bounds[:-1]].bool()
    return lengths[values], lengths[~values]


def _pitch(wave: torch.Tensor, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """NCCF pitch tracker. Returns (f0_hz, nccf_peak), each (n_frames,).

    For each 10 ms frame, the correlation of a 25 ms window with the signal shifted by every
    lag of the 50-500 Hz range is normalised by both windows' energies (as RAPT and Kaldi do),
    so it is gain-independent. The shortest lag whose peak reaches 90 % of the best one is
    taken, which avoids the usual octave-too-low errors.
    """
    lag_min = int(SAMPLE_RATE / F0_MAX)
    lag_max = int(np.ceil(SAMPLE_RATE / F0_MIN))
    seg = PITCH_WIN + lag_max
    # Centre the correlation window on the spectral frame.
    pad_left = PITCH_WIN // 2
    padded = torch.nn.functional.pad(wave, (pad_left, seg))
    frames = padded.unfold(0, seg, HOP)[:n_frames]  # (T, seg)
    frames = frames - frames.mean(dim=1, keepdim=True)
    n_fft = 1 << int(np.ceil(np.log2(seg)))
    a = torch.zeros_like(frames)
    a[:, :PITCH_WIN] = frames[:, :PITCH_WIN]
    corr = torch.fft.irfft(torch.fft.rfft(frames, n_fft) * torch.fft.rfft(a, n_fft).conj(), n_fft)[
        :, : lag_max + 1
    ]
    sq = torch.nn.functional.pad(frames * frames, (1, 0)).cumsum(dim=1)
    e0 = sq[:, PITCH_WIN] - sq[:, 0]
    lags = torch.arange(lag_max + 1)
    e_lag = sq[:, lags + PITCH_WIN] - sq[:, lags]
    nccf = corr / torch.sqrt(e0[:, None] * e_lag + 1e-12)
    # True local maxima inside the lag range (a lag at the range's edge that is merely on the
    # slope down from lag 0 is no period); the first one within 90 % of the best wins.
    inner = nccf[:, 1:-1]
    is_peak = (inner >= nccf[:, :-2]) & (inner > nccf[:, 2:])
    is_peak[:, : lag_min - 1] = False
    peak_values = torch.where(is_peak, inner, torch.full_like(inner, -1.0))
    best = peak_values.max(dim=1).values
    good = is_peak & (inner >= 0.9 * best[:, None])
    first = good.float().argmax(dim=1) + 1
    # Parabolic interpolation around the chosen lag for sub-sample precision.
    i = first.clamp(1, lag_max - 1)
    y0 = nccf.gather(1, (i - 1)[:, None]).squeeze(1)
    y1 = nccf.gather(1, i[:, None]).squeeze(1)
    y2 = nccf.gather(1, (i + 1)[:, None]).squeeze(1)
    denom = y0 - 2 * y1 + y2
    shift = torch.where(denom.abs() > 1e-9, 0.5 * (y0 - y2) / denom, torch.zeros_like(denom))
    lag = i.float() + shift.clamp(-0.5, 0.5)
    has_peak = good.any(dim=1)
    return SAMPLE_RATE / lag, torch.where(has_peak, y1, torch.zeros_like(y1))


def _harmonic_levels(
    wave: torch.Tensor, f0: torch.Tensor, n_frames: int, harmonics: tuple[int, ...]
) -> torch.Tensor:
    """dB level of the given harmonics of f0 per frame: (len(harmonics), n_frames).

    A 40 ms Hann window (1024-point FFT, 15.6 Hz bins) resolves the harmonics of voices down
    to about 80 Hz; each level is the strongest bin within a quarter of f0 of k * f0.
    """
    win = 640
    n_fft = 1024
    padded = torch.nn.functional.pad(wave, (win // 2, win))
    frames = padded.unfold(0, win, HOP)[:n_frames] * torch.hann_window(win)
    power_db = 10 * torch.log10(torch.fft.rfft(frames, n_fft).abs().square() + 1e-10)
    bin_hz = SAMPLE_RATE / n_fft
    levels = []
    offsets = torch.arange(-4, 5)
    for k in harmonics:
        centre = k * f0 / bin_hz
        reach = (0.25 * f0 / bin_hz).clamp_min(1.0)
        idx = (centre.round().long()[:, None] + offsets[None, :]).clamp(0, n_fft // 2)
        near = (idx.float() - centre[:, None]).abs() <= reach[:, None]
        values = power_db.gather(1, idx).masked_fill(~near, -200.0)
        levels.append(values.max(dim=1).values)
    return torch.stack(levels)


def extract(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(samples,) float mono audio at 16 kHz -> (DIM,) float32 feature vector."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"acoustic features expect {SAMPLE_RATE} Hz audio, got {sample_rate}")
    with torch.inference_mode():
        return _extract(torch.as_tensor(np.asarray(wave, dtype=np.float32))).numpy()


def _extract(wave: torch.Tensor) -> torch.Tensor:
    if wave.ndim != 1:
        raise ValueError(f"expected mono audio of shape (samples,), got {tuple(wave.shape)}")
    if wave.numel() < MIN_SAMPLES:
        wave = torch.nn.functional.pad(wave, (0, MIN_SAMPLES - wave.numel()))
    const = _constants()
    duration = wave.numel() / SAMPLE_RATE
    # Preemphasis-free power spectrogram; spectral slopes are part of what we measure.
    spec = torch.stft(
        wave,
        N_FFT,
        hop_length=HOP,
        win_length=WIN,
        window=const["window"],
        center=True,
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()  # (freqs, T)
    n_frames = power.shape[1]
    eps = 1e-10
    energy_db = 10 * torch.log10(power.sum(dim=0) + eps)
    top = torch.quantile(energy_db, 0.95)
    active = energy_db > top - SILENCE_DB
    if int(active.sum()) < 2:
        active = torch.ones_like(active)

    mel = const["mel"].T @ power  # (mels, T)
    logmel = torch.log(mel + 1e-8)
    mfcc = const["dct"].T @ logmel  # (mfcc, T)
    d_mfcc = taf.compute_deltas(mfcc.unsqueeze(0)).squeeze(0)
    d_logmel = taf.compute_deltas(logmel.unsqueeze(0)).squeeze(0)
    loudness = mel.clamp_min(0).pow(0.3).sum(dim=0)

    f0, nccf = _pitch(wave, n_frames)
    voiced = active & (nccf > VOICING_THRESHOLD) & (f0 >= F0_MIN) & (f0 <= F0_MAX)
    # A one-frame voiced or unvoiced island is more often a tracker glitch than speech.
    if n_frames >= 3:
        v = voiced.float()
        smooth = torch.nn.functional.avg_pool1d(v[None, None], 3, 1, 1, count_include_pad=False)
        voiced = active & (smooth.flatten() > 0.5)
    semitones = 12 * torch.log2(f0.clamp_min(1.0) / 27.5)
    r = nccf.clamp(1e-3, 1 - 1e-3)
    hnr = 10 * torch.log10(r / (1 - r))

    freqs = const["freqs"]
    power_db = 10 * torch.log10(power + eps)

    def band_slope(lo: float, hi: float) -> torch.Tensor:
        sel = (freqs >= lo) & (freqs <= hi)
        f = freqs[sel] - freqs[sel].mean()
        y = power_db[sel]
        return (f[:, None] * (y - y.mean(dim=0, keepdim=True))).sum(dim=0) / (f * f).sum()

    slope_lo = band_slope(0, 500) * 1000  # dB per kHz
    slope_hi = band_slope(500, 1500) * 1000
    low = power[(freqs >= 50) & (freqs < 1000)].sum(dim=0)
    high = power[(freqs >= 1000) & (freqs < 5000)].sum(dim=0)
    alpha = 10 * torch.log10((low + eps) / (high + eps))
    hammarberg = (
        power_db[freqs < 2000].max(dim=0).values
        - power_db[(freqs >= 2000) & (freqs < 5000)].max(dim=0).values
    )
    total = power.sum(dim=0) + eps
    centroid = (freqs[:, None] * power).sum(dim=0) / total / 1000
    cum = power.cumsum(dim=0) / total
    rolloff = freqs[(cum < 0.85).sum(dim=0).clamp_max(freqs.numel() - 1)] / 1000
    flatness = torch.exp(torch.log(power + eps).mean(dim=0)) / (power.mean(dim=0) + eps)
    flux = torch.cat([torch.zeros(1), (logmel[:, 1:] - logmel[:, :-1]).square().mean(dim=0)])

    # Perturbation between consecutive voiced frames (frame-level, hence "-like").
    both = voiced[1:] & voiced[:-1]
    period = 1000.0 / f0.clamp_min(1.0)  # ms
    jitter = (period[1:] - period[:-1]).abs()[both] / period[1:][both].clamp_min(1e-3)
    # Peak amplitude per 10 ms frame (the frames the spectrogram is centred on).
    padded = torch.nn.functional.pad(wave, (HOP // 2, n_frames * HOP))[: n_frames * HOP]
    amp_db = 20 * torch.log10(padded.reshape(n_frames, HOP).abs().amax(dim=1) + 1e-5)
    shimmer = (amp_db[1:] - amp_db[:-1]).abs()[both]
    # Voice quality: the first harmonic against the second and fourth (breathy vs pressed).
    h1, h2, h4 = _harmonic_levels(wave, f0, n_frames, (1, 2, 4))
    h1_h2 = (h1 - h2)[voiced]
    h1_h4 = (h1 - h4)[voiced]
    # Intonation movement: rising and falling pitch within voiced stretches (semitones/s).
    d_st = (semitones[1:] - semitones[:-1])[both] * (SAMPLE_RATE / HOP)
    d_st = d_st[d_st.abs() < 1200]  # larger jumps are octave errors, not intonation
    rising = d_st[d_st > 0]
    falling = -d_st[d_st < 0]
    # Loudness peaks per second of active speech: a syllable-rate proxy.
    smooth_loud = torch.nn.functional.avg_pool1d(
        loudness[None, None], 5, 1, 2, count_include_pad=False
    ).flatten()
    loud_peak = (
        (smooth_loud[1:-1] > smooth_loud[:-2])
        & (smooth_loud[1:-1] >= smooth_loud[2:])
        & (smooth_loud[1:-1] > 0.5 * smooth_loud.max())
        & a_inner(active)
    )

    a = active
    v = voiced
    parts: list[torch.Tensor] = [
        logmel[:, a].mean(dim=1),
        logmel[:, a].std(dim=1),
        d_logmel[:, a].std(dim=1),
        mfcc[:, a].mean(dim=1),
        mfcc[:, a].std(dim=1),
        d_mfcc[:, a].std(dim=1),
        _functionals(semitones[v]),
        _functionals(hnr[v]),
        _functionals(energy_db[a]),
        _functionals(loudness[a]),
        _functionals(slope_lo[v]),
        _functionals(slope_hi[v]),
        _functionals(alpha[v]),
        _functionals(hammarberg[v]),
        _functionals(alpha[a & ~v]),
        _functionals(centroid[a]),
        _functionals(rolloff[a]),
        _functionals(flatness[a]),
        _functionals(flux[a]),
        _functionals(jitter),
        _functionals(shimmer),
        _functionals(h1_h2),
        _functionals(h1_h4),
        mfcc[1:13, v].mean(dim=1) if int(v.sum()) else torch.zeros(12),
        mfcc[1:13, a & ~v].mean(dim=1) if int((a & ~v).sum()) else torch.zeros(12),
        torch.stack(
            [
                rising.mean() if rising.numel() else torch.tensor(0.0),
                falling.mean() if falling.numel() else torch.tensor(0.0),
            ]
        ),
    ]
    voiced_runs, unvoiced_runs = _segments(v[a])
    active_s = float(a.sum()) * HOP / SAMPLE_RATE
    frame_s = HOP / SAMPLE_RATE

    def mean_std(x: torch.Tensor) -> list[float]:
        if x.numel() == 0:
            return [0.0, 0.0]
        return [float(x.mean()) * frame_s, float(x.std()) * frame_s if x.numel() > 1 else 0.0]

    rhythm = torch.tensor(
        [
            float(v.sum()) / max(float(a.sum()), 1.0),  # voiced share of active time
            float(a.float().mean()),  # active share of the clip
            voiced_runs.numel() / max(active_s, frame_s),  # voiced segments per second
            *mean_std(voiced_runs),
            *mean_std(unvoiced_runs),
            np.log(duration),
            float(loud_peak.sum()) / max(active_s, frame_s),
        ]
    )
    parts.append(rhythm)
    out = torch.cat([p.flatten().float() for p in parts])
    return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _names() -> tuple[str, ...]:
    names: list[str] = []
    for stat in ("mean", "std", "delta_std"):
        names += [f"logmel{b:02d}_{stat}" for b in range(N_MELS)]
    for stat in ("mean", "std", "delta_std"):
        names += [f"mfcc{c:02d}_{stat}" for c in range(N_MFCC)]
    for lld in (
        "f0_semitones",
        "hnr_db",
        "energy_db",
        "loudness",
        "slope0_500",
        "slope500_1500",
        "alpha_ratio_voiced",
        "hammarberg_voiced",
        "alpha_ratio_unvoiced",
        "centroid_khz",
        "rolloff85_khz",
        "flatness",
        "flux",
        "jitter_like",
        "shimmer_like_db",
        "h1_h2_db",
        "h1_h4_db",
    ):
        names += [f"{lld}_{f}" for f in FUNCTIONALS]
    names += [f"mfcc{c:02d}_voiced_mean" for c in range(1, 13)]
    names += [f"mfcc{c:02d}_unvoiced_mean" for c in range(1, 13)]
    names += ["f0_rising_st_per_s", "f0_falling_st_per_s"]
    names += [
        "voiced_share",
        "active_share",
        "voiced_segments_per_s",
        "voiced_segment_s_mean",
        "voiced_segment_s_std",
        "pause_s_mean",
        "pause_s_std",
        "log_duration_s",
        "loudness_peaks_per_s",
    ]
    return tuple(names)


FEATURE_NAMES = _names()
DIM = len(FEATURE_NAMES)
