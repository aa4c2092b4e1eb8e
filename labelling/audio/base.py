"""What every audio module shares: the refusal, the result types, the rates and the limits.

``AudioRejected`` carries a stable ``code`` (one of ``REJECT_CODES``: stored on the clip, shown
in the UI, counted in ingestion reports) and a sentence meant for the uploader. The limits
here are the ones a header is checked against before any decoding (``probing``) and the block
size the streaming decoder and resampler share (``decoding``, ``resampling``).

numpy-free and Django-free: stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACCEPTED_FORMATS",
    "CANONICAL_RATE",
    "DECODE_BLOCK_FRAMES",
    "DEFAULT_MAX_SAMPLES_PER_SECOND",
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "REJECT_CODES",
    "AudioInfo",
    "AudioRejected",
    "SpeechSegment",
    "fmt_bytes",
    "fmt_seconds",
]

REJECT_CODES = (
    "not_audio",
    "unsupported_format",
    "empty",
    "truncated",
    "corrupt",
    "too_long",
    "too_large",
)

# soundfile "major formats" we take. Everything else libsndfile can read (AU, CAF, VOC, PAF,
# MAT, raw headers, ...) is refused: nobody records speech in those, and each extra container
# is one more parser an untrusted upload can reach.
ACCEPTED_FORMATS: frozenset[str] = frozenset(
    {"WAV", "WAVEX", "W64", "RF64", "FLAC", "OGG", "MP3", "AIFF"}
)

CANONICAL_RATE = 16000
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 384000
# Not in the brief's list of checks, but a header claiming hundreds of channels is either
# corrupt or hostile (decoded size = frames x channels x 4 bytes), never a speech recording.
MAX_CHANNELS = 64
# The decoding work a file may ask for: frames x channels <= max_seconds x this. The default
# equals EMOLOOP_MAX_SAMPLES_PER_SECOND's (48 kHz x 8 channels, or 384 kHz mono, for the whole
# duration limit); Django callers pass the setting. A 400 kB FLAC of silence can declare
# 8 channels x 384 kHz x 119 s, which is 1.46 GB of float32 once decoded.
DEFAULT_MAX_SAMPLES_PER_SECOND = 384_000

# Frames read per block by the streaming decoder: 2 MB of float32 at 8 channels. The
# streaming resampler takes one such block per call, and segment cutting copies in blocks
# of this size too (labelling.services.ingest).
DECODE_BLOCK_FRAMES = 1 << 16


class AudioRejected(Exception):
    """A file refused at ingestion. `code` is one of REJECT_CODES; str(exc) is a clear sentence."""

    def __init__(self, code: str, message: str) -> None:
        if code not in REJECT_CODES:
            raise ValueError(f"unknown reject code {code!r}; expected one of {REJECT_CODES}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery pickles exceptions raised in tasks; the default reduce would pass only
        # `message` to __init__ and fail.
        return (type(self), (self.code, self.message))


@dataclass(frozen=True)
class AudioInfo:
    format: str  # soundfile major format, e.g. "WAV", "FLAC"
    subtype: str  # e.g. "PCM_16"
    sample_rate: int
    channels: int
    frames: int
    duration_s: float


@dataclass(frozen=True)
class SpeechSegment:
    start_s: float
    end_s: float


# Formatting for the sentences of AudioRejected.


def fmt_seconds(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def fmt_bytes(n: int) -> str:
    if n < 1000:
        return f"{n} bytes"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"
