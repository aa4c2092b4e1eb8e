"""Bench-only helpers for bench/rank_scale.py: embeddings read from a .npy file without a
memory map (`NpyRows`), and a whole pool pushed through a model block by block
(`predict_pool`).

They live here, not in `learner.ranking`, because nothing in the product uses them: the
learner holds its embeddings in memory, and `learner.ranking.Pool` accepts anything shaped
like `learner.ranking.EmbeddingRows` (a 2-D array, a memmap or an `NpyRows`). Tested in
tests/ranking/test_rank_support.py.

Why not a memory map: a pool of a million 768-dimensional float32 embeddings is about 3 GB,
too big to load, and a memory map is no better than it looks. On recent kernels the page
cache holds files in large folios and a fault maps the whole folio into the process, so
gathering 10,000 random rows from a memory-mapped 0.9 GB file left the whole 0.9 GB
resident in the process (measured with VmRSS on Linux 6.18). `NpyRows` reads exactly the
rows it is asked for with `os.preadv`, so a process's memory is what it holds, not what it
once touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from learner.ranking import Predict


class NpyRows:
    """Read-only (n, d) view of a C-order 2-D .npy file: `rows()`, `blocks()`, `head()`.

    Indexing with an integer array (`store[positions]`) is `rows(positions)`, which is all
    the ranking code asks of its embeddings (`learner.ranking.EmbeddingRows`).
    """

    def __init__(self, path: str | os.PathLike[str], n: int | None = None) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            self._offset = f.tell()
        if len(shape) != 2 or fortran:
            raise ValueError(f"{self.path} must hold a C-order 2-D array, got shape {shape}")
        rows = shape[0] if n is None else n
        if not 0 <= rows <= shape[0]:
            raise ValueError(f"{self.path} has {shape[0]} rows; cannot view the first {n}")
        self.dtype: np.dtype[Any] = np.dtype(dtype)
        self.shape = (int(rows), int(shape[1]))
        self._row_bytes = self.shape[1] * self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"NpyRows({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def head(self, n: int) -> NpyRows:
        """The first n rows, as another view of the same file."""
        return NpyRows(self.path, n)

    def _read(self, fd: int, first: int, count: int) -> np.ndarray:
        """Rows first..first+count-1 into a fresh writable (count, d) array."""
        out = np.empty((count, self.shape[1]), dtype=self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        offset = self._offset + first * self._row_bytes
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], offset + done)
            if got == 0:
                raise ValueError(f"{self.path} ended early (truncated file?)")
            done += got
        return out

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """(m,) row positions -> (m, d) rows in the order asked, a fresh array.

        Reads in file order, one pread per run of consecutive positions.
        """
        pos = np.asarray(positions)
        if pos.ndim != 1 or not np.issubdtype(pos.dtype, np.integer):
            raise ValueError("positions must be a 1-D integer array")
        if len(pos) and (pos.min() < 0 or pos.max() >= self.shape[0]):
            raise ValueError(f"positions fall outside 0..{self.shape[0] - 1}")
        out = np.empty((len(pos), self.shape[1]), dtype=self.dtype)
        if not len(pos):
            return out
        order = np.argsort(pos, kind="stable")
        ordered = pos[order]
        # Runs of consecutive (or repeated) positions share one read.
        breaks = np.flatnonzero(np.diff(ordered) > 1) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(ordered)]])
        with open(self.path, "rb") as f:
            fd = f.fileno()
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
                first = int(ordered[a])
                block = self._read(fd, first, int(ordered[b - 1]) - first + 1)
                out[order[a:b]] = block[ordered[a:b] - first]
        return out

    def __getitem__(self, positions: np.ndarray) -> np.ndarray:
        return self.rows(positions)

    def blocks(self, rows: int = 65_536) -> Iterator[np.ndarray]:
        """Successive (<= rows, d) blocks from the start, in order."""
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        with open(self.path, "rb") as f:
            fd = f.fileno()
            for first in range(0, self.shape[0], rows):
                yield self._read(fd, first, min(rows, self.shape[0] - first))


def _stack(parts: list[np.ndarray], name: str) -> np.ndarray:
    if not parts:
        raise ValueError("no embeddings were given")
    widths = {p.shape[1:] for p in parts}
    if len(widths) != 1:
        raise ValueError(f"{name} changed shape between blocks: {sorted(widths)}")
    return np.concatenate(parts, axis=0)


def predict_pool(
    predict: Predict, blocks: Iterable[np.ndarray]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply `predict` block by block -> (n, c_core) and (n, c_fine) or None, float32.

    `blocks` is, e.g., `NpyRows.blocks()` or `learner.ranking.row_blocks(array)`.
    """
    core: list[np.ndarray] = []
    fine: list[np.ndarray] = []
    with_fine: bool | None = None
    for block in blocks:
        p_core, p_fine = predict(block)
        if len(p_core) != len(block) or (p_fine is not None and len(p_fine) != len(block)):
            raise ValueError("predict returned a different number of rows than it was given")
        if with_fine is None:
            with_fine = p_fine is not None
        elif with_fine != (p_fine is not None):
            raise ValueError("predict returned fine probabilities for some blocks only")
        core.append(np.asarray(p_core, dtype=np.float32))
        if p_fine is not None:
            fine.append(np.asarray(p_fine, dtype=np.float32))
    return _stack(core, "core probabilities"), (
        _stack(fine, "fine probabilities") if with_fine else None
    )
