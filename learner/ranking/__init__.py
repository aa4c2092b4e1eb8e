"""Active-learning query strategies: framework-free math over probabilities and embeddings.

    from learner.ranking import Pool, select, score, DEFAULT_STRATEGY, Quotas

    pool = Pool(probs_core=pc, probs_fine=pf, embeddings=emb, groups={"gender": g})
    batch = select(DEFAULT_STRATEGY, pool, 20, seed=7, quotas=Quotas(min_share={...}))
    queue_priority = score(DEFAULT_STRATEGY, pool)

Modules: `uncertainty` (measures), `diversity` (k-center, k-means++, BADGE), `coverage`
(quotas), `pool` (Pool, EmbeddingRows: the input, checked once), `strategies` (registry,
select, score), `rescore` (model callable -> MC-dropout probabilities, row blocks). No
Django, no Celery: the learner's tasks call these with arrays. Bench-only helpers (a .npy
row reader without a memory map, a single-pass `predict_pool`) live in bench/rank_support.py.
"""

from learner.ranking.coverage import Quotas, apply_quotas
from learner.ranking.pool import EmbeddingRows, Pool
from learner.ranking.rescore import Predict, predict_pool_mc, row_blocks
from learner.ranking.strategies import (
    COLD_START_STRATEGY,
    DEFAULT_STRATEGY,
    STRATEGIES,
    Selection,
    StrategySpec,
    get_strategy,
    resolve_params,
    score,
    select,
)

__all__ = [
    "COLD_START_STRATEGY",
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "EmbeddingRows",
    "Pool",
    "Predict",
    "Quotas",
    "Selection",
    "StrategySpec",
    "apply_quotas",
    "get_strategy",
    "predict_pool_mc",
    "resolve_params",
    "row_blocks",
    "score",
    "select",
]
