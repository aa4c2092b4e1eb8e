"""bench/rank_support.py: the bench's .npy row reader and single-pass rescoring, and that a
Pool over them ranks like one over arrays in memory."""

import numpy as np
import pytest

from bench.rank_support import NpyRows, predict_pool
from learner.ranking import (
    COLD_START_STRATEGY,
    DEFAULT_STRATEGY,
    EmbeddingRows,
    Pool,
    row_blocks,
    select,
)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_npy_rows_reads_the_rows_asked_for_in_the_order_asked(tmp_path):
    data = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "e.npy", data)
    store = NpyRows(tmp_path / "e.npy")
    positions = np.array([7, 3, 4, 5, 19, 0, 4])
    np.testing.assert_array_equal(store[positions], data[positions])
    np.testing.assert_array_equal(np.vstack(list(store.blocks(6))), data)
    head = store.head(10)
    assert head.shape == (10, 3)
    assert [len(b) for b in head.blocks(4)] == [4, 4, 2]
    with pytest.raises(ValueError, match="outside"):
        head[np.array([10])]
    np.save(tmp_path / "v.npy", np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match="C-order 2-D"):
        NpyRows(tmp_path / "v.npy")


def test_npy_rows_on_disk_give_the_same_batch_as_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    n = 500
    core = rng.dirichlet(np.ones(7), size=n)
    fine = rng.dirichlet(np.ones(21) * 0.5, size=n)
    fine[:7] = np.nan
    emb = rng.standard_normal((n, 16)).astype(np.float32)
    path = tmp_path / "embeddings.npy"
    np.save(path, emb)
    store = NpyRows(path)
    assert isinstance(store, EmbeddingRows)
    for strategy in (DEFAULT_STRATEGY, COLD_START_STRATEGY, "badge"):
        np.testing.assert_array_equal(
            select(strategy, Pool(core, fine, store), 20, seed=1).indices,
            select(strategy, Pool(core, fine, emb), 20, seed=1).indices,
        )


def test_a_model_passed_as_a_callable_fills_the_pool_block_by_block():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((1000, 8)).astype(np.float32)
    w_core, w_fine = rng.standard_normal((8, 7)), rng.standard_normal((8, 21))
    seen = []

    def predict(block):
        seen.append(len(block))
        return softmax(block @ w_core), softmax(block @ w_fine)

    core, fine = predict_pool(predict, row_blocks(emb, rows=300))
    assert seen == [300, 300, 300, 100]
    assert core.shape == (1000, 7)
    assert fine.shape == (1000, 21)
    pool = Pool(core, fine, emb)
    assert len(select(DEFAULT_STRATEGY, pool, 10, seed=0).indices) == 10


def test_predict_pool_reads_npy_rows_blocks_in_order(tmp_path):
    emb = np.random.default_rng(1).standard_normal((130, 4)).astype(np.float32)
    np.save(tmp_path / "e.npy", emb)
    w = np.random.default_rng(2).standard_normal((4, 3))
    core, fine = predict_pool(
        lambda b: (softmax(b @ w), None), NpyRows(tmp_path / "e.npy").blocks(50)
    )
    np.testing.assert_allclose(core, softmax(emb @ w).astype(np.float32), rtol=1e-6)
    assert fine is None


def test_predict_must_return_one_row_per_embedding():
    emb = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="number of rows"):
        predict_pool(lambda b: (np.full((1, 2), 0.5), None), row_blocks(emb))


def test_predict_must_return_fine_probabilities_for_every_block_or_none():
    emb = np.zeros((4, 3), dtype=np.float32)
    calls = iter([True, False])

    def predict(block):
        p = np.full((len(block), 2), 0.5)
        return p, (p if next(calls) else None)

    with pytest.raises(ValueError, match="some blocks only"):
        predict_pool(predict, row_blocks(emb, rows=2))
