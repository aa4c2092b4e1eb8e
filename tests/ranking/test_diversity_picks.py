"""Batches spread over the embedding space instead of piling onto one region."""

import numpy as np
import pytest

from learner.ranking import COLD_START_STRATEGY, DEFAULT_STRATEGY, Pool, select
from learner.ranking import diversity as dv

pytestmark = []


def clusters(sizes, centres, spread=0.01, seed=0):
    """Tight Gaussian clusters -> (n, d) float32 points and (n,) cluster ids."""
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, dtype=np.float32)
    ids = np.repeat(np.arange(len(sizes)), sizes)
    points = centres[ids] + spread * rng.standard_normal((len(ids), centres.shape[1]))
    return points.astype(np.float32), ids


def test_k_center_goes_to_the_far_away_cluster_next():
    x, ids = clusters([30, 1], [[0, 0], [100, 0]])
    picks = dv.k_center_greedy(x, 2, seed=0, start=0)
    assert ids[picks].tolist() == [0, 1]


def test_k_center_avoids_what_is_already_labelled():
    x, ids = clusters([10, 10], [[0, 0], [50, 0]])
    labelled = np.zeros((3, 2), dtype=np.float32)  # near cluster 0
    picks = dv.k_center_greedy(x, 1, seed=0, labelled=labelled)
    assert ids[picks].tolist() == [1]


def test_uncertainty_weights_break_distance_ties_toward_the_uncertain():
    x = np.array([[0, 0], [10, 0], [-10, 0]], dtype=np.float32)
    picks = dv.k_center_greedy(x, 2, seed=0, start=0, weights=np.array([1.0, 0.2, 0.9]))
    assert picks.tolist() == [0, 2]


def test_default_strategy_takes_both_clusters_of_equally_uncertain_clips():
    x, ids = clusters([30, 5], [[0, 0, 0], [10, 10, 10]])
    flat = np.full((len(ids), 7), 1 / 7)  # every clip equally uncertain
    pool = Pool(probs_core=flat, probs_fine=None, embeddings=x)

    batch = select(DEFAULT_STRATEGY, pool, 4, seed=0)
    assert set(ids[batch.indices]) == {0, 1}
    # Plain uncertainty sampling has nothing to tell the clips apart: one cluster only.
    assert set(ids[select("entropy", pool, 4, seed=0).indices]) == {0}


def test_badge_takes_both_clusters_of_equally_uncertain_clips():
    x, ids = clusters([30, 5], [[1, 1, 1], [10, 10, 10]])
    probs = np.tile([0.4, 0.3, 0.3], (len(ids), 1))
    pool = Pool(probs_core=probs, probs_fine=np.tile([0.5, 0.5], (len(ids), 1)), embeddings=x)
    every_clip = {"candidate_factor": 20}  # all 35 clips are candidates, not the top 20
    for seed in range(5):
        batch = select("badge", pool, 2, seed=seed, params=every_clip)
        assert set(ids[batch.indices]) == {0, 1}


def test_the_default_only_picks_among_the_most_uncertain_candidates():
    x, _ = clusters([50, 50], [[0, 0], [10, 10]], spread=1.0)
    probs = np.random.default_rng(1).dirichlet(np.ones(5), size=100)
    pool = Pool(probs_core=probs, probs_fine=None, embeddings=x)
    batch = select(DEFAULT_STRATEGY, pool, 3, seed=0, params={"candidate_factor": 2})
    top6 = select("entropy", pool, 6, seed=0).indices
    assert set(batch.indices.tolist()) <= set(top6.tolist())
    assert batch.indices[0] == top6[0]  # the first pick is the most uncertain clip


@pytest.mark.parametrize("strategy", [COLD_START_STRATEGY, "kcenter"])
def test_cold_start_covers_every_cluster(strategy):
    centres = 10 * np.eye(5, 8)
    x, ids = clusters([40, 40, 40, 40, 40], centres)
    pool = Pool(probs_core=None, probs_fine=None, embeddings=x)
    for seed in range(5):
        batch = select(strategy, pool, 5, seed=seed)
        assert sorted(ids[batch.indices]) == [0, 1, 2, 3, 4]


def test_kmeans_pp_falls_back_to_uniform_draws_when_only_duplicates_remain():
    x = np.zeros((4, 3), dtype=np.float32)
    picks = dv.kmeans_pp(x, 4, seed=3)
    assert sorted(picks.tolist()) == [0, 1, 2, 3]


def test_gradient_factors_are_p_minus_onehot_and_zero_for_missing_rows():
    p = np.array([[0.7, 0.2, 0.1], [np.nan] * 3])
    np.testing.assert_allclose(dv.gradient_factors(p), [[-0.3, 0.2, 0.1], [0, 0, 0]])


def test_badge_distances_match_explicit_gradient_embeddings():
    rng = np.random.default_rng(0)
    a, h = rng.standard_normal((6, 3)), rng.standard_normal((6, 4)).astype(np.float32)
    g = np.einsum("ic,id->icd", a, h).reshape(6, -1)
    space = dv._GradientEmbedding(a, h)
    np.testing.assert_allclose(space.to(2), ((g - g[2]) ** 2).sum(axis=1), rtol=1e-5, atol=1e-5)
