"""The pool a query strategy ranks: the unlabelled clips as arrays aligned by row, checked
once when the `Pool` is built so that every strategy can trust its input.

`Pool` holds the model's probabilities (core ring, finest ring, MC-dropout passes), the
embeddings, the clips' metadata groups (for coverage quotas) and the embeddings of what is
already labelled. Construction refuses bad input with a ValueError: wrong shapes, an empty
pool, non-floating arrays, probabilities that are negative, infinite, NaN (outside the fine
ring's all-NaN "no prediction" rows) or that do not sum to 1 within PROB_ATOL. The
probability checks run in CHUNK_ROWS row blocks, like the uncertainty pass in `strategies`,
so a million-row pool needs no full-size temporaries.

`EmbeddingRows` is what the pool asks of its (n, d) embeddings, so that pools too big for
memory can be read from disk a candidate set at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np

# Rows per chunk for the probability checks here and the uncertainty pass in `strategies`:
# a float64 (CHUNK_ROWS, c) block is 44 MB at c = 21, which keeps peak memory flat whatever
# the pool size.
CHUNK_ROWS = 262_144
# Rows of probabilities must sum to 1 within this (float32 calibrated outputs, rounded).
PROB_ATOL = 1e-3


@runtime_checkable
class EmbeddingRows(Protocol):
    """What a Pool asks of its (n, d) embeddings: a numpy array, a np.memmap, or a reader
    that fetches rows from disk on demand (bench/rank_support.py's `NpyRows`, for pools too
    big for memory).

    `rows[positions]` with a (m,) integer array returns the (m, d) rows in the order asked.
    Only candidate sets are read this way; the whole (n, d) block is never scanned.
    """

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def ndim(self) -> int: ...

    @property
    def dtype(self) -> np.dtype[Any]: ...

    def __getitem__(self, positions: np.ndarray, /) -> np.ndarray: ...


def _is_floating(dtype: Any) -> bool:
    """Whether `dtype` is a numpy floating dtype. False for what numpy cannot read as a
    dtype (another library's tensor passes the structural `EmbeddingRows` check), so that
    the Pool refuses it with a ValueError rather than a TypeError."""
    try:
        return bool(np.issubdtype(np.dtype(dtype), np.floating))
    except TypeError:
        return False


def _check_probs(
    name: str, probs: np.ndarray, shape: tuple[int, ...], *, missing_rows: bool
) -> None:
    """Probabilities along the last axis: finite, >= 0, summing to 1. Checked in chunks
    of rows, so a million-row pool needs no full-size temporaries.

    missing_rows: a row of all NaN means "no prediction at this ring" and is allowed.
    """
    if probs.shape[:-1] != shape or probs.ndim != len(shape) + 1:
        expected = ", ".join(str(s) for s in shape)
        raise ValueError(f"{name} must have shape ({expected}, c), got {probs.shape}")
    if probs.shape[-1] < 2:
        raise ValueError(f"{name} needs at least 2 classes, got {probs.shape[-1]}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"{name} must be floating point, got {probs.dtype}")
    n = shape[-1]
    for start in range(0, n, CHUNK_ROWS):
        chunk = probs[..., start : start + CHUNK_ROWS, :]
        nan = np.isnan(chunk)
        if missing_rows:
            all_nan = nan.all(axis=-1)
            if (nan.any(axis=-1) & ~all_nan).any():
                raise ValueError(f"{name} has rows with some NaN entries (all NaN or none)")
            rows = chunk[~all_nan] if all_nan.any() else chunk
        elif nan.any():
            raise ValueError(f"{name} contains NaN")
        else:
            rows = chunk
        if np.isinf(rows).any() or (rows < -PROB_ATOL).any():
            raise ValueError(f"{name} has infinite or negative entries")
        sums = rows.sum(axis=-1, dtype=np.float64)
        bad = np.abs(sums - 1.0) > PROB_ATOL
        if bad.any():
            worst = float(sums.flat[np.argmax(np.abs(sums - 1.0))])
            raise ValueError(
                f"{name}: {int(bad.sum())} rows do not sum to 1 (worst sums to {worst:.6f}); "
                "pass calibrated probabilities, not logits"
            )


@dataclass(frozen=True)
class Pool:
    """The unlabelled clips a strategy ranks, as arrays aligned by row (n clips).

    probs_core: (n, c_core) calibrated core-ring probabilities; None before any model.
    probs_fine: (n, c_fine) finest-ring probabilities, or None; a row of NaN = this clip has
        no fine prediction (its uncertainty is then the core ring's alone).
    embeddings: (n, d) feature embeddings, float32: an array, or for pools too big for
        memory any `EmbeddingRows` reader over the cached .npy (read a candidate set at a
        time, never scanned whole; a np.memmap works too but keeps what it touched
        resident).
    mc_probs_core: (T, n, c_core) probabilities from T stochastic (MC-dropout) passes; bald.
    mc_probs_fine: (T, n, c_fine) the same for the fine head, optional; NaN rows as above.
    groups: metadata name (speaker, gender, age_band, language, channel) -> (n,) labels.
    labelled_embeddings: (L, d) embeddings of clips already labelled, optional: the
        diversity strategies then avoid what is already covered (O(M x L x d) once).

    Construction validates shapes and probabilities and raises ValueError on bad input.
    """

    probs_core: np.ndarray | None
    probs_fine: np.ndarray | None
    embeddings: np.ndarray | EmbeddingRows
    mc_probs_core: np.ndarray | None = None
    mc_probs_fine: np.ndarray | None = None
    groups: Mapping[str, np.ndarray] = field(default_factory=dict)
    labelled_embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        emb = self.embeddings
        if not isinstance(emb, np.ndarray | EmbeddingRows) or emb.ndim != 2:
            raise ValueError(
                "embeddings must be a 2-D (n, d) numpy array, memmap or EmbeddingRows reader"
            )
        if not _is_floating(emb.dtype):
            raise ValueError(f"embeddings must be floating point, got {emb.dtype}")
        n = emb.shape[0]
        if n == 0:
            raise ValueError("the pool is empty")
        # Lists and other array-likes become arrays once, here (no copy for arrays).
        for name in ("probs_core", "probs_fine", "mc_probs_core", "mc_probs_fine"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, np.asarray(value))
        if self.probs_core is None:
            if self.probs_fine is not None or self.mc_probs_core is not None:
                raise ValueError("fine or MC probabilities without core probabilities")
        else:
            _check_probs("probs_core", self.probs_core, (n,), missing_rows=False)
        if self.probs_fine is not None:
            _check_probs("probs_fine", self.probs_fine, (n,), missing_rows=True)
        if self.mc_probs_fine is not None and self.probs_fine is None:
            raise ValueError("mc_probs_fine given without probs_fine")
        for name, mc, point in (
            ("mc_probs_core", self.mc_probs_core, self.probs_core),
            ("mc_probs_fine", self.mc_probs_fine, self.probs_fine),
        ):
            if mc is None:
                continue
            if mc.ndim != 3 or mc.shape[0] < 2:
                raise ValueError(f"{name} must have shape (T >= 2, n, c), got {mc.shape}")
            _check_probs(name, mc, (mc.shape[0], n), missing_rows=name == "mc_probs_fine")
            if point is not None and mc.shape[2] != point.shape[1]:
                raise ValueError(f"{name} and its point probabilities have different class counts")
        groups = {}
        for key, labels in self.groups.items():
            column = np.asarray(labels)
            if column.shape != (n,):
                raise ValueError(f"groups[{key!r}] must have shape ({n},), got {column.shape}")
            groups[key] = column
        object.__setattr__(self, "groups", MappingProxyType(groups))
        if self.labelled_embeddings is not None:
            labelled = np.asarray(self.labelled_embeddings)
            if labelled.ndim != 2 or labelled.shape[1] != emb.shape[1]:
                raise ValueError(
                    f"labelled_embeddings must have shape (L, {emb.shape[1]}), got {labelled.shape}"
                )
            object.__setattr__(self, "labelled_embeddings", labelled)

    @property
    def size(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def has_model(self) -> bool:
        return self.probs_core is not None
