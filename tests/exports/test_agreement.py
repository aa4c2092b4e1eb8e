"""Agreement at one ring: Krippendorff's alpha (nominal) overall and one-vs-rest per class,
raters against a consensus (Cohen's kappa), raters against gold. Expected values are worked
out by hand in the comments (coincidence matrices for alpha)."""

from __future__ import annotations

import json
import random
from dataclasses import asdict

import krippendorff
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from exports.core import agreement
from exports.core.aggregation import DuplicateRatingError, Rating
from exports.core.agreement import (
    GoldAccuracy,
    RaterAgreement,
    alpha_per_class,
    cohen_kappa,
    gold_accuracy,
    krippendorff_alpha,
    rater_vs_consensus,
)
from tests.exports.rating_tables import PROPERTY, ratings_of

# Five clips, three raters, labels a, b, c (r3 did not rate i4).
FIVE = {
    "i1": {"r1": "a", "r2": "a", "r3": "a"},
    "i2": {"r1": "a", "r2": "a", "r3": "b"},
    "i3": {"r1": "b", "r2": "b", "r3": "b"},
    "i4": {"r1": "a", "r2": "b"},
    "i5": {"r1": "c", "r2": "c", "r3": "a"},
}


def test_alpha_by_hand_from_the_coincidence_matrix():
    # Each ordered pair of values within a clip with m ratings adds 1/(m-1) to o[c][k].
    # i1: aa 6/2 = 3. i2: aa 2/2 = 1, ab 1, ba 1. i3: bb 3. i4 (m=2): ab 1, ba 1.
    # i5: cc 1, ca 1, ac 1.  o: aa 4, ab 2, ac 1 | ba 2, bb 3 | ca 1, cc 1.
    # n_a = 7, n_b = 5, n_c = 2, n = 14. Off-diagonal o = 2+1+2+1 = 6.
    # sum_{c!=k} n_c n_k = n^2 - sum n_c^2 = 196 - (49+25+4) = 118.
    # alpha = 1 - (n-1) * 6 / 118 = 1 - 78/118 = 40/118 = 20/59.
    assert krippendorff_alpha(ratings_of(FIVE)) == pytest.approx(20 / 59, abs=1e-12)


def test_alpha_per_class_by_hand_one_vs_rest():
    # "a" vs rest (x): i1 aaa, i2 aax, i3 xxx, i4 ax, i5 xxa.
    #   o_aa = 3+1 = 4, o_ax = 1 (i2) + 1 (i4) + 1 (i5) = 3, o_xx = 3 (i3) + 1 (i5) = 4.
    #   n_a = 7, n_x = 7; alpha = 1 - 13 * (3+3) / (2*7*7) = 1 - 78/98 = 10/49.
    # "b" vs rest: i1 xxx, i2 xxb, i3 bbb, i4 xb, i5 xxx.
    #   o_xx = 3+1+3 = 7, o_xb = 1+1 = 2, o_bb = 3; n_b = 5, n_x = 9.
    #   alpha = 1 - 13 * 4 / (2*5*9) = 1 - 52/90 = 19/45.
    # "c" vs rest: i1-i3 xxx (3 each), i4 xx (2/1 = 2), i5 ccx: o_cc 1, o_cx 1.
    #   o_xx = 11, n_c = 2, n_x = 12; alpha = 1 - 13 * 2 / (2*2*12) = 1 - 26/48 = 11/24.
    result = alpha_per_class(ratings_of(FIVE))
    assert list(result) == ["a", "b", "c"]
    assert result["a"] == pytest.approx(10 / 49, abs=1e-12)
    assert result["b"] == pytest.approx(19 / 45, abs=1e-12)
    assert result["c"] == pytest.approx(11 / 24, abs=1e-12)


def test_alpha_on_krippendorffs_textbook_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", C: nominal data,
    # four observers, twelve units, missing values; published alpha = 0.743.
    rows = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    }
    ratings = [
        Rating(item=unit, rater=rater, label=f"v{value}")
        for rater, values in rows.items()
        for unit, value in enumerate(values, start=1)
        if value is not None
    ]
    # Unit 12 has one value and drops out. Value counts over the 11 others: n_1 = 9,
    # n_2 = 13, n_3 = 10, n_4 = 5, n_5 = 3, n = 40. Off-diagonal coincidences (ordered
    # pairs of different values, each 1/(m-1)): unit 2 (2,2,3,2) 6 pairs / 3 = 2, unit 6
    # (1,2,3,4) 12 / 3 = 4, unit 8 (1,1,2,1) 6 / 3 = 2; in all 8.
    # sum_{c!=k} n_c n_k = 1600 - (81+169+100+25+9) = 1216.
    # alpha = 1 - 39 * 8 / 1216 = 904/1216 = 0.74342.
    assert krippendorff_alpha(ratings) == pytest.approx(904 / 1216, abs=1e-12)
    assert round(904 / 1216, 3) == 0.743


def test_alpha_is_undefined_without_an_item_rated_twice():
    ratings = ratings_of({"i1": {"r1": "a"}, "i2": {"r2": "b"}})
    assert krippendorff_alpha(ratings) is None
    assert alpha_per_class(ratings) == {"a": None, "b": None}
    assert krippendorff_alpha([]) is None
    assert alpha_per_class([]) == {}


def test_alpha_is_undefined_when_every_paired_rating_is_one_label():
    # Perfect agreement on a single label: expected disagreement 0, alpha 0/0. The lone "b"
    # on i3 cannot be paired and does not make the figure defined.
    ratings = ratings_of(
        {"i1": {"r1": "a", "r2": "a"}, "i2": {"r1": "a", "r3": "a"}, "i3": {"r2": "b"}}
    )
    assert krippendorff_alpha(ratings) is None
    assert alpha_per_class(ratings) == {"a": None, "b": None}


def test_a_single_rated_item_changes_nothing():
    extra = [*ratings_of(FIVE), Rating("i6", "r1", "d")]
    assert krippendorff_alpha(extra) == pytest.approx(20 / 59, abs=1e-12)
    per_class = alpha_per_class(extra)
    assert per_class["d"] is None
    assert per_class["a"] == pytest.approx(10 / 49, abs=1e-12)


def test_perfect_agreement_on_two_labels_is_one():
    # Disagreement observed 0, expected > 0: alpha = 1 - 0 = 1.
    ratings = ratings_of({"i1": {"r1": "a", "r2": "a"}, "i2": {"r1": "b", "r2": "b"}})
    assert krippendorff_alpha(ratings) == 1.0


def test_a_duplicate_rating_is_refused():
    with pytest.raises(DuplicateRatingError):
        krippendorff_alpha([Rating("i1", "r1", "a"), Rating("i1", "r1", "b")])


rating_sets = st.dictionaries(
    keys=st.tuples(st.integers(0, 5), st.sampled_from(["r1", "r2", "r3", "r4"])),
    values=st.sampled_from(["mad", "sad", "joyful"]),
    min_size=1,
    max_size=24,
).map(lambda pairs: [Rating(item, rater, label) for (item, rater), label in pairs.items()])


@given(ratings=rating_sets, seed=st.integers(0, 2**32 - 1))
@PROPERTY
def test_alpha_ignores_input_order_and_the_names_of_labels_and_raters(ratings, seed):
    # Nominal alpha depends on which ratings agree, not on what the labels or raters are
    # called: a bijective renaming (which also changes the integer encoding) keeps it.
    other = list(ratings)
    random.Random(seed).shuffle(other)
    rename = {"mad": "zz", "sad": "aa", "joyful": "mm"}
    renamed = [Rating(r.item, "x" + r.rater[::-1], rename[r.label]) for r in other]
    expected = krippendorff_alpha(ratings)
    if expected is None:
        assert krippendorff_alpha(renamed) is None
    else:
        assert krippendorff_alpha(renamed) == pytest.approx(expected, abs=1e-12)
    per_class = alpha_per_class(ratings)
    assert alpha_per_class(other) == per_class
    renamed_per_class = alpha_per_class(renamed)
    for label, value in per_class.items():
        if value is None:
            assert renamed_per_class[rename[label]] is None
        else:
            assert renamed_per_class[rename[label]] == pytest.approx(value, abs=1e-12)


@given(
    seed=st.integers(0, 2**32 - 1),
    items=st.integers(1, 300),
    values=st.integers(2, 9),
    most=st.integers(2, 6),
    block=st.integers(1, 50),
)
@PROPERTY
def test_blockwise_alpha_is_krippendorffs_to_the_bit(seed, items, values, most, block):
    # Up to 6 raters per item: 1/(m - 1) is then not always a power of two, so a different
    # summation order would show in the last bits.
    rng = np.random.default_rng(seed)
    counts = np.zeros((items, values), dtype=np.int_)
    for row in counts:
        np.add.at(row, rng.integers(values, size=rng.integers(2, most + 1)), 1)
    counts[0, :2] = 1  # two values occur, so alpha is defined
    expected = krippendorff.alpha(
        value_counts=counts, value_domain=np.arange(values), level_of_measurement="nominal"
    )
    assert agreement._blockwise_alpha(counts, block * values * values) == expected
    assert agreement._blockwise_alpha(counts) == expected


@given(seed=st.integers(0, 2**32 - 1), items=st.integers(1, 400), values=st.integers(2, 12))
@PROPERTY
def test_the_exact_coincidences_are_the_blockwise_loops_to_the_bit(seed, items, values):
    # 2, 3 or 5 ratings per item: every divisor is a power of two, the shortcut applies.
    rng = np.random.default_rng(seed)
    counts = np.zeros((items, values), dtype=np.int_)
    for row in counts:
        np.add.at(row, rng.integers(values, size=rng.choice([2, 3, 5])), 1)
    counts[0] = 0
    counts[0, :2] = 1  # two values occur, so alpha is defined
    assert agreement._exact_coincidences(counts) is not None
    expected = krippendorff.alpha(
        value_counts=counts, value_domain=np.arange(values), level_of_measurement="nominal"
    )
    assert agreement._blockwise_alpha(counts, values * values) == expected


def test_the_exact_shortcut_steps_aside_for_other_divisors():
    counts = np.array([[2, 0], [1, 1], [2, 2]])  # 2, 2 and 4 ratings: 1/3 is not exact
    assert agreement._exact_coincidences(counts) is None
    expected = krippendorff.alpha(
        value_counts=counts, value_domain=np.arange(2), level_of_measurement="nominal"
    )
    assert agreement._blockwise_alpha(counts, 4) == expected


def test_large_inputs_take_the_blockwise_path_with_the_same_figures(monkeypatch):
    rng = random.Random(5)
    ratings = [
        Rating(item, rater, rng.choice(["mad", "sad", "joyful", "mad"]))
        for item in range(400)
        for rater in rng.sample(["r1", "r2", "r3", "r4", "r5"], rng.randint(1, 5))
    ]
    direct = (krippendorff_alpha(ratings), alpha_per_class(ratings))
    calls = []
    blockwise = agreement._blockwise_alpha
    monkeypatch.setattr(agreement, "BLOCK_CELLS", 64)
    monkeypatch.setattr(agreement, "_blockwise_alpha", lambda c: calls.append(1) or blockwise(c))
    assert (krippendorff_alpha(ratings), alpha_per_class(ratings)) == direct
    assert len(calls) == 4  # overall and three classes


# --- raters against a consensus ---------------------------------------------------------


def test_cohen_kappa_by_hand():
    # 10 items. rater/consensus: a/a 4, a/b 1, b/a 2, b/b 3. Agreeing 7.
    # rater: a 5, b 5; consensus: a 6, b 4. Chance (counts) 5*6 + 5*4 = 50.
    # kappa = (10*7 - 50) / (100 - 50) = 20/50 = 0.4.
    rater = ["a"] * 4 + ["a"] + ["b"] * 2 + ["b"] * 3
    consensus = ["a"] * 4 + ["b"] + ["a"] * 2 + ["b"] * 3
    assert cohen_kappa(rater, consensus) == pytest.approx(0.4, abs=1e-12)


def test_cohen_kappa_undefined_and_zero_cases():
    # Both always "a": chance agreement 1, kappa 0/0.
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None
    assert cohen_kappa([], []) is None
    # Always "a" against always "b": p_o = 0, p_e = 0, kappa = 0.
    assert cohen_kappa(["a", "a"], ["b", "b"]) == 0.0
    with pytest.raises(ValueError, match="length"):
        cohen_kappa(["a"], [])


@given(
    pairs=st.lists(
        st.tuples(st.sampled_from("abc"), st.sampled_from("abc")), min_size=1, max_size=30
    )
)
@PROPERTY
def test_cohen_kappa_matches_scikit_learn_where_defined(pairs):
    first = [a for a, _ in pairs]
    second = [b for _, b in pairs]
    kappa = cohen_kappa(first, second)
    if kappa is None:
        assert len(set(first)) == 1
        assert set(second) == set(first)
    else:
        assert kappa == pytest.approx(cohen_kappa_score(first, second), abs=1e-9)


def test_rater_vs_consensus_by_hand():
    table = {
        "i1": {"r1": "a", "r2": "a"},
        "i2": {"r1": "b", "r2": "a"},
        "i3": {"r1": "b", "r2": "a"},
        "i4": {"r1": "a", "r3": "b"},  # no consensus for i4: does not count
    }
    consensus = {"i1": "a", "i2": "b", "i3": "a"}
    result = rater_vs_consensus(ratings_of(table), consensus)
    assert list(result) == ["r1", "r2", "r3"]
    # r1 on i1-i3: a/a, b/b, b/a: agreeing 2 of 3. rater a 1, b 2; consensus a 2, b 1.
    # kappa = (3*2 - (1*2 + 2*1)) / (9 - 4) = 2/5.
    assert result["r1"] == RaterAgreement(items=3, agreeing=2, share=2 / 3, kappa=0.4)
    # r2 always a; consensus a 2, b 1: agreeing 2. kappa = (3*2 - 3*2) / (9 - 6) = 0.
    assert result["r2"] == RaterAgreement(items=3, agreeing=2, share=2 / 3, kappa=0.0)
    # r3 rated only i4, which has no consensus.
    assert result["r3"] == RaterAgreement(items=0, agreeing=0, share=None, kappa=None)


# --- gold -------------------------------------------------------------------------------


def test_gold_accuracy_by_hand():
    table = {
        "g1": {"r1": "a", "r2": "b"},
        "g2": {"r1": "b", "r2": "b"},
        "i3": {"r1": "c", "r3": "c"},  # not gold: ignored
    }
    result = gold_accuracy(ratings_of(table), {"g1": "a", "g2": "b"})
    assert result == {
        "r1": GoldAccuracy(items=2, correct=2, accuracy=1.0),
        "r2": GoldAccuracy(items=2, correct=1, accuracy=0.5),
        "r3": GoldAccuracy(items=0, correct=0, accuracy=None),
    }


def test_outputs_survive_json():
    ratings = ratings_of(FIVE)
    consensus = {"i1": "a", "i2": "a", "i3": "b", "i4": "a", "i5": "c"}
    for results in (rater_vs_consensus(ratings, consensus), gold_accuracy(ratings, consensus)):
        payload = {rater: asdict(result) for rater, result in results.items()}
        assert json.loads(json.dumps(payload)) == payload
    per_class = alpha_per_class(ratings)
    assert json.loads(json.dumps(per_class)) == per_class
    assert all(type(v) is float for v in per_class.values())
