"""Decoding: a probed file to float32 samples, refused when it is not what its header said.

``decode`` holds the whole file at its own rate and channels; ``decode_mono_16k`` streams
it block by block into 16 kHz mono (``resampling.StreamResampler``), so its peak memory is
the mono output plus one block, never the multichannel file. Both run ``probing.probe``
first and refuse a decode that comes out empty, short of the header, over the limits, or
with NaN/inf samples.

Memory-bounded and torch-free until a block has to be resampled: tests/test_decode_bombs.py
measures the peak memory of refusing a decode bomb here and asserts that torch was never
imported. Keep torch out of this module's imports (and out of those of ``base``, ``probing``
and ``containers``); ``resampling`` imports it inside its functions.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

from labelling.audio.base import (
    DECODE_BLOCK_FRAMES,
    DEFAULT_MAX_SAMPLES_PER_SECOND,
    AudioInfo,
    AudioRejected,
    fmt_seconds,
)
from labelling.audio.probing import probe, samples_budget
from labelling.audio.resampling import StreamResampler

__all__ = ["decode", "decode_mono_16k"]


def _frame_tolerance(fmt: str, expected: int, sample_rate: int) -> int:
    """Frames a decode may fall short of the header's count before it counts as truncated.

    FLAC, WAV-family and OGG headers state exact lengths (up to codec priming); an MP3 without
    a Xing/Info tag only has an estimate from its first frame's bitrate, hence the wider margin.
    """
    share = 0.10 if fmt == "MP3" else 0.01
    return max(int(0.05 * sample_rate), int(share * expected))


def decode(
    path: Path,
    *,
    max_bytes: int,
    max_seconds: float,
    max_samples_per_second: int = DEFAULT_MAX_SAMPLES_PER_SECOND,
) -> tuple[np.ndarray, AudioInfo]:
    """probe() then a full decode, every channel at the file's own rate.

    Returns ``(samples, info)``: ``samples`` is float32 of shape (frames, channels) in [-1, 1]
    for integer subtypes; ``info.frames``/``duration_s`` are what was actually decoded.
    Holds the whole decoded file (frames x channels x 4 bytes, at most ``max_seconds x
    max_samples_per_second x 4``): callers that only need 16 kHz mono use
    ``decode_mono_16k``, which never does.
    """
    path = Path(path)
    info = probe(
        path,
        max_bytes=max_bytes,
        max_seconds=max_seconds,
        max_samples_per_second=max_samples_per_second,
    )
    try:
        samples, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, MemoryError) as exc:
        raise _decoder_error(info, exc) from exc
    decoded = int(samples.shape[0])
    _check_decoded_length(info, decoded)
    if not np.isfinite(samples).all():
        raise _non_finite()
    return samples, replace(info, frames=decoded, duration_s=decoded / info.sample_rate)


def decode_mono_16k(
    path: Path, *, max_bytes: int, max_seconds: float, max_samples_per_second: int
) -> tuple[np.ndarray, AudioInfo]:
    """probe(), then decode block by block straight into 16 kHz mono.

    Returns ``(mono, info)``: ``mono`` is float32 of shape (frames_16k,), equal (to float
    rounding) to ``to_mono_16k(decode(path)[0], rate)``; ``info`` describes the file as
    ``decode`` does (channels and rate of the original, frames actually decoded).

    Peak memory is the 16 kHz mono output plus one block of the input (``DECODE_BLOCK_FRAMES``
    frames x channels) and its resampling context, never the whole multichannel file: each
    block is mixed down, then resampled with ``StreamResampler``. A file that decodes to
    more audio than its header declared is stopped at the limits, not after. Refusals are
    those of ``decode``: truncated, empty, NaN/inf (``corrupt``), decoder errors.
    torch is imported only once a block has to be resampled, never for a refused header.
    """
    path = Path(path)
    info = probe(
        path,
        max_bytes=max_bytes,
        max_seconds=max_seconds,
        max_samples_per_second=max_samples_per_second,
    )
    # What the decode may reach whatever the header said (an MP3 header only estimates).
    frame_cap = min(
        int(max_seconds * info.sample_rate),
        samples_budget(max_seconds, max_samples_per_second) // info.channels,
    )
    resampler = StreamResampler(info.sample_rate)
    out = _GrowingArray(resampler.output_length(info.frames))
    decoded = 0
    try:
        with sf.SoundFile(str(path)) as reader:
            while True:
                block = reader.read(DECODE_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                if not np.isfinite(block).all():
                    raise _non_finite()
                decoded += int(block.shape[0])
                if decoded > frame_cap:
                    raise AudioRejected(
                        "too_long",
                        f"The file decodes to more than {fmt_seconds(max_seconds)} of audio, "
                        f"more than its header announced ({fmt_seconds(info.duration_s)}) and "
                        "over the limit. Please export it again and split it into shorter files.",
                    )
                out.extend(resampler.push(_mixdown(block)))
                del block
    except (sf.LibsndfileError, RuntimeError, ValueError, MemoryError) as exc:
        raise _decoder_error(info, exc) from exc
    out.extend(resampler.finish())
    _check_decoded_length(info, decoded)
    return out.array(), replace(info, frames=decoded, duration_s=decoded / info.sample_rate)


def _decoder_error(info: AudioInfo, exc: BaseException) -> AudioRejected:
    detail = str(exc).removeprefix("Error : ").rstrip(".")
    return AudioRejected(
        "corrupt",
        f"The {info.format} file is damaged and cannot be decoded ({detail}). "
        "Please export it again from the original recording.",
    )


def _non_finite() -> AudioRejected:
    return AudioRejected("corrupt", "The file contains invalid sample values (NaN or infinity).")


def _check_decoded_length(info: AudioInfo, decoded: int) -> None:
    """Refuse a decode that produced nothing, or clearly less than the header announced."""
    if decoded == 0:
        raise AudioRejected("empty", "The file decodes to no audio at all.")
    if info.frames - decoded > _frame_tolerance(info.format, info.frames, info.sample_rate):
        pct = 100 * decoded / info.frames
        raise AudioRejected(
            "truncated",
            f"Only {fmt_seconds(decoded / info.sample_rate)} of the announced "
            f"{fmt_seconds(info.duration_s)} could be decoded ({pct:.0f}%). The file is cut "
            "short; please upload the complete file.",
        )


def _mixdown(block: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,) float32, the channel mean (as ``to_mono_16k`` does)."""
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0], dtype=np.float32)
    mono: np.ndarray = block.mean(axis=1, dtype=np.float32)
    return mono


class _GrowingArray:
    """A float32 buffer filled in pieces, allocated once at the expected final size.

    Appending to a list and concatenating at the end would hold the output twice.
    """

    def __init__(self, expected: int) -> None:
        self._data = np.empty(max(0, expected), dtype=np.float32)
        self._size = 0

    def extend(self, piece: np.ndarray) -> None:
        end = self._size + piece.size
        if end > self._data.size:  # more than the header announced (an MP3 estimate)
            grown = np.empty(max(end, int(self._data.size * 1.25) + 1), dtype=np.float32)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : end] = piece
        self._size = end

    def array(self) -> np.ndarray:
        return self._data[: self._size]
