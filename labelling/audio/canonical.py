"""What is stored and shown of decoded audio: canonical WAV bytes, hashes, waveform peaks.

``wav_bytes`` writes its own 44-byte header so that equal samples always give equal bytes
(clip content hashes depend on it); ``peaks`` is the waveform the labelling page draws.
numpy and stdlib only.
"""

from __future__ import annotations

import hashlib
import math
import struct
from pathlib import Path

import numpy as np

__all__ = ["peaks", "sha256_bytes", "sha256_file", "wav_bytes"]


def wav_bytes(mono: np.ndarray, sample_rate: int) -> bytes:
    """A mono PCM_16 WAV in memory.

    The 44-byte header is written here rather than by libsndfile so that equal input always
    gives equal bytes (clip content hashes depend on it). Scaling is x * 32768 with clipping,
    the inverse of how soundfile reads PCM_16, so decode -> wav_bytes is lossless for 16-bit.
    """
    arr = np.asarray(mono, dtype=np.float32)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D mono array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("samples contain NaN or infinity")
    if not 0 < sample_rate < 2**32:
        raise ValueError(f"invalid sample_rate {sample_rate}")
    pcm = np.clip(np.rint(arr.astype(np.float64) * 32768.0), -32768, 32767).astype("<i2")
    data = pcm.tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(data),
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        len(data),
    )
    return header + data


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def peaks(mono: np.ndarray, sample_rate: int, *, points_per_second: int = 100) -> list[float]:
    """Max |sample| per bucket of 1/points_per_second s, rounded to 3 decimals.

    ``ceil(len * points_per_second / sample_rate)`` values; the last bucket may be shorter.
    A (frames, channels) array is reduced over channels too.
    """
    arr = np.abs(np.asarray(mono, dtype=np.float32))
    if arr.ndim == 2:
        arr = arr.max(axis=1) if arr.shape[1] else np.zeros(arr.shape[0], np.float32)
    if arr.ndim != 1:
        raise ValueError(f"expected (frames,) or (frames, channels), got shape {arr.shape}")
    if not 0 < points_per_second <= sample_rate:
        raise ValueError("points_per_second must be between 1 and the sample rate")
    if arr.size == 0:
        return []
    n = math.ceil(arr.size * points_per_second / sample_rate)
    # floor keeps every edge < len and, with points_per_second <= sample_rate, strictly rising,
    # which reduceat needs (equal edges would yield a sample instead of an empty bucket).
    edges = (np.arange(n, dtype=np.int64) * sample_rate) // points_per_second
    values = np.maximum.reduceat(arr, edges)
    return [round(float(v), 3) for v in values]
