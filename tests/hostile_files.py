"""Generators of hostile uploads for the ingestion tests.

Each function writes one file into ``directory`` and returns ``(path, expected_code)``, the
``AudioRejected.code`` that ``labelling.audio.decode`` must raise for it. All generators take
the same keyword limits as ``probe``/``decode`` so a test can loop over ``HOSTILE_CASES`` and
pass one set of limits to both; only ``too_long`` and ``too_large`` depend on them.

Files are synthesised (no EmoDB needed) and tiny (< 200 kB) except ``too_large``, which is
``max_bytes + 1`` bytes by construction: pass a small ``max_bytes``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

DEFAULT_MAX_BYTES = 150_000
DEFAULT_MAX_SECONDS = 5.0

HostileCase = Callable[..., tuple[Path, str]]


def _speechlike(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced-sounding test signal: 140 Hz harmonics under a syllable-rate envelope."""
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4 * t))
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.2 * voice * envelope + noise).astype(np.float32)


def text_named_wav(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """A plain-text file with a .wav name (a renamed transcript)."""
    path = directory / "transcript.wav"
    path.write_text("speaker A: hello, this is not audio at all\n" * 20, encoding="utf-8")
    return path, "not_audio"


def random_bytes_flac(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """64 kB of random bytes named .flac (seeded, so libsndfile's answer is reproducible)."""
    path = directory / "noise.flac"
    path.write_bytes(np.random.default_rng(1234).integers(0, 256, 65536, dtype=np.uint8).tobytes())
    return path, "not_audio"


def truncated_wav(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """A real 2 s PCM_16 WAV cut in half: the data chunk declares twice the bytes present.

    libsndfile reads such a file without complaint (1 s of audio); only the chunk check in
    ``probe`` catches it.
    """
    path = directory / "cut.wav"
    sf.write(path, _speechlike(2.0), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, "truncated"


def zero_byte_wav(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    path = directory / "zero.wav"
    path.write_bytes(b"")
    return path, "empty"


def header_only_wav(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """A well-formed WAV header with a zero-length data chunk (a recorder stopped at once)."""
    path = directory / "no_frames.wav"
    sf.write(path, np.zeros((0, 1), dtype=np.float32), 16000, subtype="PCM_16")
    return path, "empty"


def too_long_wav(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """A complete WAV one second longer than max_seconds, 8 kHz 8-bit to stay small."""
    rate = 8000
    frames = int((max_seconds + 1.0) * rate)
    if 44 + frames >= max_bytes:
        raise ValueError("max_bytes too small for a too_long file that is not also too_large")
    path = directory / "long.wav"
    sf.write(path, _speechlike(frames / rate, rate), rate, subtype="PCM_U8")
    return path, "too_long"


def too_large_wav(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """A valid 16 kHz PCM_16 WAV of at least max_bytes + 1 bytes."""
    frames = max_bytes // 2 + 1
    path = directory / "large.wav"
    sf.write(path, _speechlike(frames / 16000), 16000, subtype="PCM_16")
    assert path.stat().st_size > max_bytes
    return path, "too_large"


def fake_m4a(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """The first bytes of an iPhone voice memo: an MP4 'ftyp' box (M4A brand), then an mdat."""
    ftyp = struct.pack(">I4s4sI", 28, b"ftyp", b"M4A ", 0) + b"M4A mp42isom"
    payload = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    mdat = struct.pack(">I4s", 8 + len(payload), b"mdat") + payload
    path = directory / "voice_memo.m4a"
    path.write_bytes(ftyp + mdat)
    return path, "unsupported_format"


def fake_m4a_named_wav(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """The same MP4 bytes renamed .wav: the 'ftyp' box, not the name, gives it away."""
    path, code = fake_m4a(directory)
    return path.rename(directory / "voice_memo.wav"), code


def sun_au_file(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """A valid Sun/NeXT AU file: libsndfile reads it, ACCEPTED_FORMATS does not list it."""
    path = directory / "clip.au"
    sf.write(path, _speechlike(0.5), 16000, format="AU", subtype="PCM_16")
    return path, "unsupported_format"


def apple_caf_file(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """A valid Core Audio (CAF) file, readable by libsndfile but not accepted."""
    path = directory / "clip.caf"
    sf.write(path, _speechlike(0.5), 16000, format="CAF", subtype="PCM_16")
    return path, "unsupported_format"


def corrupt_flac(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """A valid 2 s FLAC with 1 kB of random bytes written over its middle.

    Reported as ``corrupt``: the headers are intact (probe passes), then libsndfile's FLAC
    decoder raises "lost sync" when it reaches the garbage, and decode maps decoder errors to
    ``corrupt``. (It never returns a short read here, which would have been ``truncated``.)
    """
    path = directory / "damaged.flac"
    sf.write(path, _speechlike(2.0), 16000, format="FLAC", subtype="PCM_16")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 1024] = (
        np.random.default_rng(99).integers(0, 256, 1024, dtype=np.uint8).tobytes()
    )
    path.write_bytes(bytes(data))
    return path, "corrupt"


def truncated_flac(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """A valid FLAC cut in half.

    Reported as ``corrupt``, not ``truncated``: libsndfile raises "lost sync" on the partial
    last frame instead of returning the frames before it, and a decoder error cannot be told
    apart from damage in the middle without a FLAC parser of our own.
    """
    path = directory / "cut.flac"
    sf.write(path, _speechlike(2.0), 16000, format="FLAC", subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, "corrupt"


def flac_without_length(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """A FLAC whose STREAMINFO says "total samples unknown" (as some streaming encoders write).

    libsndfile reports 2**63 - 1 frames for it and then fails to read it, so it is ``corrupt``
    (and not ``too_long``, which that frame count would otherwise suggest).
    """
    path = directory / "streamed.flac"
    sf.write(path, _speechlike(0.5), 16000, format="FLAC", subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC"
    assert data[4] & 0x7F == 0  # STREAMINFO is the first metadata block
    # STREAMINFO starts at byte 8; total_samples is its 36 bits from bit 108 (byte 13, low
    # nibble, then bytes 14-17).
    data[21] &= 0xF0
    data[22:26] = b"\0\0\0\0"
    path.write_bytes(bytes(data))
    return path, "corrupt"


def nan_float_wav(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """A 32-bit float WAV with NaN and infinity among its samples."""
    samples = _speechlike(0.5)
    samples[100] = np.nan
    samples[200] = np.inf
    path = directory / "nan.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    return path, "corrupt"


def absurd_rate_wav(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """A WAV whose header claims a 1 Hz sample rate (bit rot in the fmt chunk)."""
    path = directory / "rate1.wav"
    sf.write(path, _speechlike(0.2), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", 1)  # fmt chunk: sample rate field of a canonical header
    path.write_bytes(bytes(data))
    return path, "corrupt"


def damaged_wav_header(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """'RIFF....WAVE' with an overwritten fmt chunk: a WAV, but unreadable -> corrupt."""
    path = directory / "badfmt.wav"
    sf.write(path, _speechlike(0.2), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[20:36] = b"\xff" * 16
    path.write_bytes(bytes(data))
    return path, "corrupt"


def wide_flac(
    directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Path, str]:
    """A few kB of FLAC silence declaring 8 channels at 384 kHz (a decode bomb in miniature).

    Within the duration limit, but its frames x channels exceed max_seconds x 384,000
    samples (the default EMOLOOP_MAX_SAMPLES_PER_SECOND): refused from the header.
    """
    rate, channels = 384_000, 8
    seconds = min(max_seconds, max(0.1, 384_000 * max_seconds / (rate * channels) * 1.5))
    path = directory / "wide.flac"
    sf.write(path, np.zeros((int(seconds * rate), channels), np.int16), rate, subtype="PCM_16")
    return path, "too_large"


HOSTILE_CASES: tuple[HostileCase, ...] = (
    text_named_wav,
    random_bytes_flac,
    truncated_wav,
    zero_byte_wav,
    header_only_wav,
    too_long_wav,
    too_large_wav,
    fake_m4a,
    fake_m4a_named_wav,
    sun_au_file,
    apple_caf_file,
    corrupt_flac,
    truncated_flac,
    flac_without_length,
    nan_float_wav,
    absurd_rate_wav,
    damaged_wav_header,
    wide_flac,
)
