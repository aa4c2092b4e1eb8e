"""Turn embeddings into a Pool's probabilities with a model passed in as a callable.

The ranking never loads weights: training hands over `predict`, a function from a
(b, d) float32 block of embeddings to (core probabilities (b, c_core), fine probabilities
(b, c_fine) or None), already calibrated. The embeddings arrive as an iterable of row
blocks, so a pool of a million clips is read from disk a block at a time and never held
in memory whole (see bench/rank_scale.py for a reader that does not memory-map).
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
    """Apply `predict` block by block -> (n, c_core) and (n, c_fine) or None, float32."""
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
