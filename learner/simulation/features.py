"""Feature vectors of a corpus: every clip once (plus the learner's augmented training copies
when asked), cached in an .npz keyed by extractor name, version and the files' sha256."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Framework-free (labelling.audio imports torch lazily).
from labelling.audio import decode, to_mono_16k
from learner import augment
from learner.features import DEFAULT as DEFAULT_FEATURES
from learner.features import Extractor, ExtractorOptions, get_extractor
from learner.simulation.corpus import Corpus, CorpusError
from learner.threads import torch_threads

CACHE_FORMAT = "emoloop-simulation-features/1"


@dataclass
class Features:
    """Per-clip vectors: (N, D) plain, and (N, D) per augmented copy (copy numbers from 1)."""

    plain: np.ndarray
    augmented: list[np.ndarray]
    extractor: dict[str, Any]  # {"name", "version", "dim"}
    seconds: float  # extraction time (0 when read from the cache)
    cache_file: Path | None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_wave(path: Path) -> np.ndarray:
    """Any audio file the platform ingests -> (samples,) float32 16 kHz mono."""
    samples, info = decode(path, max_bytes=2**40, max_seconds=24 * 3600.0)
    return to_mono_16k(samples, info.sample_rate)


def compute_features(
    corpus: Corpus,
    extractor: str | Extractor = DEFAULT_FEATURES,
    *,
    copies: int = 0,
    cache_dir: str | Path | None = None,
    progress: Callable[[Iterable[Any], str, int], Iterable[Any]] | None = None,
    options: ExtractorOptions | None = None,
) -> Features:
    """Vectors of every clip (and of `copies` augmented copies), cached when `cache_dir`.

    The cache file name carries the extractor's name and version, the augmentation version
    and a digest of every file's sha256 in corpus order, so a changed file, extractor or
    augmentation recomputes. `progress(iterable, description, total)` wraps the loops
    (tqdm in the command).
    """
    ex = get_extractor(extractor, options) if isinstance(extractor, str) else extractor
    info = {"name": ex.name, "version": ex.version, "dim": int(ex.dim)}
    wrap = progress or (lambda it, desc, total: it)
    hashes = [_sha256(p) for p in wrap(corpus.files, "hashing audio", len(corpus))]
    digest = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:16]
    aug_tag = f"-aug{augment.VERSION}x{copies}" if copies else ""
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"{ex.name}-v{ex.version}{aug_tag}-{digest}.npz"
        if cache_file.is_file():
            with np.load(cache_file, allow_pickle=False) as data:
                if str(data["format"]) == CACHE_FORMAT and list(data["hashes"]) == hashes:
                    return Features(
                        plain=data["plain"],
                        augmented=[data[f"copy{k}"] for k in range(1, copies + 1)],
                        extractor=info,
                        seconds=0.0,
                        cache_file=cache_file,
                    )
    config = augment.AugmentConfig(copies=copies) if copies else None
    plain = np.zeros((len(corpus), ex.dim), dtype=np.float32)
    copies_x = [np.zeros_like(plain) for _ in range(copies)]
    started = time.perf_counter()
    with torch_threads(1):
        for i in wrap(range(len(corpus)), f"{ex.name} features", len(corpus)):
            wave = read_wave(corpus.files[i])
            plain[i] = ex.extract(wave)
            if config is not None:
                # Seeded by content as in learner.services.features: the same copy every run.
                seed = int(hashes[i][:8], 16)
                for k in range(1, copies + 1):
                    copies_x[k - 1][i] = ex.extract(augment.augment(wave, k, config, seed))
    seconds = time.perf_counter() - started
    if not np.isfinite(plain).all() or any(not np.isfinite(c).all() for c in copies_x):
        raise CorpusError(f"{ex.name} returned NaN or infinite values for some clips")
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            format=np.array(CACHE_FORMAT),
            hashes=np.array(hashes),
            plain=plain,
            allow_pickle=False,  # plain arrays only, as the reader above insists
            **{f"copy{k}": copies_x[k - 1] for k in range(1, copies + 1)},
        )
        tmp.replace(cache_file)  # atomic: a half-written cache is never read
    return Features(plain, copies_x, info, seconds, cache_file)
