"""The registry, seeds, scores and the model-as-callable path."""

import numpy as np
import pytest

from learner.ranking import (
    COLD_START_STRATEGY,
    DEFAULT_STRATEGY,
    STRATEGIES,
    EmbeddingRows,
    Pool,
    predict_pool_mc,
    resolve_params,
    row_blocks,
    score,
    select,
)
from learner.ranking.uncertainty import entropy

pytestmark = []


def model_pool(n=300, seed=0, **extra) -> Pool:
    rng = np.random.default_rng(seed)
    mc = rng.dirichlet(np.ones(7), size=(5, n))
    fine = rng.dirichlet(np.ones(21) * 0.5, size=n)
    fine[:7] = np.nan  # clips without a fine prediction
    return Pool(
        probs_core=mc.mean(axis=0),
        probs_fine=fine,
        embeddings=rng.standard_normal((n, 16)).astype(np.float32),
        mc_probs_core=mc,
        **extra,
    )


def test_every_entry_is_complete_and_its_defaults_are_valid():
    assert DEFAULT_STRATEGY in STRATEGIES
    assert STRATEGIES[DEFAULT_STRATEGY].needs_model
    assert not STRATEGIES[COLD_START_STRATEGY].needs_model
    for name, spec in STRATEGIES.items():
        assert spec.name == name
        assert spec.description
        assert resolve_params(name) == dict(spec.defaults)


def test_the_registry_cannot_be_changed_at_run_time():
    with pytest.raises(TypeError):
        STRATEGIES["mine"] = STRATEGIES["random"]  # type: ignore[index]


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_same_seed_same_batch_and_scores_are_the_priorities(strategy):
    pool = model_pool()
    first = select(strategy, pool, 12, seed=5)
    again = select(strategy, pool, 12, seed=5)
    np.testing.assert_array_equal(first.indices, again.indices)
    assert len(set(first.indices.tolist())) == 12
    np.testing.assert_array_equal(first.scores, score(strategy, pool, seed=5)[first.indices])
    assert first.strategy == strategy
    assert dict(first.params) == resolve_params(strategy)


@pytest.mark.parametrize("strategy", ["random", "kcenter", "coverage", "badge"])
def test_seeded_strategies_change_with_the_seed(strategy):
    pool = model_pool()
    batches = {tuple(select(strategy, pool, 12, seed=s).indices) for s in range(4)}
    assert len(batches) > 1


def test_uncertainty_strategies_return_the_top_of_the_score_best_first():
    pool = model_pool()
    for strategy in ("least_confidence", "margin", "entropy", "bald"):
        batch = select(strategy, pool, 10, seed=0)
        expected = np.argsort(-score(strategy, pool), kind="stable")[:10]
        np.testing.assert_array_equal(batch.indices, expected)
        assert np.all(np.diff(batch.scores) <= 0)


def test_params_override_defaults():
    pool = model_pool()
    core_only = select("entropy", pool, 5, seed=0, params={"alpha": 1.0})
    np.testing.assert_allclose(core_only.scores, np.sort(entropy(pool.probs_core))[::-1][:5])
    by_margin = select(DEFAULT_STRATEGY, pool, 5, seed=0, params={"measure": "margin"})
    assert by_margin.params["measure"] == "margin"


def test_a_cold_pool_is_refused_by_model_strategies_with_the_way_out_named():
    pool = Pool(probs_core=None, probs_fine=None, embeddings=np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match=COLD_START_STRATEGY):
        select(DEFAULT_STRATEGY, pool, 2, seed=0)
    for name, spec in STRATEGIES.items():
        if not spec.needs_model:
            assert len(select(name, pool, 2, seed=0).indices) == 2


def test_embeddings_in_a_memory_map_give_the_same_batch_as_in_memory(tmp_path):
    pool = model_pool(n=500)
    path = tmp_path / "embeddings.npy"
    np.save(path, pool.embeddings)
    disk_pool = Pool(pool.probs_core, pool.probs_fine, np.load(path, mmap_mode="r"))
    for strategy in (DEFAULT_STRATEGY, COLD_START_STRATEGY, "badge"):
        np.testing.assert_array_equal(
            select(strategy, disk_pool, 20, seed=1).indices,
            select(strategy, pool, 20, seed=1).indices,
        )


class RowReader:
    """Embeddings that only answer shape, ndim, dtype and rows[positions]: the structural
    `EmbeddingRows` a Pool accepts besides arrays (bench/rank_support.NpyRows is one)."""

    def __init__(self, data):
        self._data = data
        self.shape = data.shape
        self.ndim = data.ndim
        self.dtype = data.dtype
        self.asked = []

    def __getitem__(self, positions):
        assert isinstance(positions, np.ndarray)
        self.asked.append(len(positions))
        return self._data[positions].copy()


def test_a_row_reader_gives_the_same_batch_as_in_memory_reading_only_candidates():
    pool = model_pool(n=500)
    for strategy in (DEFAULT_STRATEGY, COLD_START_STRATEGY, "badge"):
        reader = RowReader(pool.embeddings)
        assert isinstance(reader, EmbeddingRows)
        np.testing.assert_array_equal(
            select(strategy, Pool(pool.probs_core, pool.probs_fine, reader), 20, seed=1).indices,
            select(strategy, pool, 20, seed=1).indices,
        )
        assert reader.asked == [200]  # candidate_factor x batch rows, never the whole pool


def test_labelled_embeddings_steer_diversity_away_from_covered_ground():
    rng = np.random.default_rng(0)
    emb = np.vstack([rng.normal(0, 0.01, (50, 2)), rng.normal(5, 0.01, (50, 2))])
    pool = Pool(None, None, emb.astype(np.float32), labelled_embeddings=np.zeros((1, 2)))
    batch = select("kcenter", pool, 1, seed=0)
    assert batch.indices[0] >= 50


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_mc_dropout_passes_of_a_model_passed_as_a_callable_fill_the_pool_for_bald():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((1000, 8)).astype(np.float32)
    w_core = rng.standard_normal((8, 7))
    seen = []

    def noisy(block):
        seen.append(len(block))
        z = block @ w_core + rng.standard_normal((len(block), 7))
        return softmax(z), None

    mc_core, mc_fine = predict_pool_mc(noisy, row_blocks(emb, rows=400), passes=3)
    assert seen == [400] * 3 + [400] * 3 + [200] * 3
    assert mc_core.shape == (3, 1000, 7)
    assert mc_fine is None
    pool = Pool(mc_core.mean(axis=0), None, emb, mc_probs_core=mc_core)
    assert len(select("bald", pool, 5, seed=0).indices) == 5
