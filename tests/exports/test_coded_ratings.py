"""exports.core.coded gives what exports.core.aggregation and agreement give from Rating
objects, to the bit, on random rings with many ties (few labels, one to five raters)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from exports.core import aggregation as agg
from exports.core import agreement
from exports.core.coded import (
    RingCollector,
    alpha,
    alpha_per_class,
    gold_accuracy,
    rater_vs_consensus,
    soft_and_pairwise,
)


def random_ring(seed: int, labels: int) -> list[agg.Rating]:
    rng = random.Random(seed)
    names = [f"r{i:02d}" for i in range(12)]
    keys = [f"k{i}" for i in range(labels)]
    ratings = [
        agg.Rating(item=item, rater=rater, label=rng.choice(keys[: rng.randint(1, labels)]))
        for item in rng.sample(range(10_000), 300)
        for rater in rng.sample(names, rng.randint(1, 5))
    ]
    rng.shuffle(ratings)  # the collector takes them in any order
    return ratings


def collect(ratings: list[agg.Rating]):
    collector = RingCollector()
    for r in ratings:
        collector.add(r.item, r.rater, r.label)
    return collector.finish()


@pytest.mark.parametrize(("seed", "labels"), [(0, 2), (1, 3), (2, 7), (3, 1)])
def test_every_figure_equals_the_object_version(seed, labels):
    ratings = random_ring(seed, labels)
    ring = collect(ratings)
    votes = ring.votes()
    items = ring.items.tolist()

    majority = agg.majority_vote(ratings)
    assert list(majority) == items
    assert any(m.tied for m in majority.values()) or labels == 1
    assert {
        item: agg.MajorityResult(ring.labels[label], votes_, raters, tied)
        for item, label, votes_, raters, tied in zip(
            items, votes.label.tolist(), votes.votes.tolist(), votes.raters.tolist(),
            votes.tied.tolist(), strict=True,
        )
    } == majority  # fmt: skip

    soft, per_item = agg.soft_labels(ratings), agg.item_agreement(ratings)
    for item, (shares, pairwise) in zip(items, soft_and_pairwise(ring, votes), strict=True):
        assert list(shares.items()) == list(soft[item].items())
        assert pairwise == per_item[item].pairwise

    assert alpha(ring, votes) == agreement.krippendorff_alpha(ratings)
    assert alpha_per_class(ring, votes) == agreement.alpha_per_class(ratings)

    consensus = {item: m.label for item, m in majority.items()}
    assert rater_vs_consensus(ring, votes.label) == agreement.rater_vs_consensus(ratings, consensus)
    rng = random.Random(seed)
    gold = {item: rng.choice([*ring.labels, "never-given"]) for item in rng.sample(items, 40)}
    gold[123_456] = ring.labels[0]  # a gold clip nobody rated at this ring
    assert gold_accuracy(ring, gold) == agreement.gold_accuracy(ratings, gold)

    expected = agg.code_ratings(agg.labels_by_item(ratings))
    coded = ring.for_dawid_skene()
    assert (coded.items, coded.names) == (expected.items, expected.names)
    for name in ("tasks", "workers", "labels"):
        assert np.array_equal(getattr(coded, name), getattr(expected, name))


def test_a_rater_rating_an_item_twice_is_refused():
    collector = RingCollector()
    collector.add(1, "r1", "a")
    collector.add(2, "r1", "a")
    collector.add(1, "r1", "b")
    with pytest.raises(agg.DuplicateRatingError, match="'r1' rated item 1"):
        collector.finish()


def test_an_empty_ring_has_no_items():
    ring = RingCollector().finish()
    assert len(ring) == 0
    assert ring.items.tolist() == []
    votes = ring.votes()
    assert list(soft_and_pairwise(ring, votes)) == []
    assert alpha(ring, votes) is None
