"""Voice-activity segmentation: a long 16 kHz mono recording cut into speech segments.

silero-vad (a JIT model shipped in its wheel) is loaded once per process on first use and
called under a lock, since it keeps recurrent state between calls. torch and silero_vad are
imported inside the functions that need them. Segments longer than the limit are split at
their quietest point (``_split_at_quiet``, plain numpy).
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from labelling.audio.base import CANONICAL_RATE, SpeechSegment

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["segment_speech"]

_VAD_LOCK = threading.Lock()
_VAD_MODEL: Any = None
_VAD_TIMESTAMPS: Callable[..., list[dict[str, float]]] | None = None
_VAD_THRESHOLD = 0.5  # silero's documented default; neg_threshold = threshold - 0.15


def _vad_model() -> tuple[Any, Callable[..., list[dict[str, float]]]]:
    """Load silero-vad from the JIT file inside its wheel, once per process (caller holds lock)."""
    global _VAD_MODEL, _VAD_TIMESTAMPS
    if _VAD_MODEL is None:
        import torch

        # `import silero_vad` runs torch.set_num_threads(1) for the whole process, which would
        # silently slow every later torch op (feature extraction, training) in this worker.
        threads = torch.get_num_threads()
        try:
            import silero_vad
        finally:
            torch.set_num_threads(threads)
        with warnings.catch_warnings():
            # torch.jit.load is deprecated in favour of torch.export (the wheel ships JIT only),
            # and silero's loader uses the deprecated importlib.resources.path. Neither is ours.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            model = silero_vad.load_silero_vad(onnx=False)
        _VAD_TIMESTAMPS = silero_vad.get_speech_timestamps_from_probs
        _VAD_MODEL = model
    assert _VAD_TIMESTAMPS is not None
    return _VAD_MODEL, _VAD_TIMESTAMPS


def _speech_probs(mono16k: np.ndarray) -> np.ndarray:
    """Silero speech probability per 512-sample frame, shape (ceil(len / 512),)."""
    import torch

    with _VAD_LOCK:  # the model keeps recurrent state between calls: one caller at a time
        model, _ = _vad_model()
        with torch.inference_mode():
            # audio_forward resets the state, zero-pads the tail and runs the frames in order:
            # the same probabilities as get_speech_timestamps' Python loop, in one call.
            probs = model.audio_forward(torch.from_numpy(mono16k).unsqueeze(0), CANONICAL_RATE)
    result: np.ndarray = probs.reshape(-1).numpy().astype(np.float64)
    return result


def segment_speech(
    mono16k: np.ndarray,
    *,
    min_speech_s: float = 0.5,
    min_silence_s: float = 0.3,
    pad_s: float = 0.1,
    max_segment_s: float = 30.0,
) -> list[SpeechSegment]:
    """Split a long 16 kHz mono recording into speech segments with silero-vad.

    ``min_silence_s`` is the pause that ends a segment (shorter pauses stay inside it),
    ``min_speech_s`` drops shorter bursts (coughs, clicks), ``pad_s`` widens each segment on
    both sides (halved between segments closer than 2 * pad_s so they never overlap).
    Segments longer than ``max_segment_s`` are split at their quietest point (lowest
    short-time energy), recursively, so a cut falls in a breath rather than mid-word.
    Returns segments sorted by start, non-overlapping, within [0, len / 16000].
    """
    audio = np.ascontiguousarray(mono16k, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected a 1-D 16 kHz mono array, got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("samples contain NaN or infinity")
    if max_segment_s <= 0 or min_speech_s < 0 or min_silence_s < 0 or pad_s < 0:
        raise ValueError("durations must be non-negative and max_segment_s positive")
    if audio.size == 0:
        return []

    probs = _speech_probs(audio)
    with _VAD_LOCK:
        _, from_probs = _vad_model()
    raw = from_probs(
        probs.tolist(),
        sampling_rate=CANONICAL_RATE,
        threshold=_VAD_THRESHOLD,
        min_speech_duration_ms=min_speech_s * 1000,
        min_silence_duration_ms=min_silence_s * 1000,
        speech_pad_ms=pad_s * 1000,
        audio_length_samples=int(audio.size),
    )
    max_len = max(1, int(max_segment_s * CANONICAL_RATE))
    too_long = any(s["end"] - s["start"] > max_len for s in raw)
    energy = _short_time_energy_db(audio) if too_long else None

    spans: list[tuple[int, int]] = []
    for s in raw:
        start = max(0, int(s["start"]))
        end = min(int(audio.size), int(s["end"]))
        if end <= start:
            continue
        if end - start > max_len and energy is not None:
            spans.extend(_split_at_quiet(start, end, max_len, energy))
        else:
            spans.append((start, end))
    spans.sort()
    duration = audio.size / CANONICAL_RATE
    return [
        SpeechSegment(
            start_s=round(start / CANONICAL_RATE, 3),
            end_s=min(round(end / CANONICAL_RATE, 3), duration),
        )
        for start, end in spans
    ]


_ENERGY_HOP = 160  # 10 ms at 16 kHz
_ENERGY_SMOOTH = 15  # frames (150 ms): pick a pause, not the closure of one plosive


def _short_time_energy_db(audio: np.ndarray) -> np.ndarray:
    """Smoothed log energy per 10 ms hop, shape (ceil(len / 160),)."""
    n = math.ceil(audio.size / _ENERGY_HOP)
    padded = np.zeros(n * _ENERGY_HOP, dtype=np.float64)
    padded[: audio.size] = audio
    power = (padded.reshape(n, _ENERGY_HOP) ** 2).mean(axis=1)
    kernel = np.ones(_ENERGY_SMOOTH) / _ENERGY_SMOOTH
    smoothed = np.convolve(power, kernel, mode="same")
    return 10.0 * np.log10(smoothed + 1e-12)


def _split_at_quiet(
    start: int, end: int, max_len: int, energy_db: np.ndarray
) -> list[tuple[int, int]]:
    """Cut [start, end) into pieces of at most max_len samples at energy minima."""
    pieces: list[tuple[int, int]] = []
    while end - start > max_len:
        if end - start <= 2 * max_len:
            # One cut suffices: anywhere that leaves both sides <= max_len.
            lo, hi = end - max_len, start + max_len
        else:
            # Take the quietest point in the second half of the first allowed window, so the
            # first piece is at least max_len / 2 long, then continue with the rest.
            lo, hi = start + max_len // 2, start + max_len
        lo_f, hi_f = -(-lo // _ENERGY_HOP), hi // _ENERGY_HOP
        if hi_f > lo_f:
            window = energy_db[lo_f:hi_f]
            # Among equally quiet frames, prefer the one closest to the window's middle.
            candidates = np.flatnonzero(window <= window.min() + 1e-9)
            middle = (len(window) - 1) / 2
            best = int(candidates[np.argmin(np.abs(candidates - middle))])
            cut = min(max((lo_f + best) * _ENERGY_HOP + _ENERGY_HOP // 2, lo), hi)
        else:
            cut = (lo + hi) // 2
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces
