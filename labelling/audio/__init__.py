"""Audio ingestion: validate, decode, normalise, fingerprint and segment uploaded recordings.

Framework-free on purpose: no Django here, so the upload service, the Celery ingestion task,
management commands and the learner can all share it and it is tested without a database.
numpy and soundfile are imported at module level (cheap); torch, torchaudio and silero_vad are
imported inside the functions that need them, so importing this package (e.g. from a Django
view that only calls ``probe``) never loads PyTorch.

Everything that refuses a file raises ``AudioRejected`` with a stable ``code`` (stored on the
clip, shown in the UI, counted in ingestion reports) and a sentence meant for the uploader.

The rooms, each importing only those above it:

- ``base``: ``AudioRejected`` and its codes, ``AudioInfo``, ``SpeechSegment``, the canonical
  rate and the limits;
- ``containers``: chunk-header walking that finds a cut-short WAV/W64/AIFF;
- ``probing``: ``probe``, the header checks run before any decode;
- ``resampling``: ``to_mono_16k`` and the streaming resampler (torch, lazily);
- ``decoding``: ``decode`` and the memory-bounded ``decode_mono_16k``;
- ``canonical``: ``wav_bytes``, content hashes, waveform ``peaks``;
- ``segmentation``: ``segment_speech`` with silero-vad.

Callers import from ``labelling.audio``; the names below are its public interface.
"""

from __future__ import annotations

from labelling.audio.base import (
    ACCEPTED_FORMATS,
    CANONICAL_RATE,
    DECODE_BLOCK_FRAMES,
    DEFAULT_MAX_SAMPLES_PER_SECOND,
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    REJECT_CODES,
    AudioInfo,
    AudioRejected,
    SpeechSegment,
)
from labelling.audio.canonical import peaks, sha256_bytes, sha256_file, wav_bytes
from labelling.audio.decoding import decode, decode_mono_16k
from labelling.audio.probing import probe, samples_budget
from labelling.audio.resampling import to_mono_16k
from labelling.audio.segmentation import segment_speech

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
    "decode",
    "decode_mono_16k",
    "peaks",
    "probe",
    "samples_budget",
    "segment_speech",
    "sha256_bytes",
    "sha256_file",
    "to_mono_16k",
    "wav_bytes",
]
