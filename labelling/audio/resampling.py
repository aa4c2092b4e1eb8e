"""Resampling to the canonical 16 kHz mono, whole (``to_mono_16k``) or streamed.

Both use torchaudio's windowed-sinc resampler with the rate ratio bounded by
``_resample_ratio``; ``StreamResampler`` gives the same output (to float rounding) for a
signal that arrives in blocks, which is how ``decoding.decode_mono_16k`` stays within a
block's memory. torch and torchaudio are imported inside the functions that resample, never
at module level: importing this module (as the decoder does) must not load PyTorch.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from labelling.audio.base import CANONICAL_RATE, DECODE_BLOCK_FRAMES

__all__ = ["StreamResampler", "to_mono_16k"]

# torchaudio builds a (new, orig)-shaped sinc kernel from the reduced rate ratio: 44101 Hz ->
# 16000 Hz would need gigabytes. Ratios are approximated to this denominator instead; the time
# error is |ratio error| < 1e-6 relative (under 4 ms per hour of audio).
_MAX_RESAMPLE_DENOMINATOR = 1000


def _resample_ratio(sample_rate: int) -> Fraction:
    """CANONICAL_RATE / sample_rate as (new, orig) = (numerator, denominator), bounded."""
    return Fraction(CANONICAL_RATE, int(sample_rate)).limit_denominator(_MAX_RESAMPLE_DENOMINATOR)


# torchaudio.functional.resample's defaults, which the streaming resampler mirrors.
_LOWPASS_FILTER_WIDTH = 6
_ROLLOFF = 0.99


class StreamResampler:
    """``to_mono_16k``'s resampling for a mono signal that arrives in blocks.

    torchaudio's windowed-sinc resampler computes output block i (``new`` samples) from input
    ``[i*orig - width, (i+1)*orig + width)`` (``orig``/``new``: the reduced rate ratio,
    ``width``: the kernel's half-length). So the input is cut at multiples of ``orig`` and
    each piece is resampled with ``context`` (>= width, a multiple of ``orig``) input samples
    of either neighbour; the output samples that belong to the piece are exactly those of a
    whole-array resample, except for float rounding in the convolution. The first and last
    pieces see the same zero padding as the whole array does at its ends.

    Memory: the pending mono input (< two steps plus two contexts) and one piece's output.
    """

    def __init__(self, sample_rate: int) -> None:
        ratio = _resample_ratio(sample_rate)
        self.orig, self.new = ratio.denominator, ratio.numerator
        self.identity = self.orig == self.new
        width = math.ceil(_LOWPASS_FILTER_WIDTH * self.orig / (min(self.orig, self.new) * _ROLLOFF))
        self.context = math.ceil(width / self.orig) * self.orig
        # Mono input per resampling call: one decode block. Larger steps call torch less
        # often but its convolution workspace grows with the input (4x the step: +7 MB).
        self.step = max(1, DECODE_BLOCK_FRAMES // self.orig) * self.orig
        self._pending = np.zeros(0, dtype=np.float32)  # input from global index _pending_at
        self._pending_at = 0
        self._next = 0  # global input index where the next unresampled step starts

    def output_length(self, input_frames: int) -> int:
        """Samples a whole-array resample of ``input_frames`` frames gives (torchaudio's)."""
        return -(-self.new * input_frames // self.orig)

    def push(self, mono: np.ndarray) -> np.ndarray:
        """Take the next input samples; return every output sample now fully determined."""
        if self.identity:
            return np.asarray(mono, dtype=np.float32)
        self._pending = np.concatenate((self._pending, np.asarray(mono, dtype=np.float32)))
        pieces = []
        while self._pending_at + self._pending.size >= self._next + self.step + self.context:
            pieces.append(self._resample_piece(self._next, self._next + self.step, last=False))
            self._next += self.step
            drop = max(0, self._next - self.context - self._pending_at)
            self._pending = self._pending[drop:]
            self._pending_at += drop
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def finish(self) -> np.ndarray:
        """The output for the input after the last full step (the signal's end)."""
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        end = self._pending_at + self._pending.size
        if end <= self._next:
            return np.zeros(0, dtype=np.float32)
        piece = self._resample_piece(self._next, end, last=True)
        self._next = end
        self._pending = np.zeros(0, dtype=np.float32)
        self._pending_at = end
        return piece

    def _resample_piece(self, start: int, stop: int, *, last: bool) -> np.ndarray:
        import torch
        import torchaudio.functional as taf

        lo = max(0, start - self.context)
        hi = stop if last else stop + self.context
        chunk = self._pending[lo - self._pending_at : hi - self._pending_at]
        with torch.inference_mode():
            out: np.ndarray = taf.resample(
                torch.from_numpy(np.ascontiguousarray(chunk)),
                orig_freq=self.orig,
                new_freq=self.new,
            ).numpy()
        first = (start - lo) // self.orig * self.new
        if last:
            return out[first:].astype(np.float32, copy=True)
        return out[first : first + (stop - start) // self.orig * self.new].astype(
            np.float32, copy=True
        )


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(frames, channels) float32 -> (frames_16k,) float32 at CANONICAL_RATE.

    Channels are averaged; a 1-D input is taken as mono. Resampling uses
    torchaudio.functional.resample (windowed sinc). Already-16 kHz mono input comes back
    unchanged (same values, float32, 1-D).
    """
    arr = np.asarray(samples, dtype=np.float32)
    if arr.ndim == 2:
        mono = arr[:, 0] if arr.shape[1] == 1 else arr.mean(axis=1, dtype=np.float32)
    elif arr.ndim == 1:
        mono = arr
    else:
        raise ValueError(f"expected (frames, channels) or (frames,), got shape {arr.shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if sample_rate == CANONICAL_RATE or mono.size == 0:
        return mono

    import torch
    import torchaudio.functional as taf

    ratio = _resample_ratio(sample_rate)
    with torch.inference_mode():
        out = taf.resample(
            torch.from_numpy(mono), orig_freq=ratio.denominator, new_freq=ratio.numerator
        )
    mono16k: np.ndarray = out.numpy().astype(np.float32, copy=False)
    return mono16k
