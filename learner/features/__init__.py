"""Feature extractors by name: `acoustic` (default), `egemaps`, `compare`, `ssl`.

Framework-free: the settings an extractor needs (the SSL checkpoint path) are passed in by
the caller (learner.services.features reads them from learner.conf). Each extractor has a
`name`, a `version` (the cache key: a new version recomputes the vectors), a `dim`, a
`licence` and `extract(wave, sample_rate) -> (dim,) float32` on 16 kHz mono audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from learner.features.acoustic_set import AcousticExtractor as AcousticExtractor

# The acoustic set's name (acoustic.NAME). Its module imports torch, so it is imported when
# the set is used (get_extractor, AcousticExtractor), not with this package: Django start-up
# reads NAMES (learner.models) and must not load torch (tests/test_startup_imports.py).
DEFAULT = "acoustic"
NAMES = ("acoustic", "egemaps", "compare", "ssl")


class Extractor(Protocol):
    name: str
    version: str
    dim: int
    licence: str
    description: str

    def extract(self, wave: np.ndarray, sample_rate: int = 16000) -> np.ndarray: ...


class ExtractorUnavailable(RuntimeError):
    """The feature set cannot run here; the message says what is missing."""


@dataclass(frozen=True)
class ExtractorOptions:
    ssl_checkpoint: str = ""
    ssl_arch: str = "wav2vec2_base"


def get_extractor(name: str, options: ExtractorOptions | None = None) -> Extractor:
    """The extractor called `name`; ExtractorUnavailable when it cannot run here, ValueError
    when no feature set has that name."""
    options = options or ExtractorOptions()
    if name == "acoustic":
        from learner.features.acoustic_set import AcousticExtractor as AcousticExtractor

        return AcousticExtractor()
    if name in ("egemaps", "compare"):
        from learner.features.opensmile_sets import OpenSmileExtractor, OpenSmileUnavailable

        try:
            return OpenSmileExtractor(name)
        except OpenSmileUnavailable as exc:
            raise ExtractorUnavailable(f"{name} is unavailable: {exc}") from exc
    if name == "ssl":
        from learner.features.ssl import CheckpointError, SslExtractor

        try:
            return SslExtractor(options.ssl_checkpoint, options.ssl_arch)
        except CheckpointError as exc:
            raise ExtractorUnavailable(f"ssl is unavailable: {exc}") from exc
    raise ValueError(f"unknown feature set {name!r}; known: {', '.join(NAMES)}")


def describe(options: ExtractorOptions | None = None) -> list[dict[str, object]]:
    """Every feature set with whether it can run here and why not."""
    out: list[dict[str, object]] = []
    for name in NAMES:
        try:
            ex = get_extractor(name, options)
        except ExtractorUnavailable as exc:
            out.append({"name": name, "available": False, "reason": str(exc)})
        else:
            out.append(
                {
                    "name": name,
                    "available": True,
                    "version": ex.version,
                    "dim": ex.dim,
                    "licence": ex.licence,
                    "description": ex.description,
                }
            )
    return out


def __getattr__(name: str) -> Any:
    """`learner.features.AcousticExtractor`, imported on first use (torch)."""
    if name == "AcousticExtractor":
        from learner.features.acoustic_set import AcousticExtractor as AcousticExtractor

        return AcousticExtractor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
