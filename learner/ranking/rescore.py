"""Turn embeddings into a Pool's probabilities with a model passed in as a callable.

The ranking never loads weights: the caller hands over `predict`, a function from a
(b, d) float32 block of embeddings to (core probabilities (b, c_core), fine probabilities
(b, c_fine) or None), already calibrated. The embeddings arrive as an iterable of row
blocks (`row_blocks`), so a pool is pushed through the model a block at a time.
`predict_pool_mc` gives BALD its T stochastic passes (the simulator's bald rounds use it).
The single-pass `predict_pool` and a .npy reader that does not memory-map are bench-only:
see bench/rank_support.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def row_blocks(embeddings: np.ndarray, rows: int = 65_536) -> Iterator[np.ndarray]:
    """(n, d) array or memmap -> successive (<= rows, d) float32 blocks, in order."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    for start in range(0, embeddings.shape[0], rows):
        yield np.asarray(embeddings[start : start + rows], dtype=np.float32)


def predict_pool_mc(
    predict: Predict, blocks: Iterable[np.ndarray], passes: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """`passes` stochastic calls per block (dropout on, the caller's doing and seeding)
    -> (T, n, c_core) and (T, n, c_fine) or None, float32: the inputs of BALD."""
    if passes < 2:
        raise ValueError(f"MC dropout needs at least 2 passes, got {passes}")
    core: list[np.ndarray] = []
    fine: list[np.ndarray] = []
    for block in blocks:
        outs = [predict(block) for _ in range(passes)]
        core.append(np.stack([np.asarray(c, dtype=np.float32) for c, _ in outs]))
        if outs[0][1] is not None:
            fine.append(np.stack([np.asarray(f, dtype=np.float32) for _, f in outs]))
    if not core:
        raise ValueError("no embeddings were given")
    mc_core = np.concatenate(core, axis=1)
    mc_fine = np.concatenate(fine, axis=1) if fine else None
    if mc_fine is not None and mc_fine.shape[1] != mc_core.shape[1]:
        raise ValueError("predict returned fine probabilities for some blocks only")
    return mc_core, mc_fine
