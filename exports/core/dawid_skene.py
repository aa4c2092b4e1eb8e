"""crowd-kit's Dawid-Skene with its (ratings x labels) frames built a block at a time.

crowd-kit's `DawidSkene.fit` joins every rating with a row of label-wide floats in each EM
step: the E-step joins the log error matrices (ratings x labels), the M-step the posteriors
(ratings x labels), and the evidence lower bound (the stopping rule) joins the log errors,
adds the log priors in a copy and multiplies by the posteriors aligned to the ratings: three
to four frames of ratings x labels float64 alive at once. At the outer ring of the wheel
(72 labels, ~190,000 ratings on the 100,000-clip bench) that is 110 MB a frame and a worker
process of ~500 MB.

`BlockedDawidSkene` is crowd-kit's class with its own `fit` loop, initialisation and step
code; only the three step methods are called on blocks of the data, of at most
`BLOCK_CELLS` float cells each, instead of on the whole of it:

- E-step (`_e_step`, crowd-kit's): per block of *tasks* (at least two per block). A task's
  posterior comes from that task's ratings only (a grouped sum, then row-wise operations),
  so each task gets the same floats from its block as from the whole frame; the blocks are
  written into one (labels x tasks) array in task order, the layout and order crowd-kit's
  whole-frame result has.
- M-step (`_m_step`, crowd-kit's): per block of *true-label columns* of the posteriors.
  Each column of the error matrices is summed over the same rows in the same groups as for
  the whole frame (so pandas takes the same summation path: grouped sums of sorted groups
  go through `reduceat`, others through its compensated loop) and normalised per worker
  within that column; the columns are written into one array laid out as crowd-kit's.
  (Blocks of workers were tried first: a block holding one worker's rows takes pandas'
  other summation path and changes the last bit.)
- Evidence lower bound (`_evidence_lower_bound`, crowd-kit's): per block of label columns.
  The bound is a sum over labels (joint expectation and entropy alike), so the blocks'
  bounds add up to it; only the order of the float additions changes (~1e-15 of the value
  on the bench). crowd-kit uses the bound only to stop, when the gain per rating falls below
  `tol`: the fit could end one step apart only if a gain fell within those few ulps of `tol`
  (the bench's rings stop at the same step). The posteriors are clipped in place as crowd-kit's
  own bound does (its returned posteriors are the clipped ones).

Where a block would be the whole frame (small projects) crowd-kit's method runs unchanged.
The frame must come sorted by task (each task's ratings together): `aggregation.fit_coded`'s
always is; otherwise, and with an initial error matrix, the whole-frame methods run.
`tests/exports/test_export_ds_blocks.py` compares posteriors, error matrices and priors with
crowd-kit's own class to the bit, and the loss history to 1e-12, on random rings with blocks
down to two tasks and one column, and where the workers' rows come one worker after another.
Measured on the bench's outer ring: the worker's peak from ~500 MB to ~230 MB, the same CPU
time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pandas as pd
from crowdkit.aggregation.classification.dawid_skene import _EPS, DawidSkene

#: Float cells (8 bytes each) of the (ratings x labels) frame an E- or M-step block builds:
#: 8 MB (the evidence lower bound, slower per block, takes twice as many). Blocks are whole
#: tasks or whole label columns.
BLOCK_CELLS = 1 << 20


def _row_blocks(keys: np.ndarray, rows_per_block: int) -> Iterator[slice]:
    """Slices of consecutive rows, about `rows_per_block` long (sorted `keys`: a task's rows
    are together), never splitting the rows of one key and never holding a single key: a
    one-task frame takes other reduction paths in pandas and numpy (a 1-row sum over its
    labels is summed pairwise, a many-row one in column order), which could change the last
    bit of that task's posterior."""
    size = len(keys)
    start = 0
    while start < size:
        stop = min(size, start + rows_per_block)
        stop = int(np.searchsorted(keys, keys[stop - 1], side="right"))  # end of that key
        if stop < size and keys[start] == keys[stop - 1]:  # one key: take the next one too
            stop = int(np.searchsorted(keys, keys[stop], side="right"))
        if stop < size and keys[stop] == keys[-1]:  # one key would be left: take it too
            stop = size
        yield slice(start, stop)
        start = stop


class BlockedDawidSkene(DawidSkene):
    """crowd-kit's DawidSkene, each step on blocks of at most `block_cells` floats (module
    docstring): the same fit in a fraction of the memory."""

    block_cells: int = BLOCK_CELLS

    def fit(self, data: pd.DataFrame, *args: Any, **kwargs: Any) -> BlockedDawidSkene:
        tasks = data["task"].to_numpy()
        self._sorted = bool(len(tasks) < 2 or (tasks[1:] >= tasks[:-1]).all())
        super().fit(data, *args, **kwargs)
        return self

    def _blocked(self, data: pd.DataFrame, width: int) -> bool:
        return getattr(self, "_sorted", False) and len(data) * width > self.block_cells

    def _e_step(  # type: ignore[override]
        self, data: pd.DataFrame, priors: pd.Series, errors: pd.DataFrame
    ) -> pd.DataFrame:
        if not self._blocked(data, errors.shape[1]):
            return DawidSkene._e_step(data, priors, errors)
        tasks = data["task"].to_numpy()
        rows = max(1, self.block_cells // errors.shape[1])
        # What pd.concat of the blocks would give (one float block, labels x tasks, tasks in
        # order), filled block by block instead of holding every block and their copy.
        values: np.ndarray | None = None
        index, columns, done = [], None, 0
        for block in _row_blocks(tasks, rows):
            part = DawidSkene._e_step(data.iloc[block], priors, errors)
            if values is None:
                n_tasks = 1 + int(np.count_nonzero(tasks[1:] != tasks[:-1]))
                values = np.empty((part.shape[1], n_tasks), dtype=np.float64)
                columns = part.columns
            values[:, done : done + len(part)] = part.to_numpy(dtype=np.float64).T
            index.append(part.index)
            done += len(part)
        assert values is not None
        assert done == values.shape[1]
        return pd.DataFrame(values.T, index=index[0].append(index[1:]), columns=columns,
                            copy=False)  # fmt: skip

    def _m_step(  # type: ignore[override]
        self,
        data: pd.DataFrame,
        probas: pd.DataFrame,
        initial_error: pd.DataFrame | None = None,
        initial_error_strategy: Literal["assign", "addition"] | None = None,
    ) -> pd.DataFrame:
        if initial_error is not None or not self._blocked(data, probas.shape[1]):
            return DawidSkene._m_step(data, probas, initial_error, initial_error_strategy)
        width = max(1, self.block_cells // len(data))
        labels = list(probas.columns)
        # One float block, (worker, label) rows x true labels, laid out as crowd-kit's own
        # result is (row-major), filled a block of true-label columns at a time.
        values: np.ndarray | None = None
        index, names = None, []
        for start in range(0, len(labels), width):
            part = DawidSkene._m_step(data, probas[labels[start : start + width]])
            if values is None:
                values = np.empty((len(part), len(labels)), dtype=np.float64)
                index = part.index
            assert part.index.equals(index)
            values[:, start : start + part.shape[1]] = part.to_numpy(dtype=np.float64)
            names.append(part.columns)
        columns = pd.Index([label for part in names for label in part], dtype=names[0].dtype,
                           name=names[0].name)  # fmt: skip
        return pd.DataFrame(values, index=index, columns=columns, copy=False)

    def _evidence_lower_bound(
        self,
        data: pd.DataFrame,
        probas: pd.DataFrame,
        priors: pd.Series,
        errors: pd.DataFrame,
    ) -> float:
        if not self._blocked(data, probas.shape[1]):
            return float(super()._evidence_lower_bound(data, probas, priors, errors))
        columns = list(probas.columns)
        width = max(1, 2 * self.block_cells // len(data))
        bound = 0.0
        for start in range(0, len(columns), width):
            block = columns[start : start + width]
            bound += float(
                super()._evidence_lower_bound(
                    data, probas[block], priors[block].copy(), errors[block]
                )
            )
        probas.clip(lower=_EPS, inplace=True)  # as crowd-kit's bound does to its argument
        return bound
