"""Cached embeddings on disk, read by rows or blocks without a memory map.

A pool of a million 768-dimensional float32 embeddings is about 3 GB: too big to load, and
a memory map is no better than it looks. On recent kernels the page cache holds files in
large folios and a fault maps the whole folio into the process, so gathering 10,000 random
rows from a memory-mapped 0.9 GB file left the whole 0.9 GB resident in the process
(measured with VmRSS on Linux 6.18). `NpyRows` reads exactly the rows it is asked for with
`os.pread`, so a process's memory is what it holds, not what it once touched.

Strategies accept a `NpyRows` wherever a Pool takes `embeddings`; the diversity step reads
only its candidate rows, and `blocks()` feeds `rescore.predict_pool` in order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np


class NpyRows:
    """Read-only (n, d) view of a C-order 2-D .npy file: `rows()`, `blocks()`, `head()`.

    Indexing with an integer array (`store[positions]`) is `rows(positions)`, which is all
    the ranking code asks of its embeddings.
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
        self.dtype = np.dtype(dtype)
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
