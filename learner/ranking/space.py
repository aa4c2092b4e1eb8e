"""The space the diversity step measures distances in, and the pool it selects from: one code
path for the live loop (learner.services.rescoring) and the simulator (learner.simulation).

Both call `selection_pool` with the clips to choose among (the candidates), the clips already
labelled, and the active model's normaliser, so the simulator measures exactly what a project
gets:

- **With a model**, every vector is mapped into the model's own input space,
  `normaliser.transform` (per-speaker standardisation as the learner normalises, then the
  global standardisation fitted on the training rows): distances weigh every feature as the
  model does, and a speaker's recording conditions do not count as diversity.
- **Without a model** (the cold start), a per-speaker normaliser is fitted on the clips
  given (candidates and labelled together; `learner.normalise.fit_normaliser`, shrunk
  toward the global statistics for speakers with few clips).
- **The labelled clips** are mapped the same way and passed as `labelled_embeddings`, so the
  k-center and k-means++ steps start from what is already covered instead of re-covering it.
  A very large labelled set is cut to LABELLED_MAX clips by the caller's seeded sample
  (`labelled_sample`): the distances to the nearest labelled clip cost O(M x L x d).

Framework-free (arrays in, a `Pool` out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from learner.normalise import SPEAKER, Normaliser, fit_normaliser
from learner.ranking.pool import Pool

# At most this many labelled clips are passed to the diversity step (a seeded sample above).
LABELLED_MAX = 20_000


def labelled_sample(count: int, seed: int, limit: int = LABELLED_MAX) -> np.ndarray:
    """Positions of the labelled clips to pass: all of them, or a seeded sample of `limit`."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def embed(
    x: np.ndarray,
    speakers: Sequence[str],
    normaliser: Normaliser | None,
    *,
    labelled_x: np.ndarray | None = None,
    labelled_speakers: Sequence[str] = (),
) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, D) candidate vectors and (L, D) labelled ones -> the same rows in the diversity
    space (module docstring), float32; the labelled part is None when there is none."""
    x = np.asarray(x, dtype=np.float64)
    has_labelled = labelled_x is not None and len(labelled_x) > 0
    if normaliser is None:
        rows = np.concatenate([x, labelled_x]) if has_labelled else x
        names = [*speakers, *labelled_speakers] if has_labelled else list(speakers)
        normaliser = fit_normaliser(rows, names, mode=SPEAKER)
    out = normaliser.transform(x, list(speakers)).astype(np.float32)
    if not has_labelled:
        return out, None
    assert labelled_x is not None
    done = normaliser.transform(np.asarray(labelled_x), list(labelled_speakers))
    return out, done.astype(np.float32)


def selection_pool(
    *,
    probs_core: np.ndarray | None,
    probs_fine: np.ndarray | None,
    x: np.ndarray,
    speakers: Sequence[str],
    normaliser: Normaliser | None,
    labelled_x: np.ndarray | None = None,
    labelled_speakers: Sequence[str] = (),
    groups: Mapping[str, np.ndarray] | None = None,
    mc_probs_core: np.ndarray | None = None,
) -> Pool:
    """The `Pool` that `learner.ranking.select` picks the next batch from (module docstring)."""
    embeddings, labelled = embed(
        x, speakers, normaliser, labelled_x=labelled_x, labelled_speakers=labelled_speakers
    )
    return Pool(
        probs_core=probs_core,
        probs_fine=probs_fine,
        embeddings=embeddings,
        mc_probs_core=mc_probs_core,
        groups=dict(groups or {}),
        labelled_embeddings=labelled,
    )
