"""Each uncertainty strategy picks the clip a hand-built case says it should."""

import numpy as np
import pytest

from learner.ranking import Pool, score, select
from learner.ranking import uncertainty as u

pytestmark = []

# Four clips over four classes, built so that the three measures disagree:
CERTAIN = [0.97, 0.01, 0.01, 0.01]
LONG_TAIL = [0.5, 1 / 6, 1 / 6, 1 / 6]  # most entropy
TWO_WAY_TIE = [0.45, 0.45, 0.05, 0.05]  # smallest top-2 gap
FLAT_TOP = [0.4, 0.35, 0.25, 0.0]  # lowest top probability
PROBS = np.array([CERTAIN, LONG_TAIL, TWO_WAY_TIE, FLAT_TOP])


def pool_of(probs_core, probs_fine=None, **extra) -> Pool:
    n = len(probs_core)
    emb = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    return Pool(probs_core=np.asarray(probs_core), probs_fine=probs_fine, embeddings=emb, **extra)


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [("least_confidence", 3), ("margin", 2), ("entropy", 1)],
)
def test_each_measure_picks_its_own_most_uncertain_clip(strategy, expected):
    assert select(strategy, pool_of(PROBS), 1, seed=0).indices.tolist() == [expected]


def test_the_certain_clip_comes_last_under_every_measure():
    for strategy in ("least_confidence", "margin", "entropy"):
        ranked = np.argsort(-score(strategy, pool_of(PROBS)), kind="stable")
        assert ranked[-1] == 0, strategy


def test_measures_follow_their_documented_formulas():
    p = np.array([FLAT_TOP, TWO_WAY_TIE])
    np.testing.assert_allclose(u.least_confidence(p), [0.6 * 4 / 3, 0.55 * 4 / 3])
    np.testing.assert_allclose(u.margin(p), [1 - 0.05, 1.0])
    h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1) / np.log(4)
    np.testing.assert_allclose(u.entropy(p), h)


def test_measures_are_zero_when_certain_and_one_when_uniform():
    p = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    for measure in u.MEASURES.values():
        np.testing.assert_allclose(measure(p), [0.0, 1.0], atol=1e-12)


def test_bald_prefers_disagreeing_passes_over_agreeing_flat_or_confident_ones():
    confident, flip = [0.99, 0.01], [0.01, 0.99]
    disagree = [confident, confident, confident, flip]  # mean [0.745, 0.255]: fairly sure
    agree_flat = [[0.5, 0.5]] * 4  # the mean is as flat as can be, but no disagreement
    agree_sure = [[0.9, 0.1]] * 4
    mc = np.array([disagree, agree_flat, agree_sure]).transpose(1, 0, 2)  # (T=4, n=3, c=2)
    pool = pool_of(mc.mean(axis=0), mc_probs_core=mc)

    assert select("bald", pool, 1, seed=0).indices.tolist() == [0]
    assert select("entropy", pool, 1, seed=0).indices.tolist() == [1]  # the contrast
    bald = score("bald", pool)
    np.testing.assert_allclose(bald[1:], 0.0, atol=1e-9)
    mean = np.array([0.745, 0.255])
    expected = -(mean * np.log(mean)).sum() + (0.99 * np.log(0.99) + 0.01 * np.log(0.01))
    assert bald[0] == pytest.approx(expected / np.log(2))


def test_hierarchy_mixes_core_and_fine_entropy_with_alpha():
    core = np.array([[0.5, 0.5], [0.5, 0.5]])  # u_core = 1
    fine = np.array([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])  # u_fine = 0, 1
    pool = pool_of(core, fine)
    np.testing.assert_allclose(score("entropy", pool), [0.5, 1.0])
    np.testing.assert_allclose(score("entropy", pool, params={"alpha": 0.8}), [0.8, 1.0])
    np.testing.assert_allclose(score("entropy", pool, params={"alpha": 0.0}), [0.0, 1.0])


def test_a_clip_without_a_fine_prediction_is_ranked_by_its_core_ring():
    core = np.array([[0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    fine = np.array([[0.25] * 4, [np.nan] * 4, [1.0, 0, 0, 0]])
    got = score("least_confidence", pool_of(core, fine))
    u_core = u.least_confidence(core)
    np.testing.assert_allclose(got, [0.5 * u_core[0] + 0.5, u_core[1], 0.5 * u_core[2]])
    # And a pool with no fine head at all is ranked by the core ring alone.
    np.testing.assert_allclose(score("least_confidence", pool_of(core)), u_core)


def test_hierarchical_refuses_alpha_outside_the_unit_interval():
    with pytest.raises(ValueError, match="alpha"):
        u.hierarchical(np.zeros(2), np.zeros(2), alpha=1.5)
