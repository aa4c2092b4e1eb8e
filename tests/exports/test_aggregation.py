"""Label aggregation at one ring: majority vote and its tie rule, soft labels, Dawid-Skene,
agreement per clip. Expected values are worked out by hand in the comments."""

from __future__ import annotations

import json
import random
from dataclasses import asdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exports.core.aggregation import (
    DSResult,
    DuplicateRatingError,
    ItemAgreement,
    MajorityResult,
    Rating,
    at_ring,
    dawid_skene,
    item_agreement,
    majority_vote,
    soft_labels,
)
from tests.exports.rating_tables import PROPERTY, ratings_of

# {(item, rater): label} keeps one rating per pair, as the functions require.
rating_sets = st.dictionaries(
    keys=st.tuples(
        st.one_of(st.integers(0, 6), st.sampled_from(["c1", "c2", "c3"])),
        st.sampled_from(["r1", "r2", "r3", "r4", "r5"]),
    ),
    values=st.sampled_from(["mad", "sad", "joyful", "mad.angry"]),
    min_size=1,
    max_size=30,
).map(lambda pairs: [Rating(item, rater, label) for (item, rater), label in pairs.items()])


def shuffled(ratings: list[Rating], seed: int) -> list[Rating]:
    copy = list(ratings)
    random.Random(seed).shuffle(copy)
    return copy


# --- at_ring ----------------------------------------------------------------------------


def test_at_ring_gives_the_ancestor_at_each_ring():
    assert at_ring("mad.angry.furious", 0) == "mad"
    assert at_ring("mad.angry.furious", 1) == "mad.angry"
    assert at_ring("mad.angry.furious", 2) == "mad.angry.furious"


def test_a_key_shallower_than_the_ring_does_not_count_there():
    assert at_ring("mad", 1) is None
    assert at_ring("mad.angry", 2) is None


@pytest.mark.parametrize(("key", "ring"), [("", 0), ("mad..x", 0), (".mad", 0), ("mad", -1)])
def test_at_ring_refuses_malformed_keys_and_negative_rings(key, ring):
    with pytest.raises(ValueError, match=r"ring|malformed"):
        at_ring(key, ring)


# --- majority vote ----------------------------------------------------------------------


def test_majority_vote_takes_the_most_chosen_label():
    result = majority_vote(ratings_of({"c1": {"r1": "mad", "r2": "mad", "r3": "sad"}}))
    assert result == {"c1": MajorityResult(label="mad", votes=2, raters=3, tied=False)}


def test_a_tie_goes_to_the_label_most_frequent_in_the_whole_dataset():
    # c1 is tied 1-1 between joyful and sad. Over the whole input, sad has 1 (c1) + 2 (c2)
    # = 3 ratings, joyful 1: sad wins though joyful sorts first.
    table = {
        "c1": {"r1": "joyful", "r2": "sad"},
        "c2": {"r1": "sad", "r2": "sad"},
    }
    result = majority_vote(ratings_of(table))
    assert result["c1"] == MajorityResult(label="sad", votes=1, raters=2, tied=True)
    assert result["c2"] == MajorityResult(label="sad", votes=2, raters=2, tied=False)


def test_a_tie_between_equally_frequent_labels_goes_to_the_smallest_key():
    # joyful and sad have one rating each in the whole input: "joyful" < "sad".
    result = majority_vote(ratings_of({"c1": {"r1": "sad", "r2": "joyful"}}))
    assert result["c1"] == MajorityResult(label="joyful", votes=1, raters=2, tied=True)


def test_the_same_rater_twice_on_one_item_is_refused():
    twice = [Rating("c1", "r1", "mad"), Rating("c1", "r1", "sad")]
    with pytest.raises(DuplicateRatingError, match="r1"):
        majority_vote(twice)


def test_items_come_out_sorted_with_integer_ids_first():
    ratings = [Rating("b", "r1", "mad"), Rating(10, "r1", "mad"), Rating("a", "r1", "mad")]
    ratings.append(Rating(2, "r1", "sad"))
    assert list(majority_vote(ratings)) == [2, 10, "a", "b"]


def test_no_ratings_give_no_items():
    assert majority_vote([]) == {}
    assert soft_labels([]) == {}
    assert item_agreement([]) == {}
    assert dawid_skene([]) == {}


@given(ratings=rating_sets, seed=st.integers(0, 2**32 - 1))
@PROPERTY
def test_shuffling_the_input_changes_no_output(ratings, seed):
    other = shuffled(ratings, seed)
    assert majority_vote(other) == majority_vote(ratings)
    assert list(majority_vote(other)) == list(majority_vote(ratings))
    assert soft_labels(other) == soft_labels(ratings)
    assert item_agreement(other) == item_agreement(ratings)


@given(ratings=rating_sets)
@PROPERTY
def test_the_majority_label_has_the_largest_soft_share(ratings):
    soft = soft_labels(ratings)
    for item, result in majority_vote(ratings).items():
        shares = soft[item]
        assert shares[result.label] == max(shares.values())
        assert result.votes == round(shares[result.label] * result.raters)
        assert result.tied == (sum(s == max(shares.values()) for s in shares.values()) > 1)


# --- soft labels ------------------------------------------------------------------------


def test_soft_labels_are_shares_of_raters_with_sorted_keys():
    # c1: mad 2 of 4, sad 1 of 4, joyful 1 of 4.
    table = {"c1": {"r1": "sad", "r2": "mad", "r3": "joyful", "r4": "mad"}}
    result = soft_labels(ratings_of(table))
    assert result == {"c1": {"joyful": 0.25, "mad": 0.5, "sad": 0.25}}
    assert list(result["c1"]) == ["joyful", "mad", "sad"]


@given(ratings=rating_sets)
@PROPERTY
def test_soft_labels_sum_to_one_and_are_sorted(ratings):
    for shares in soft_labels(ratings).values():
        assert sum(shares.values()) == pytest.approx(1.0)
        assert list(shares) == sorted(shares)


# --- agreement per item -----------------------------------------------------------------


def test_item_agreement_by_hand():
    table = {
        # mad, mad, sad: majority 2/3; pairs r1r2 agree, r1r3 and r2r3 do not: 1/3.
        "c1": {"r1": "mad", "r2": "mad", "r3": "sad"},
        # 2 x mad, 2 x sad: majority 2/4; agreeing pairs 2 of 6 (2*1 + 2*1) / (4*3) = 1/3.
        "c2": {"r1": "mad", "r2": "mad", "r3": "sad", "r4": "sad"},
        # one rater: no pair.
        "c3": {"r1": "joyful"},
    }
    result = item_agreement(ratings_of(table))
    assert result["c1"] == ItemAgreement(raters=3, majority_share=2 / 3, pairwise=1 / 3)
    assert result["c2"] == ItemAgreement(raters=4, majority_share=0.5, pairwise=1 / 3)
    assert result["c3"] == ItemAgreement(raters=1, majority_share=1.0, pairwise=None)


# --- Dawid-Skene ------------------------------------------------------------------------

SWAP = {"mad": "sad", "sad": "mad", "joyful": "joyful"}


def swapper_case() -> tuple[list[Rating], dict[str, str]]:
    """Raters A, B, C are always right; D and E always swap mad and sad.

    c00-c11 (all five raters): the majority is right (3 against 2), which shows DS that D and
    E swap. c12-c15 (A, D and E only): the majority is wrong (2 swapped against 1), DS undoes
    the swap it learnt.
    """
    truth: dict[str, str] = {}
    table: dict[str | int, dict[str, str]] = {}
    for i in range(16):
        item = f"c{i:02d}"
        label = ["mad", "sad", "joyful"][i % 3] if i < 12 else ["mad", "sad"][i % 2]
        truth[item] = label
        good = "ABC" if i < 12 else "A"
        table[item] = dict.fromkeys(good, label) | dict.fromkeys("DE", SWAP[label])
    return ratings_of(table), truth


def test_dawid_skene_recovers_the_truth_where_the_majority_follows_two_swappers():
    ratings, truth = swapper_case()
    majority = {item: r.label for item, r in majority_vote(ratings).items()}
    hard = ["c12", "c13", "c14", "c15"]
    assert all(majority[item] == SWAP[truth[item]] for item in hard)

    result = dawid_skene(ratings)
    assert {item: r.label for item, r in result.items()} == truth
    for item in hard:
        assert result[item].posterior[truth[item]] > 0.99


def test_dawid_skene_when_all_agree_is_the_agreed_label():
    table = {f"c{i}": dict.fromkeys(("r1", "r2", "r3"), ["mad", "sad"][i % 2]) for i in range(6)}
    result = dawid_skene(ratings_of(table))
    for i in range(6):
        agreed = ["mad", "sad"][i % 2]
        assert result[f"c{i}"].label == agreed
        assert list(result[f"c{i}"].posterior) == ["mad", "sad"]
        assert result[f"c{i}"].posterior[agreed] > 0.99
        assert sum(result[f"c{i}"].posterior.values()) == pytest.approx(1.0)


def test_dawid_skene_with_one_label_overall_is_certain():
    result = dawid_skene(ratings_of({1: {"r1": "mad", "r2": "mad"}, "c2": {"r1": "mad"}}))
    assert result == {
        1: DSResult(label="mad", posterior={"mad": 1.0}),
        "c2": DSResult(label="mad", posterior={"mad": 1.0}),
    }


@pytest.mark.parametrize(("n_iter", "tol"), [(0, 1e-5), (10, -1.0)])
def test_dawid_skene_refuses_bad_parameters(n_iter, tol):
    with pytest.raises(ValueError, match=r"n_iter|tol"):
        dawid_skene([Rating("c1", "r1", "mad")], n_iter=n_iter, tol=tol)


def test_dawid_skene_output_does_not_depend_on_input_order_for_the_swapper_case():
    ratings, _ = swapper_case()
    assert dawid_skene(shuffled(ratings, 7)) == dawid_skene(ratings)
    assert dawid_skene(list(reversed(ratings))) == dawid_skene(ratings)


@given(ratings=rating_sets, seed=st.integers(0, 2**32 - 1))
@settings(max_examples=15, deadline=None, derandomize=True)
def test_dawid_skene_is_the_same_for_any_input_order(ratings, seed):
    expected = dawid_skene(ratings)
    assert dawid_skene(shuffled(ratings, seed)) == expected
    assert list(dawid_skene(shuffled(ratings, seed))) == list(expected)


def test_results_survive_json():
    ratings, _ = swapper_case()
    for results in (majority_vote(ratings), item_agreement(ratings), dawid_skene(ratings)):
        payload = {str(item): asdict(result) for item, result in results.items()}
        assert json.loads(json.dumps(payload)) == payload
    assert json.loads(json.dumps(soft_labels(ratings))) == soft_labels(ratings)
