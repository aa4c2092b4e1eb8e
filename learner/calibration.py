"""Temperature scaling (Guo et al., 2017): one scalar T per head, fitted on validation data.

Dividing logits by T > 1 softens over-confident probabilities without changing which class
ranks first, so accuracy and UAR are untouched while the expected calibration error drops.
The ranking of clips for annotation depends on these probabilities being honest.
"""

from __future__ import annotations

import numpy as np
import torch

MIN_T, MAX_T = 0.05, 20.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e: np.ndarray = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def fit_temperature(
    logits: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """(N, K) logits and (N, K) soft targets (or (N,) class indices) -> T.

    Minimises the weighted negative log-likelihood over log T with L-BFGS (a convex problem
    in 1/T). With no usable rows T is 1 (no change).
    """
    logits_t = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    if logits_t.ndim != 2 or logits_t.shape[0] == 0:
        return 1.0
    t = np.asarray(targets)
    if t.ndim == 1:
        onehot = np.zeros(logits_t.shape, dtype=np.float64)
        onehot[np.arange(len(t)), t.astype(np.int64)] = 1.0
        t = onehot
    target_t = torch.as_tensor(t, dtype=torch.float64)
    w = torch.as_tensor(
        np.ones(len(t)) if weights is None else np.asarray(weights, dtype=np.float64)
    )
    if float(w.sum()) <= 0:
        return 1.0
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        log_probs = torch.log_softmax(logits_t / log_t.exp(), dim=1)
        loss = -(w * (target_t * log_probs).sum(dim=1)).sum() / w.sum()
        # torch leaves Tensor.backward and LBFGS.step unannotated (the stubs, not the calls)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    value = float(log_t.detach().exp())
    if not np.isfinite(value):
        return 1.0
    return float(np.clip(value, MIN_T, MAX_T))
