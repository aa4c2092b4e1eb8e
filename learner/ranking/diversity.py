"""Batch diversity over embeddings: k-center greedy, k-means++ seeding and BADGE.

Arrays in, arrays out, seeded. Each function works on a candidate set of m rows that the
caller has already cut down (top-M uncertain clips, or a random sample of the pool): every
step costs one pass over the m x d candidates, so a batch of k costs O(k * m * d) time and
O(m * d) memory. No m x m (let alone n x n) distance matrix is ever built.

Distances are Euclidean in the embedding space the caller passes (cached features, or the
model trunk's penultimate activations); pass L2-normalised rows for cosine geometry.

- `k_center_greedy` (Sener & Savarese, 2018): each pick is the candidate farthest from
  everything picked or labelled so far; optionally the distance is multiplied by a
  per-candidate weight (the uncertainty), so among equally distant clips the more
  uncertain one wins.
- `kmeans_pp` (Arthur & Vassilvitskii, 2007): each pick is drawn with probability
  proportional to its squared distance to the nearest pick or labelled clip. Less drawn to
  isolated outliers than k-center, so it suits cold start, where the goal is a
  representative first batch.
- `badge` (Ash et al., 2020): k-means++ on gradient embeddings g_i = a_i (x) h_i with
  a_i = p_i - onehot(argmax p_i), the gradient of the cross-entropy at the predicted label
  with respect to the last layer. Its norm grows with uncertainty and its direction with
  both the class confusion and the clip's embedding, so the seeding trades the two off.
  The c*d-dimensional g is never formed: <g_i, g_j> = <a_i, a_j> * <h_i, h_j>.
"""

from __future__ import annotations

import numpy as np

# Rows of labelled embeddings per block when measuring distances to the labelled set:
# a (m, _LABELLED_BLOCK) float32 block, 80 MB at m = 10,000.
_LABELLED_BLOCK = 2048


def _check_k(m: int, k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k > m:
        raise ValueError(f"cannot pick {k} of {m} candidates")


def _as_rows(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (m, d) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


class _Euclidean:
    """Squared distances from all m rows to one row, from a centred float32 copy.

    Centring first keeps the ||x||^2 - 2 x.y + ||y||^2 expansion accurate in float32.
    """

    def __init__(self, x: np.ndarray) -> None:
        self.mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.x = x - self.mean
        self.sq = np.einsum("ij,ij->i", self.x, self.x, dtype=np.float64)

    def to(self, j: int) -> np.ndarray:
        d = self.sq + self.sq[j] - 2.0 * (self.x @ self.x[j]).astype(np.float64)
        out: np.ndarray = np.maximum(d, 0.0)
        return out

    def min_to(self, labelled: np.ndarray) -> np.ndarray:
        """(L, d) labelled rows -> (m,) squared distance to the nearest labelled row."""
        ref = _as_rows(labelled, "labelled") - self.mean
        if ref.shape[1] != self.x.shape[1]:
            raise ValueError(
                f"labelled embeddings have {ref.shape[1]} dimensions, candidates {self.x.shape[1]}"
            )
        best = np.full(self.x.shape[0], np.inf)
        for start in range(0, ref.shape[0], _LABELLED_BLOCK):
            block = ref[start : start + _LABELLED_BLOCK]
            block_sq = np.einsum("ij,ij->i", block, block, dtype=np.float64)
            cross = (self.x @ block.T).astype(np.float64)
            d = self.sq[:, None] + block_sq[None, :] - 2.0 * cross
            np.minimum(best, d.min(axis=1), out=best)
        return np.maximum(best, 0.0)


class _GradientEmbedding:
    """Squared distances between g_i = a_i (x) h_i without forming g (m x c*d)."""

    def __init__(self, a: np.ndarray, h: np.ndarray) -> None:
        self.a = np.asarray(a, dtype=np.float64)
        self.h = h
        self.sq = np.einsum("ij,ij->i", self.a, self.a) * np.einsum(
            "ij,ij->i", h, h, dtype=np.float64
        )

    def to(self, j: int) -> np.ndarray:
        dot = (self.a @ self.a[j]) * (self.h @ self.h[j]).astype(np.float64)
        out: np.ndarray = np.maximum(self.sq + self.sq[j] - 2.0 * dot, 0.0)
        return out


def _d2_draw(sq_dist: np.ndarray, taken: np.ndarray, rng: np.random.Generator) -> int:
    """Draw an untaken row with probability proportional to its squared distance.

    When every untaken row coincides with a pick (all distances 0), draw uniformly among
    the untaken ones instead.
    """
    weights = np.where(taken, 0.0, sq_dist)
    total = weights.sum()
    if not total > 0.0:
        weights = (~taken).astype(np.float64)
        total = weights.sum()
    cumulative = np.cumsum(weights)
    j = int(np.searchsorted(cumulative, rng.random() * total, side="right"))
    j = min(j, len(weights) - 1)
    while taken[j] or weights[j] == 0.0:  # float round-off at the very end of the range
        j -= 1
    return j


def k_center_greedy(
    embeddings: np.ndarray,
    k: int,
    *,
    seed: int,
    weights: np.ndarray | None = None,
    start: int | None = None,
    labelled: np.ndarray | None = None,
) -> np.ndarray:
    """(m, d) candidates -> (k,) row positions in pick order.

    Each pick maximises weight_i * dist(i, nearest earlier pick or labelled row). The first
    pick, when there is no labelled set, is `start` if given, else a seeded random row.
    weights: (m,) non-negative, default all ones (plain k-center greedy).
    labelled: (L, d) embeddings already labelled; distances start from them, so the batch
    avoids what is already covered (costs O(m * L * d) once).
    Ties go to the lowest row position.
    """
    x = _as_rows(embeddings, "embeddings")
    m = x.shape[0]
    _check_k(m, k)
    w = np.ones(m) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (m,) or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weights must be (m,) = ({m},) finite and non-negative")
    rng = np.random.default_rng(seed)
    space = _Euclidean(x)
    taken = np.zeros(m, dtype=bool)
    picks = np.empty(k, dtype=np.int64)
    if labelled is not None and len(labelled):
        min_sq = space.min_to(labelled)
        first = int(np.argmax(np.where(taken, -1.0, w * np.sqrt(min_sq))))
    else:
        min_sq = np.full(m, np.inf)
        first = int(rng.integers(m)) if start is None else int(start)
        if not 0 <= first < m:
            raise ValueError(f"start {first} is outside 0..{m - 1}")
    j = first
    for step in range(k):
        if step:
            criterion = w * np.sqrt(min_sq)
            criterion[taken] = -1.0
            j = int(np.argmax(criterion))
        picks[step] = j
        taken[j] = True
        np.minimum(min_sq, space.to(j), out=min_sq)
    return picks


def kmeans_pp(
    embeddings: np.ndarray,
    k: int,
    *,
    seed: int,
    start: int | None = None,
    labelled: np.ndarray | None = None,
) -> np.ndarray:
    """(m, d) candidates -> (k,) row positions in pick order, by k-means++ D^2 sampling.

    The first pick, when there is no labelled set, is `start` if given, else a seeded
    random row (a uniform draw, so the first pick is typical of the candidates); every
    later pick is drawn with probability proportional to its squared distance to the
    nearest earlier pick or labelled row (L, d).
    """
    x = _as_rows(embeddings, "embeddings")
    m = x.shape[0]
    _check_k(m, k)
    rng = np.random.default_rng(seed)
    space = _Euclidean(x)
    taken = np.zeros(m, dtype=bool)
    picks = np.empty(k, dtype=np.int64)
    if labelled is not None and len(labelled):
        min_sq = space.min_to(labelled)
        first = _d2_draw(min_sq, taken, rng)
    else:
        min_sq = np.full(m, np.inf)
        first = int(rng.integers(m)) if start is None else int(start)
        if not 0 <= first < m:
            raise ValueError(f"start {first} is outside 0..{m - 1}")
    j = first
    for step in range(k):
        if step:
            j = _d2_draw(min_sq, taken, rng)
        picks[step] = j
        taken[j] = True
        np.minimum(min_sq, space.to(j), out=min_sq)
    return picks


def gradient_factors(probs: np.ndarray) -> np.ndarray:
    """(m, c) probabilities -> (m, c) p - onehot(argmax p), BADGE's last-layer factor.

    A row of NaN (no prediction at this ring) gives a row of zeros.
    """
    p = np.asarray(probs, dtype=np.float64)
    missing = np.asarray(np.isnan(p).all(axis=1))  # (m,) bool; asarray only for the type
    p = np.where(missing[:, None], 0.0, p)
    a = p.copy()
    a[np.arange(len(p)), p.argmax(axis=1)] -= 1.0
    a[missing] = 0.0
    return a


def badge(factors: np.ndarray, embeddings: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """BADGE: k-means++ over gradient embeddings a_i (x) h_i -> (k,) positions in pick order.

    factors: (m, c) rows a_i (see `gradient_factors`; concatenate rings to use several).
    embeddings: (m, d) rows h_i.
    The first pick is the largest gradient norm, as in Ash et al.; later picks are D^2 draws.
    """
    h = _as_rows(embeddings, "embeddings")
    a = np.asarray(factors, dtype=np.float64)
    m = h.shape[0]
    if a.ndim != 2 or a.shape[0] != m or not np.isfinite(a).all():
        raise ValueError(f"factors must be a finite (m, c) array with m = {m}")
    _check_k(m, k)
    rng = np.random.default_rng(seed)
    space = _GradientEmbedding(a, h)
    taken = np.zeros(m, dtype=bool)
    picks = np.empty(k, dtype=np.int64)
    min_sq = np.full(m, np.inf)
    j = int(np.argmax(space.sq))
    for step in range(k):
        if step:
            j = _d2_draw(min_sq, taken, rng)
        picks[step] = j
        taken[j] = True
        np.minimum(min_sq, space.to(j), out=min_sq)
    return picks
