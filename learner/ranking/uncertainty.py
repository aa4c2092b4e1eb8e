"""Uncertainty measures over calibrated class probabilities. Arrays in, arrays out.

Every measure is normalised to [0, 1]: 0 for a certain prediction, 1 for the most uncertain
prediction the measure allows with c classes. The normalisation is what lets `hierarchical`
mix the core ring (say 7 classes) with the finest ring (say 21) on one scale.

- least_confidence: (1 - max_k p_k) * c / (c - 1)
- margin:           1 - (p_(1) - p_(2)), the gap between the two most probable classes
- entropy:          -sum_k p_k log p_k / log c
- bald:             [H(mean_t p_t) - mean_t H(p_t)] / log c over T stochastic passes
                    (Houlsby et al., 2011; MC dropout as in Gal et al., 2017). High where the
                    passes disagree with each other, low where they agree, flat or not.

Probabilities are not validated here (the Pool does that once for the whole pool); callers
pass (n, c) rows that sum to 1. All outputs are float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_TINY = 1e-12  # log(0) guard; p log p -> 0 as p -> 0

Measure = Callable[[np.ndarray], np.ndarray]


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """(n, c) probabilities -> (n,) normalised least confidence in [0, 1]."""
    p = np.asarray(probs, dtype=np.float64)
    c = p.shape[1]
    out: np.ndarray = np.clip((1.0 - p.max(axis=1)) * c / (c - 1), 0.0, 1.0)
    return out


def margin(probs: np.ndarray) -> np.ndarray:
    """(n, c) probabilities -> (n,) 1 - (top-1 minus top-2 probability), in [0, 1]."""
    p = np.asarray(probs, dtype=np.float64)
    c = p.shape[1]
    # After partitioning at c - 2 the last two columns hold the two largest values, the
    # largest last.
    top2 = np.partition(p, c - 2, axis=1)[:, -2:]
    out: np.ndarray = np.clip(1.0 - (top2[:, 1] - top2[:, 0]), 0.0, 1.0)
    return out


def _entropy_nats(p: np.ndarray, axis: int = -1) -> np.ndarray:
    nats: np.ndarray = -(p * np.log(np.clip(p, _TINY, None))).sum(axis=axis)
    return nats


def entropy(probs: np.ndarray) -> np.ndarray:
    """(n, c) probabilities -> (n,) Shannon entropy divided by log c, in [0, 1]."""
    p = np.asarray(probs, dtype=np.float64)
    out: np.ndarray = np.clip(_entropy_nats(p) / np.log(p.shape[1]), 0.0, 1.0)
    return out


def bald(mc_probs: np.ndarray) -> np.ndarray:
    """(T, n, c) sampled probabilities -> (n,) mutual information / log c, in [0, 1].

    Mutual information between the label and the model's parameters: the entropy of the
    mean prediction minus the mean entropy of the individual passes.
    """
    p = np.asarray(mc_probs, dtype=np.float64)
    mean = p.mean(axis=0)
    mi = _entropy_nats(mean) - _entropy_nats(p).mean(axis=0)
    out: np.ndarray = np.clip(mi / np.log(p.shape[2]), 0.0, 1.0)
    return out


MEASURES: dict[str, Measure] = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
}


def hierarchical(u_core: np.ndarray, u_fine: np.ndarray | None, alpha: float = 0.5) -> np.ndarray:
    """Combine uncertainty at the core ring and the finest ring: (n,), (n,) or None -> (n,).

        u = alpha * u_core + (1 - alpha) * u_fine

    where both are normalised measures in [0, 1]. A clip with no fine prediction (u_fine is
    None, or NaN for that clip) gets u = u_core, so it is neither favoured nor penalised
    for lacking a fine head. alpha = 1 ranks by the core ring alone, alpha = 0 by the
    finest ring alone (wherever it exists).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    core = np.asarray(u_core, dtype=np.float64)
    if u_fine is None:
        return core.copy()
    fine = np.asarray(u_fine, dtype=np.float64)
    if fine.shape != core.shape:
        raise ValueError(f"u_fine has shape {fine.shape}, u_core {core.shape}")
    missing = np.isnan(fine)
    return np.where(missing, core, alpha * core + (1.0 - alpha) * np.where(missing, 0.0, fine))
