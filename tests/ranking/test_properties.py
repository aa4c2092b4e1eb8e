"""Properties of the query strategies that hold for every pool, checked with hypothesis.

What is claimed, precisely (n clips, batch size k):

- Scores: every strategy's `score()` is (n,), finite and in [0, 1].
- Permuting the pool: a model strategy's scores permute with the clips (up to rounding). The
  strategies without a model (random, kcenter, coverage) score a seeded random order of
  *positions*, so their scores depend on (n, seed) only and stay where they are.
- Top-B strategies (least_confidence, margin, entropy, bald) pick the k highest scores. The
  picked scores are the same sequence whatever the order of the pool; a clip scoring above
  the k-th score is picked in every order and one below it in none; among clips tied at
  the k-th score the lower positions win, so with ties *which* tied clips are picked depends
  on the order, and with distinct scores the batch is the same clips in the same order.
- uncertain_kcenter and badge are equivariant (same clips, same pick order, same seed) when
  the priorities are distinct: the candidate set and its order come from the priorities,
  and the diversity step reads the candidates in that order. random, kcenter and coverage
  are not, for a fixed seed: the seed draws positions (random candidates, a random first
  pick), so only their distribution over batches is invariant. What holds for random is
  that it picks the same positions whatever the clips hold.
- Batch size: `select` returns exactly k distinct positions in 0..n-1 for every strategy and
  every 1 <= k <= n, with or without minimum-share quotas, and refuses k outside 1..n;
  with max-share caps it returns at most k and never breaks a cap.
- Uncertainty measures: in [0, 1]; 0 at a one-hot distribution, 1 at the uniform one (the
  maximum); non-decreasing as a distribution is mixed with the uniform one; invariant to
  permuting the classes. BALD is 0 when the passes agree and non-increasing as the passes
  are pulled toward their mean.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from learner.ranking import STRATEGIES, Pool, Quotas, apply_quotas, score, select
from learner.ranking import diversity as dv
from learner.ranking import uncertainty as u
from learner.ranking.strategies import top_k

FAST = settings(max_examples=60, deadline=None, derandomize=True)
TOP_B = ("least_confidence", "margin", "entropy", "bald")
MEASURES = {"least_confidence": u.least_confidence, "margin": u.margin, "entropy": u.entropy}
TOL = 1e-12  # float64 rounding in the measures


# --- Pools --------------------------------------------------------------------------------


@dataclass
class Scene:
    """The arrays of a Pool, kept apart so that they can be permuted clip by clip."""

    probs_core: np.ndarray
    probs_fine: np.ndarray | None
    embeddings: np.ndarray
    mc_probs_core: np.ndarray
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    labelled: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.embeddings)

    def pool(self) -> Pool:
        return Pool(
            probs_core=self.probs_core,
            probs_fine=self.probs_fine,
            embeddings=self.embeddings,
            mc_probs_core=self.mc_probs_core,
            groups=self.groups,
            labelled_embeddings=self.labelled,
        )

    def permuted(self, perm: np.ndarray) -> Scene:
        """Clip perm[i] of this scene at position i."""
        return Scene(
            probs_core=self.probs_core[perm],
            probs_fine=None if self.probs_fine is None else self.probs_fine[perm],
            embeddings=self.embeddings[perm],
            mc_probs_core=self.mc_probs_core[:, perm],
            groups={key: column[perm] for key, column in self.groups.items()},
            labelled=self.labelled,
        )


@st.composite
def scenes(draw: Any, min_n: int = 1, max_n: int = 40) -> Scene:
    """Small pools of every shape the strategies meet: peaked and flat probabilities, clips
    without a fine prediction, tied predictions, clustered or identical embeddings, a labelled
    set or none."""
    n = draw(st.integers(min_n, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c_core = draw(st.integers(2, 7))
    concentration = draw(st.sampled_from([0.2, 1.0, 5.0]))
    passes = draw(st.integers(2, 4))
    mc = rng.dirichlet(np.full(c_core, concentration), size=(passes, n))
    fine_kind = draw(st.sampled_from(["none", "some", "all"]))
    fine = None
    if fine_kind != "none":
        fine = rng.dirichlet(np.full(draw(st.integers(2, 9)), concentration), size=n)
        if fine_kind == "some":
            fine[rng.random(n) < 0.3] = np.nan
    if draw(st.booleans()):  # ties: some clips predicted exactly like others
        copies = rng.integers(n, size=n)
        tied = rng.random(n) < 0.5
        mc[:, tied] = mc[:, copies[tied]]
        if fine is not None:
            fine[tied] = fine[copies[tied]]
    d = draw(st.integers(1, 5))
    spread = draw(st.sampled_from(["normal", "clustered", "identical"]))
    if spread == "normal":
        emb = rng.standard_normal((n, d))
    elif spread == "clustered":  # a few exact duplicates of a few points
        emb = rng.standard_normal((3, d))[rng.integers(3, size=n)]
    else:
        emb = np.ones((n, d))
    labelled = None
    if draw(st.booleans()):
        labelled = rng.standard_normal((draw(st.integers(1, 3)), d))
    groups = {
        "gender": rng.choice(np.array(["female", "male", "other"]), size=n, p=[0.2, 0.7, 0.1]),
        "speaker": rng.integers(4, size=n),
    }
    return Scene(
        probs_core=mc.mean(axis=0),
        probs_fine=fine,
        embeddings=emb.astype(np.float32),
        mc_probs_core=mc,
        groups=groups,
        labelled=labelled,
    )


@st.composite
def scenes_with_k(draw: Any, min_n: int = 1, max_n: int = 40) -> tuple[Scene, int]:
    scene = draw(scenes(min_n, max_n))
    return scene, draw(st.integers(1, scene.n))


@st.composite
def permuted_scenes(draw: Any) -> tuple[Scene, int, np.ndarray]:
    scene, k = draw(scenes_with_k(min_n=2))
    perm = np.array(draw(st.permutations(range(scene.n))), dtype=np.int64)
    return scene, k, perm


def well_separated(values: np.ndarray, gap: float = 1e-9) -> bool:
    """No two values closer than `gap`: orders cannot flip under rounding."""
    ordered = np.sort(values)
    return bool(np.all(np.diff(ordered) > gap))


# --- Scores -------------------------------------------------------------------------------


@FAST
@given(scene=scenes(), seed=st.integers(0, 2**31 - 1))
def test_every_strategy_scores_every_clip_finitely_within_zero_and_one(scene, seed):
    pool = scene.pool()
    for name in STRATEGIES:
        scores = score(name, pool, seed=seed)
        assert scores.shape == (scene.n,)
        assert np.isfinite(scores).all()
        assert (scores >= 0.0).all()
        assert (scores <= 1.0).all()


@FAST
@given(case=permuted_scenes(), seed=st.integers(0, 2**31 - 1))
def test_model_scores_permute_with_the_pool_and_position_scores_stay_put(case, seed):
    scene, _, perm = case
    pool, shuffled = scene.pool(), scene.permuted(perm).pool()
    for name, spec in STRATEGIES.items():
        before = score(name, pool, seed=seed)
        after = score(name, shuffled, seed=seed)
        if spec.needs_model:
            np.testing.assert_allclose(after, before[perm], rtol=0, atol=TOL, err_msg=name)
        else:
            np.testing.assert_array_equal(after, before, err_msg=name)


# --- Permuting the pool -------------------------------------------------------------------


@FAST
@given(case=permuted_scenes())
def test_top_b_strategies_pick_the_same_scores_whatever_the_order_of_the_pool(case):
    scene, k, perm = case
    pool, shuffled = scene.pool(), scene.permuted(perm).pool()
    for name in TOP_B:
        scores = score(name, pool)
        batch = select(name, pool, k, seed=0)
        moved = select(name, shuffled, k, seed=0)
        original = perm[moved.indices]  # back to the clips' positions in `pool`
        np.testing.assert_allclose(moved.scores, batch.scores, rtol=0, atol=TOL)
        kth = np.sort(scores)[::-1][k - 1]
        above = set(np.flatnonzero(scores > kth + TOL).tolist())
        below = set(np.flatnonzero(scores < kth - TOL).tolist())
        for picked in (batch.indices, original):
            assert above <= set(picked.tolist())
            assert not below & set(picked.tolist())
        if well_separated(scores):
            np.testing.assert_array_equal(original, batch.indices)


@FAST
@given(scores=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=1, max_size=30))
def test_top_k_breaks_ties_toward_the_lower_position(scores):
    p = np.array(scores)
    for k in range(1, len(p) + 3):
        picked = top_k(p, k)
        expected = np.lexsort((np.arange(len(p)), -p))[: min(k, len(p))]
        np.testing.assert_array_equal(picked, expected)


@FAST
@given(case=permuted_scenes(), seed=st.integers(0, 2**31 - 1))
def test_diverse_model_strategies_pick_the_same_clips_when_priorities_are_distinct(case, seed):
    scene, k, perm = case
    pool, shuffled = scene.pool(), scene.permuted(perm).pool()
    for name in ("uncertain_kcenter", "badge"):
        assume(well_separated(score(name, pool)))
        batch = select(name, pool, k, seed=seed)
        moved = select(name, shuffled, k, seed=seed)
        np.testing.assert_array_equal(perm[moved.indices], batch.indices, err_msg=name)


@FAST
@given(case=permuted_scenes(), seed=st.integers(0, 2**31 - 1))
def test_random_picks_the_same_positions_whatever_the_clips_hold(case, seed):
    scene, k, perm = case
    batch = select("random", scene.pool(), k, seed=seed)
    moved = select("random", scene.permuted(perm).pool(), k, seed=seed)
    np.testing.assert_array_equal(moved.indices, batch.indices)


# --- Batch size and uniqueness ------------------------------------------------------------


def assert_valid_batch(indices: np.ndarray, n: int) -> None:
    assert indices.dtype == np.int64
    assert len(np.unique(indices)) == len(indices)
    assert ((indices >= 0) & (indices < n)).all()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(case=scenes_with_k(), seed=st.integers(0, 2**31 - 1))
def test_every_strategy_returns_exactly_k_distinct_positions(case, seed):
    scene, k = case
    pool = scene.pool()
    for name in STRATEGIES:
        batch = select(name, pool, k, seed=seed)
        assert len(batch.indices) == k, name
        assert_valid_batch(batch.indices, scene.n)
        np.testing.assert_array_equal(batch.scores, score(name, pool, seed=seed)[batch.indices])


@st.composite
def gender_minimums(draw: Any) -> dict[str, float]:
    """Minimum shares for some genders, adding up to at most 1."""
    shares: dict[str, float] = {}
    left = 1.0
    for group in draw(st.lists(st.sampled_from(["female", "male", "other"]), unique=True)):
        share = draw(st.sampled_from([0.0, 0.1, 0.25, 1 / 3, 0.5, 0.75, 1.0]))
        if share <= left:
            shares[group] = share
            left -= share
    return shares


def minimum_needed(share: float, k: int) -> int:
    """coverage's need(k, g) with nothing labelled yet."""
    return min(k, max(0, math.ceil(share * k - 1e-9)))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(case=scenes_with_k(), minimums=gender_minimums(), seed=st.integers(0, 2**31 - 1))
def test_minimum_shares_keep_the_batch_full_and_get_what_the_pool_has(case, minimums, seed):
    scene, k = case
    quotas = Quotas(min_share={"gender": minimums})
    pool = scene.pool()
    gender = scene.groups["gender"]
    needs = {group: minimum_needed(share, k) for group, share in minimums.items()}
    for name in STRATEGIES:
        batch = select(name, pool, k, seed=seed, quotas=quotas)
        assert len(batch.indices) == k, name
        assert_valid_batch(batch.indices, scene.n)
        if sum(needs.values()) <= k:  # otherwise not every minimum fits in the batch
            for group, need in needs.items():
                got = int((gender[batch.indices] == group).sum())
                assert got >= min(need, int((gender == group).sum())), (name, group)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    case=scenes_with_k(),
    minimums=gender_minimums(),
    cap=st.sampled_from([0.0, 0.2, 0.5, 0.9]),
    seed=st.integers(0, 2**31 - 1),
)
def test_caps_are_never_broken_and_the_batch_is_at_most_k(case, minimums, cap, seed):
    scene, k = case
    quotas = Quotas(
        min_share={"gender": minimums},
        max_share={"speaker": dict.fromkeys(range(4), cap)},
    )
    limit = math.floor(cap * k + 1e-9)
    for name in STRATEGIES:
        batch = select(name, scene.pool(), k, seed=seed, quotas=quotas)
        assert len(batch.indices) <= k
        assert_valid_batch(batch.indices, scene.n)
        _, per_speaker = np.unique(scene.groups["speaker"][batch.indices], return_counts=True)
        assert (per_speaker <= limit).all(), name


@FAST
@given(scene=scenes(max_n=10), k=st.integers(-2, 14))
def test_a_batch_outside_one_to_n_is_refused(scene, k):
    assume(not 1 <= k <= scene.n)
    for name in STRATEGIES:
        with pytest.raises(ValueError, match="batch_size"):
            select(name, scene.pool(), k, seed=0)


@st.composite
def rankings_and_groups(draw: Any) -> tuple[np.ndarray, np.ndarray, int, dict[str, float]]:
    n = draw(st.integers(1, 30))
    labels = np.array(draw(st.lists(st.sampled_from("abc"), min_size=n, max_size=n)))
    ranked = np.array(draw(st.permutations(range(n))), dtype=np.int64)
    ranked = ranked[: draw(st.integers(0, n))]
    shares = draw(st.dictionaries(st.sampled_from("abc"), st.sampled_from([0.0, 0.2, 0.5, 1.0])))
    return ranked, labels, draw(st.integers(1, 12)), shares


@FAST
@given(case=rankings_and_groups(), have=st.dictionaries(st.sampled_from("ab"), st.integers(0, 5)))
def test_quotas_return_a_subsequence_of_the_ranking_within_the_caps(case, have):
    ranked, labels, k, caps = case
    batch = apply_quotas(
        ranked, {"g": labels}, k, max_share={"g": caps}, already_labelled_counts={"g": have}
    )
    assert len(batch) <= k
    positions = [ranked.tolist().index(i) for i in batch.tolist()]
    assert positions == sorted(positions)
    total = sum(have.values()) + k
    for group, share in caps.items():
        cap = max(0, math.floor(share * total + 1e-9) - have.get(group, 0))
        assert int((labels[batch] == group).sum()) <= cap


@FAST
@given(case=rankings_and_groups())
def test_quotas_meet_every_minimum_that_fits_with_what_the_ranking_holds(case):
    ranked, labels, k, shares = case
    total = sum(shares.values())
    shares = {g: s / total for g, s in shares.items()} if total > 1 else shares
    batch = apply_quotas(ranked, {"g": labels}, k, min_share={"g": shares})
    assert len(batch) == min(k, len(ranked))
    needs = {group: minimum_needed(share, k) for group, share in shares.items()}
    if sum(needs.values()) <= k:
        for group, need in needs.items():
            available = int((labels[ranked] == group).sum())
            assert int((labels[batch] == group).sum()) >= min(need, available)


@FAST
@given(
    m=st.integers(1, 25),
    d=st.integers(1, 4),
    spread=st.sampled_from(["normal", "duplicates", "identical"]),
    labelled=st.integers(0, 3),
    data_seed=st.integers(0, 2**32 - 1),
    seed=st.integers(0, 2**31 - 1),
)
def test_diversity_picks_are_k_distinct_rows_even_among_duplicates(
    m, d, spread, labelled, data_seed, seed
):
    rng = np.random.default_rng(data_seed)
    if spread == "normal":
        x = rng.standard_normal((m, d))
    elif spread == "duplicates":
        x = rng.standard_normal((2, d))[rng.integers(2, size=m)]
    else:
        x = np.zeros((m, d))
    ref = rng.standard_normal((labelled, d)) if labelled else None
    probs = rng.dirichlet(np.full(3, 0.3), size=m)
    factors = dv.gradient_factors(np.eye(3)[rng.integers(3, size=m)] if m % 2 else probs)
    for k in (1, (m + 1) // 2, m):
        for picks in (
            dv.k_center_greedy(x, k, seed=seed, labelled=ref),
            dv.kmeans_pp(x, k, seed=seed, labelled=ref),
            dv.badge(factors, x, k, seed=seed),
        ):
            assert picks.shape == (k,)
            assert_valid_batch(picks, m)


# --- Uncertainty measures -----------------------------------------------------------------


@st.composite
def distributions(draw: Any, min_classes: int = 2, max_classes: int = 12) -> np.ndarray:
    """One probability row, with exact zeros and ties as likely as not."""
    weights = draw(
        st.lists(
            st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0)),
            min_size=min_classes,
            max_size=max_classes,
        )
    )
    w = np.array(weights)
    assume(w.sum() > 1e-6)
    return w / w.sum()


def measure(name: str, p: np.ndarray) -> float:
    return float(MEASURES[name](p[None, :])[0])


@FAST
@given(p=distributions(), t=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6))
def test_every_measure_rises_as_a_distribution_is_mixed_with_the_uniform_one(p, t):
    uniform = np.full(len(p), 1.0 / len(p))
    for name in MEASURES:
        values = [measure(name, (1 - s) * p + s * uniform) for s in sorted(t)]
        assert all(b >= a - TOL for a, b in itertools.pairwise(values)), name
        assert all(0.0 <= v <= measure(name, uniform) for v in values), name


@pytest.mark.parametrize("classes", [2, 3, 7, 21])
def test_every_measure_is_one_at_the_uniform_distribution_and_zero_at_a_certain_one(classes):
    uniform = np.full((1, classes), 1.0 / classes)
    certain = np.eye(classes)
    for fn in MEASURES.values():
        np.testing.assert_allclose(fn(uniform), [1.0], atol=TOL)
        np.testing.assert_array_equal(fn(certain), np.zeros(classes))


@FAST
@given(rows=st.lists(distributions(3, 3), min_size=1, max_size=8), data=st.data())
def test_every_measure_ignores_the_order_of_the_classes(rows, data):
    p = np.array(rows)
    perm = data.draw(st.permutations(range(3)))
    for name, fn in MEASURES.items():
        values = fn(p)
        np.testing.assert_allclose(fn(p[:, perm]), values, rtol=0, atol=TOL, err_msg=name)
        assert ((values >= 0.0) & (values <= 1.0)).all()


@st.composite
def mc_passes(draw: Any) -> np.ndarray:
    """(T, 1, c) passes over one clip."""
    c = draw(st.integers(2, 6))
    passes = draw(st.lists(distributions(c, c), min_size=2, max_size=5))
    return np.array(passes)[:, None, :]


@FAST
@given(mc=mc_passes(), t=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6), data=st.data())
def test_bald_falls_as_the_passes_agree_and_ignores_class_and_pass_order(mc, t, data):
    mean = mc.mean(axis=0, keepdims=True)
    values = [float(u.bald((1 - s) * mc + s * mean)[0]) for s in sorted(t)]
    assert all(b <= a + TOL for a, b in itertools.pairwise(values))
    assert all(0.0 <= v <= 1.0 for v in values)
    assert float(u.bald(np.repeat(mean, len(mc), axis=0))[0]) <= TOL  # all passes agree
    classes = data.draw(st.permutations(range(mc.shape[2])))
    order = data.draw(st.permutations(range(len(mc))))
    shuffled = mc[order][:, :, classes]
    np.testing.assert_allclose(u.bald(shuffled), u.bald(mc), rtol=0, atol=TOL)


@FAST
@given(
    core=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=10),
    data=st.data(),
    alpha=st.floats(0.0, 1.0),
)
def test_hierarchical_uncertainty_lies_between_its_rings_and_falls_back_to_the_core(
    core, data, alpha
):
    n = len(core)
    fine = data.draw(
        st.lists(st.one_of(st.just(math.nan), st.floats(0.0, 1.0)), min_size=n, max_size=n)
    )
    c, f = np.array(core), np.array(fine)
    mixed = u.hierarchical(c, f, alpha)
    has_fine = ~np.isnan(f)
    np.testing.assert_array_equal(mixed[~has_fine], c[~has_fine])
    low, high = np.fmin(c, f), np.fmax(c, f)
    assert ((mixed >= low - TOL) & (mixed <= high + TOL)).all()
    np.testing.assert_array_equal(u.hierarchical(c, f, 1.0), c)
    np.testing.assert_array_equal(u.hierarchical(c, f, 0.0)[has_fine], f[has_fine])
