"""Query strategies: which unlabelled clips go to the annotators next.

A project picks a strategy by name from `STRATEGIES` and may override its parameters. Every
strategy is two plain functions over a `Pool` of arrays, checked when it is built (see
`pool`; no Django, no Celery, no model weights: the model has already turned the clips
into probabilities, see `rescore`):

- a *priority*: (n,) scores over the whole pool, higher = more wanted. `score()` returns
  it; the annotator queue is ordered by it. For the diversity strategies it is their
  uncertainty part; strategies without a model have no notion of priority and return a
  seeded random order, so the queue is never in ingestion order (which groups clips by
  speaker and session).
- a *pick*: a batch of positions in pick order. `select()` returns it, cut to the
  project's coverage quotas when there are any (see `coverage`).

Scale: the uncertainty measures are computed in row chunks, so a pool of a million clips
costs one pass over its (n, c) probabilities. The diversity step never sees the whole pool:
it works on a candidate set of M = candidate_factor x batch_size clips (the M most uncertain
when there is a model, a seeded random sample when there is not), gathered from the
(n, d) embeddings, which may live on disk (anything shaped like `EmbeddingRows`).

Registry (name: what it does; parameters and defaults):

- random: uniform sample. {}
- least_confidence, margin, entropy: top-B by a normalised uncertainty measure,
  hierarchy-aware (see `uncertainty.hierarchical`). {alpha: 0.5}
- bald: top-B by BALD over MC-dropout passes (pool.mc_probs_core, and mc_probs_fine when
  given). {alpha: 0.5}
- kcenter: k-center greedy on the embeddings from a seeded random start; no model needed.
  {candidate_factor: 10}
- coverage: cold start. k-means++ (D^2) seeding from a seeded random start over the
  embeddings; no model needed. {candidate_factor: 10}
- badge: BADGE k-means++ on gradient embeddings within the top-M uncertain clips.
  {measure: "entropy", alpha: 0.5, candidate_factor: 10}
- uncertain_kcenter (DEFAULT_STRATEGY): top-M by hierarchical entropy, then k-center
  greedy weighted by uncertainty. {measure: "entropy", alpha: 0.5, candidate_factor: 10}

Why uncertain_kcenter is the default until the simulator says otherwise: every pick is
among the M most uncertain clips, so no label is spent on what the model already knows;
within them each pick maximises uncertainty x distance to the nearest earlier pick (or
labelled clip), so a batch cannot be twenty near-copies of one confusing speaker, and the
uncertainty weight keeps the greedy step from chasing the most isolated (often broken)
clips for their distance alone. It is deterministic given the model's probabilities
(the seed is not used), so a queue can be rebuilt exactly, and its cost is one pass over
the probabilities plus O(M x d x B), whatever the pool size. Entropy, not margin, because
it reads the whole distribution, which matters with 7 core and ~20 fine classes. BADGE is
the better-published alternative but samples at random, so two runs on the same model
differ.

Cold start: a pool without a model (probs_core None) can only use the strategies with
needs_model False. `select` refuses the others with a ValueError naming
COLD_START_STRATEGY, rather than silently switching strategy behind the project's back.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from learner.ranking import diversity, uncertainty
from learner.ranking.coverage import Quotas
from learner.ranking.pool import CHUNK_ROWS, EmbeddingRows, Pool

# Added to uncertainty weights in k-center so that a candidate with zero uncertainty still
# counts its distance (and an all-certain candidate set degrades to plain k-center).
_WEIGHT_FLOOR = 1e-9


# --- Outputs and the registry's entries ---------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """A batch: positions in the pool in pick order (the first is the most wanted).

    indices: (b,) int64 pool positions, b <= batch_size (shorter only when quota caps
        leave too few eligible clips).
    scores: (b,) the strategy's priority (`score()`) of each pick, higher = more wanted.
    strategy: the registry name; params: the parameters used, defaults filled in.
    """

    indices: np.ndarray
    scores: np.ndarray
    strategy: str
    params: Mapping[str, Any] = field(default_factory=dict)


PriorityFn = Callable[[Pool, Mapping[str, Any], int], np.ndarray]
PickFn = Callable[[Pool, int, int, Mapping[str, Any], np.ndarray], np.ndarray]


@dataclass(frozen=True)
class StrategySpec:
    """A registry entry.

    priority(pool, params, seed) -> (n,) scores; pick(pool, batch_size, seed, params,
    priority) -> (batch_size,) positions in pick order.
    """

    name: str
    pick: PickFn
    priority: PriorityFn
    defaults: Mapping[str, Any]
    description: str
    needs_model: bool
    needs_mc: bool = False


# --- Priorities ---------------------------------------------------------------------------


def _random_priority(pool: Pool, params: Mapping[str, Any], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(pool.size)


def _chunked_uncertainty(pool: Pool, measure: str, alpha: float) -> np.ndarray:
    assert pool.probs_core is not None
    fn = uncertainty.MEASURES[measure]
    out = np.empty(pool.size)
    for start in range(0, pool.size, CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        core = fn(pool.probs_core[rows])
        fine = None if pool.probs_fine is None else fn(pool.probs_fine[rows])
        out[rows] = uncertainty.hierarchical(core, fine, alpha)
    return out


def _measure_priority(measure: str | None) -> PriorityFn:
    def priority(pool: Pool, params: Mapping[str, Any], seed: int) -> np.ndarray:
        return _chunked_uncertainty(pool, measure or params["measure"], params["alpha"])

    return priority


def _bald_priority(pool: Pool, params: Mapping[str, Any], seed: int) -> np.ndarray:
    assert pool.mc_probs_core is not None
    out = np.empty(pool.size)
    for start in range(0, pool.size, CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        core = uncertainty.bald(pool.mc_probs_core[:, rows])
        fine = None
        if pool.mc_probs_fine is not None:
            fine = uncertainty.bald(pool.mc_probs_fine[:, rows])  # NaN where no fine head
        out[rows] = uncertainty.hierarchical(core, fine, params["alpha"])
    return out


# --- Picks --------------------------------------------------------------------------------


def top_k(priority: np.ndarray, k: int) -> np.ndarray:
    """(n,) scores -> (min(k, n),) positions of the k highest, best first.

    Ties go to the lower position, so the result does not depend on the sort algorithm.
    O(n) selection plus O(k log k) sorting.
    """
    p = np.asarray(priority, dtype=np.float64)
    n = len(p)
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < n:
        kth = np.partition(p, n - k)[n - k]
        above = np.flatnonzero(p > kth)
        ties = np.flatnonzero(p == kth)[: k - len(above)]
        chosen = np.concatenate([above, ties])
    else:
        chosen = np.arange(n)
    return chosen[np.lexsort((chosen, -p[chosen]))].astype(np.int64)


def _gather(embeddings: np.ndarray | EmbeddingRows, positions: np.ndarray) -> np.ndarray:
    """(n, d) embeddings (array, memmap or reader), (m,) positions -> (m, d) float32 rows.

    Reads rows in file order (sorted), which is what a file on disk wants.
    """
    order = np.argsort(positions, kind="stable")
    rows = np.empty((len(positions), embeddings.shape[1]), dtype=np.float32)
    rows[order] = embeddings[positions[order]]
    if not np.isfinite(rows).all():
        bad = positions[~np.isfinite(rows).all(axis=1)]
        raise ValueError(f"embeddings contain NaN or infinite values at pool positions {bad[:10]}")
    return rows


def _labelled(pool: Pool) -> np.ndarray | None:
    if pool.labelled_embeddings is None or len(pool.labelled_embeddings) == 0:
        return None
    return np.asarray(pool.labelled_embeddings, dtype=np.float32)


def _candidate_count(pool: Pool, batch_size: int, params: Mapping[str, Any]) -> int:
    return min(pool.size, max(batch_size, int(params["candidate_factor"]) * batch_size))


def _random_candidates(pool: Pool, m: int, rng: np.random.Generator) -> np.ndarray:
    if m >= pool.size:
        return np.arange(pool.size)
    return np.sort(rng.choice(pool.size, size=m, replace=False))


def _pick_top(
    pool: Pool, batch_size: int, seed: int, params: Mapping[str, Any], priority: np.ndarray
) -> np.ndarray:
    return top_k(priority, batch_size)


def _pick_kcenter(
    pool: Pool, batch_size: int, seed: int, params: Mapping[str, Any], priority: np.ndarray
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    candidates = _random_candidates(pool, _candidate_count(pool, batch_size, params), rng)
    x = _gather(pool.embeddings, candidates)
    seed2 = int(rng.integers(2**31))
    picks = diversity.k_center_greedy(x, batch_size, seed=seed2, labelled=_labelled(pool))
    chosen: np.ndarray = candidates[picks]
    return chosen


def _pick_coverage(
    pool: Pool, batch_size: int, seed: int, params: Mapping[str, Any], priority: np.ndarray
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    candidates = _random_candidates(pool, _candidate_count(pool, batch_size, params), rng)
    x = _gather(pool.embeddings, candidates)
    seed2 = int(rng.integers(2**31))
    picks = diversity.kmeans_pp(x, batch_size, seed=seed2, labelled=_labelled(pool))
    chosen: np.ndarray = candidates[picks]
    return chosen


def _pick_uncertain_kcenter(
    pool: Pool, batch_size: int, seed: int, params: Mapping[str, Any], priority: np.ndarray
) -> np.ndarray:
    candidates = top_k(priority, _candidate_count(pool, batch_size, params))
    x = _gather(pool.embeddings, candidates)
    # candidates[0] is the most uncertain clip: the first pick when nothing is labelled.
    picks = diversity.k_center_greedy(
        x,
        batch_size,
        seed=seed,
        weights=priority[candidates] + _WEIGHT_FLOOR,
        start=0,
        labelled=_labelled(pool),
    )
    chosen: np.ndarray = candidates[picks]
    return chosen


def _pick_badge(
    pool: Pool, batch_size: int, seed: int, params: Mapping[str, Any], priority: np.ndarray
) -> np.ndarray:
    assert pool.probs_core is not None
    candidates = top_k(priority, _candidate_count(pool, batch_size, params))
    x = _gather(pool.embeddings, candidates)
    factors = diversity.gradient_factors(pool.probs_core[candidates])
    if pool.probs_fine is not None:
        # Both heads' gradients, weighted like the hierarchical uncertainty:
        # g = [sqrt(alpha) a_core (x) h, sqrt(1 - alpha) a_fine (x) h], so squared
        # distances mix the rings as alpha and 1 - alpha. Clips without a fine
        # prediction keep their full core gradient.
        alpha = params["alpha"]
        fine_probs = pool.probs_fine[candidates]
        has_fine = ~np.isnan(fine_probs).all(axis=1)
        core_scale = np.where(has_fine, np.sqrt(alpha), 1.0)[:, None]
        factors = np.hstack(
            [factors * core_scale, diversity.gradient_factors(fine_probs) * np.sqrt(1 - alpha)]
        )
    chosen: np.ndarray = candidates[diversity.badge(factors, x, batch_size, seed=seed)]
    return chosen


# --- Registry -----------------------------------------------------------------------------


def _spec(
    name: str,
    pick: PickFn,
    priority: PriorityFn,
    defaults: Mapping[str, Any],
    description: str,
    *,
    needs_model: bool,
    needs_mc: bool = False,
) -> tuple[str, StrategySpec]:
    return name, StrategySpec(
        name, pick, priority, MappingProxyType(dict(defaults)), description, needs_model, needs_mc
    )


_UNCERTAINTY_DEFAULTS = {"alpha": 0.5}
_DIVERSE_DEFAULTS = {"measure": "entropy", "alpha": 0.5, "candidate_factor": 10}

STRATEGIES: Mapping[str, StrategySpec] = MappingProxyType(
    dict(
        [
            _spec(
                "random",
                _pick_top,
                _random_priority,
                {},
                "Uniform random sample; the baseline every other strategy must beat.",
                needs_model=False,
            ),
            _spec(
                "least_confidence",
                _pick_top,
                _measure_priority("least_confidence"),
                _UNCERTAINTY_DEFAULTS,
                "Clips whose most probable class is least probable.",
                needs_model=True,
            ),
            _spec(
                "margin",
                _pick_top,
                _measure_priority("margin"),
                _UNCERTAINTY_DEFAULTS,
                "Clips with the smallest gap between the two most probable classes.",
                needs_model=True,
            ),
            _spec(
                "entropy",
                _pick_top,
                _measure_priority("entropy"),
                _UNCERTAINTY_DEFAULTS,
                "Clips with the flattest predicted distribution (normalised entropy).",
                needs_model=True,
            ),
            _spec(
                "bald",
                _pick_top,
                _bald_priority,
                _UNCERTAINTY_DEFAULTS,
                "Clips on which MC-dropout passes disagree (mutual information, BALD).",
                needs_model=True,
                needs_mc=True,
            ),
            _spec(
                "kcenter",
                _pick_kcenter,
                _random_priority,
                {"candidate_factor": 10},
                "k-center greedy on the embeddings: the batch spreads as far as it can.",
                needs_model=False,
            ),
            _spec(
                "coverage",
                _pick_coverage,
                _random_priority,
                {"candidate_factor": 10},
                "Cold start: k-means++ seeding on the embeddings from a random start, a "
                "batch that covers the pool's regions roughly in proportion.",
                needs_model=False,
            ),
            _spec(
                "badge",
                _pick_badge,
                _measure_priority(None),
                _DIVERSE_DEFAULTS,
                "BADGE: k-means++ on gradient embeddings among the most uncertain clips.",
                needs_model=True,
            ),
            _spec(
                "uncertain_kcenter",
                _pick_uncertain_kcenter,
                _measure_priority(None),
                _DIVERSE_DEFAULTS,
                "The most uncertain clips, spread out: uncertainty-weighted k-center greedy "
                "within the top candidate_factor x batch by hierarchical entropy.",
                needs_model=True,
            ),
        ]
    )
)

DEFAULT_STRATEGY = "uncertain_kcenter"
COLD_START_STRATEGY = "coverage"


def _check_param(name: str, value: Any) -> None:
    if name == "alpha":
        ok = isinstance(value, numbers.Real) and 0.0 <= float(value) <= 1.0
        expected = "a number in [0, 1]"
    elif name == "candidate_factor":
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1
        expected = "an integer >= 1"
    elif name == "measure":
        ok = value in uncertainty.MEASURES
        expected = f"one of {sorted(uncertainty.MEASURES)}"
    else:  # pragma: no cover - every default above is listed here
        raise AssertionError(name)
    if not ok:
        raise ValueError(f"parameter {name!r} must be {expected}, got {value!r}")


def get_strategy(name: str) -> StrategySpec:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown query strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}"
        ) from None


def resolve_params(name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The strategy's defaults overridden by `params`; unknown or bad values raise."""
    spec = get_strategy(name)
    given = dict(params or {})
    unknown = set(given) - set(spec.defaults)
    if unknown:
        raise ValueError(
            f"strategy {name!r} takes no parameter(s) {sorted(unknown)}; "
            f"it takes {sorted(spec.defaults) or 'none'}"
        )
    resolved = {**spec.defaults, **given}
    for key, value in resolved.items():
        _check_param(key, value)
    return resolved


def _check_pool(spec: StrategySpec, pool: Pool) -> None:
    if spec.needs_model and not pool.has_model:
        raise ValueError(
            f"strategy {spec.name!r} needs model probabilities (pool.probs_core) and this "
            f"pool has none; use {COLD_START_STRATEGY!r} until a model exists"
        )
    if spec.needs_mc and pool.mc_probs_core is None:
        raise ValueError(f"strategy {spec.name!r} needs MC-dropout passes (pool.mc_probs_core)")


def score(
    strategy: str, pool: Pool, *, params: Mapping[str, Any] | None = None, seed: int = 0
) -> np.ndarray:
    """(n,) per-clip priority over the whole pool, higher = more wanted.

    For diversity strategies this is the uncertainty part; for strategies without a model,
    a seeded random order. The seed matters only for those.
    """
    spec = get_strategy(strategy)
    resolved = resolve_params(strategy, params)
    _check_pool(spec, pool)
    return spec.priority(pool, resolved, seed)


def _quota_ordering(
    pool: Pool,
    picks: np.ndarray,
    priority: np.ndarray,
    batch_size: int,
    quotas: Quotas,
    factor: int,
) -> np.ndarray:
    """The ranking that quotas cut from: the strategy's picks first (in pick order), then
    the next-best candidates by priority, then the best members of every group with a
    minimum share, so that `apply_quotas` can find minority clips wherever they rank."""
    parts = [picks, top_k(priority, len(picks) + factor * batch_size)]
    for key, by_group in quotas.min_share.items():
        column = np.asarray(pool.groups[key])
        for group in by_group:
            members = np.flatnonzero(column == group)
            parts.append(members[top_k(priority[members], batch_size)])
    ordering = np.concatenate(parts).astype(np.int64)
    _, first = np.unique(ordering, return_index=True)
    return ordering[np.sort(first)]


def select(
    strategy: str,
    pool: Pool,
    batch_size: int,
    *,
    seed: int,
    params: Mapping[str, Any] | None = None,
    quotas: Quotas | None = None,
) -> Selection:
    """Pick a batch of `batch_size` clips from the pool with the named strategy.

    With quotas, the strategy's picks are re-cut by `coverage.apply_quotas` (minimum shares
    first, hard caps second); replacements come from the next-best clips by priority. The
    same inputs and seed give the same Selection.
    """
    spec = get_strategy(strategy)
    resolved = resolve_params(strategy, params)
    _check_pool(spec, pool)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise ValueError(f"batch_size must be an integer, got {batch_size!r}")
    if not 1 <= batch_size <= pool.size:
        raise ValueError(f"batch_size must lie in 1..{pool.size} (the pool size), got {batch_size}")
    if quotas is not None:
        missing = quotas.keys - set(pool.groups)
        if missing:
            raise ValueError(f"quotas name metadata the pool does not carry: {sorted(missing)}")
    batch_size = int(batch_size)
    priority = spec.priority(pool, resolved, seed)
    picks = spec.pick(pool, batch_size, seed, resolved, priority)
    if quotas is not None and quotas.keys:
        factor = int(resolved.get("candidate_factor", 10))
        ordering = _quota_ordering(pool, picks, priority, batch_size, quotas, factor)
        picks = quotas.apply(ordering, pool.groups, batch_size)
    picks = np.asarray(picks, dtype=np.int64)
    return Selection(
        indices=picks,
        scores=priority[picks],
        strategy=strategy,
        params=MappingProxyType(resolved),
    )
