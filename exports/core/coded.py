"""One ring's ratings as integer arrays, grouped once, and every per-ring figure a dataset
version needs computed from them: the same results as `exports.core.aggregation` and
`exports.core.agreement` give from `Rating` objects, without those objects.

Why: at 100,000 clips a build holds ~750,000 ratings over its three rings. As `Rating`
objects they took ~60 MB, and each of the nine figures per ring grouped them again
(`labels_by_item`: a dict of dicts per call), which made the aggregation stage the build's
slowest (50 s) and its memory peak. Here a ring is four arrays (item index, rater code,
label code per rating, 12 bytes a rating) sorted by (item, rater) once, and each figure is a
few numpy reductions over (item, label) pairs.

Same results, to the bit: items are integer clip ids in numeric order, raters and labels are
coded by their rank among the sorted names (so code order is name order, which the tie
rules use), and every float is the same division of the same integers as the object
version (`tests/exports/test_coded_ratings.py` compares both on random ratings with ties).
The value-count matrices handed to Krippendorff's alpha are the ones `agreement` builds,
row for row, so alpha is the same float.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from exports.core import agreement
from exports.core.aggregation import CodedRatings, DuplicateRatingError


class RingCollector:
    """Collects one ring's ratings as they stream in (any order); `finish` codes them."""

    def __init__(self) -> None:
        self._item = array("q")
        self._rater = array("i")
        self._label = array("i")
        self._raters: dict[str, int] = {}
        self._labels: dict[str, int] = {}

    def add(self, item: int, rater: str, label: str) -> None:
        rater_code = self._raters.setdefault(rater, len(self._raters))
        label_code = self._labels.setdefault(label, len(self._labels))
        self._item.append(item)
        self._rater.append(rater_code)
        self._label.append(label_code)

    def finish(self) -> CodedRing:
        """The ring, ratings sorted by (item, rater). Raises DuplicateRatingError when a
        rater rated an item twice. The collector is emptied."""
        raters, labels = sorted(self._raters), sorted(self._labels)
        rater_rank = _ranks(self._raters, raters)
        label_rank = _ranks(self._labels, labels)
        item = np.frombuffer(self._item, dtype=np.int64).copy()
        rater = rater_rank[np.frombuffer(self._rater, dtype=np.int32)]
        label = label_rank[np.frombuffer(self._label, dtype=np.int32)]
        self.__init__()  # type: ignore[misc]  # free the buffers
        order = np.lexsort((rater, item))
        item, rater, label = item[order], rater[order], label[order]
        twice = np.flatnonzero((item[1:] == item[:-1]) & (rater[1:] == rater[:-1]))
        if len(twice):
            where = int(twice[0])
            who, what = raters[int(rater[where])], int(item[where])
            raise DuplicateRatingError(f"rater {who!r} rated item {what!r} more than once")
        items, task = np.unique(item, return_inverse=True)
        return CodedRing(items, raters, labels, task.astype(np.int32), rater, label)


def _ranks(codes: Mapping[str, int], names: list[str]) -> np.ndarray:
    rank = np.empty(len(names), dtype=np.int32)
    for position, name in enumerate(names):
        rank[codes[name]] = position
    return rank


@dataclass(frozen=True)
class Votes:
    """Per item (in `CodedRing.items` order): the majority label's code, its votes, the
    item's raters, whether a tie was broken; per (item, label) pair: its count."""

    label: np.ndarray
    votes: np.ndarray
    raters: np.ndarray
    tied: np.ndarray
    pair_task: np.ndarray
    pair_label: np.ndarray
    pair_count: np.ndarray


@dataclass(frozen=True)
class CodedRing:
    """One ring: `items` (sorted clip ids), `raters` and `labels` (sorted names), and per
    rating (sorted by item, then rater) `task` (index into items), `rater`, `label` codes."""

    items: np.ndarray
    raters: list[str]
    labels: list[str]
    task: np.ndarray
    rater: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.task)

    def for_dawid_skene(self) -> CodedRatings:
        """crowd-kit's input exactly as `aggregation.code_ratings` builds it from the same
        ratings (items in order, raters and labels by sorted rank)."""
        return CodedRatings(self.items.tolist(), self.labels, self.task, self.rater, self.label)

    def votes(self) -> Votes:
        """Majority votes with `aggregation.majority_vote`'s tie rule: among the labels with
        the most votes on an item, the one most frequent in the whole ring, then the
        smallest key (the smallest code)."""
        n_items, n_labels = len(self.items), len(self.labels)
        pairs, count = np.unique(self.task.astype(np.int64) * n_labels + self.label,
                                 return_counts=True)  # fmt: skip
        pair_task, pair_label = pairs // n_labels, pairs % n_labels
        overall = np.bincount(self.label, minlength=n_labels)
        top = np.zeros(n_items, dtype=np.int64)
        np.maximum.at(top, pair_task, count)
        leading = np.flatnonzero(count == top[pair_task])
        leaders = np.bincount(pair_task[leading], minlength=n_items)
        order = np.lexsort((pair_label[leading], -overall[pair_label[leading]],
                            pair_task[leading]))  # fmt: skip
        ranked = leading[order]
        first = np.ones(len(ranked), dtype=bool)
        first[1:] = pair_task[ranked][1:] != pair_task[ranked][:-1]
        return Votes(
            label=pair_label[ranked[first]],
            votes=top,
            raters=np.bincount(self.task, minlength=n_items),
            tied=leaders > 1,
            pair_task=pair_task,
            pair_label=pair_label,
            pair_count=count,
        )


def soft_and_pairwise(
    ring: CodedRing, votes: Votes
) -> Iterator[tuple[dict[str, float], float | None]]:
    """Per item in order: `aggregation.soft_labels`' distribution (labels sorted) and
    `item_agreement`'s pairwise agreement (None with one rater)."""
    names = ring.labels
    shares = (votes.pair_count / votes.raters[votes.pair_task]).tolist()
    same = np.zeros(len(ring.items), dtype=np.int64)
    np.add.at(same, votes.pair_task, votes.pair_count * (votes.pair_count - 1))
    raters = votes.raters.tolist()
    agreeing = same.tolist()
    bounds = np.searchsorted(votes.pair_task, np.arange(len(ring.items) + 1)).tolist()
    labels = votes.pair_label.tolist()
    for index, n in enumerate(raters):
        start, end = bounds[index], bounds[index + 1]
        soft = {names[labels[k]]: shares[k] for k in range(start, end)}
        yield soft, (agreeing[index] / (n * (n - 1)) if n > 1 else None)


def _pairable_counts(ring: CodedRing, votes: Votes, columns: np.ndarray) -> np.ndarray:
    """(pairable items, len(columns)) value counts, items in order, as agreement builds them."""
    pairable = votes.raters >= 2
    row_of = np.cumsum(pairable) - 1
    keep = pairable[votes.pair_task] & np.isin(votes.pair_label, columns)
    # int32: a cell counts one item's raters; half the memory of int_ (60,000 pairable items
    # x 72 labels at the outer ring), and every reader sums or casts in int64 as before.
    counts = np.zeros((int(pairable.sum()), len(columns)), dtype=np.int32)
    counts[row_of[votes.pair_task[keep]], np.searchsorted(columns, votes.pair_label[keep])] = (
        votes.pair_count[keep]
    )
    return counts


def alpha(ring: CodedRing, votes: Votes) -> float | None:
    """`agreement.krippendorff_alpha` of the ring."""
    pairable = votes.raters >= 2
    present = np.unique(votes.pair_label[pairable[votes.pair_task]])
    if len(present) < 2:
        return None
    return agreement._alpha_of_counts(_pairable_counts(ring, votes, present))


def alpha_per_class(ring: CodedRing, votes: Votes) -> dict[str, float | None]:
    """`agreement.alpha_per_class` of the ring."""
    chose = _pairable_counts(ring, votes, np.arange(len(ring.labels)))
    return agreement.alpha_per_class_of_counts(chose, ring.labels)


def rater_vs_consensus(
    ring: CodedRing, consensus: np.ndarray
) -> dict[str, agreement.RaterAgreement]:
    """`agreement.rater_vs_consensus` against a consensus label code for every item."""
    n_raters, n_labels = len(ring.raters), len(ring.labels)
    theirs = consensus[ring.task]
    rater = ring.rater.astype(np.int64)
    items = np.bincount(rater, minlength=n_raters).tolist()
    agreeing = np.bincount(rater[ring.label == theirs], minlength=n_raters).tolist()
    size = n_raters * n_labels
    mine_counts = np.bincount(rater * n_labels + ring.label, minlength=size)
    their_counts = np.bincount(rater * n_labels + theirs, minlength=size)
    chance = (mine_counts * their_counts).reshape(n_raters, n_labels).sum(axis=1).tolist()
    return {
        name: agreement.RaterAgreement(
            items=items[code],
            agreeing=agreeing[code],
            share=agreeing[code] / items[code] if items[code] else None,
            kappa=agreement.kappa_of_counts(items[code], agreeing[code], chance[code])
            if items[code]
            else None,
        )
        for code, name in enumerate(ring.raters)
    }


def gold_accuracy(ring: CodedRing, gold: Mapping[int, str]) -> dict[str, agreement.GoldAccuracy]:
    """`agreement.gold_accuracy` of the ring against {clip id: gold label at this ring}."""
    n_raters = len(ring.raters)
    answer = np.full(len(ring.items), -1, dtype=np.int64)  # -1: no gold answer
    code = {name: index for index, name in enumerate(ring.labels)}
    for clip, label in gold.items():
        at = int(np.searchsorted(ring.items, clip))
        if at < len(ring.items) and int(ring.items[at]) == clip:
            answer[at] = code.get(label, -2)  # -2: a label nobody gave here, never correct
    expected = answer[ring.task]
    graded = expected != -1
    rater = ring.rater.astype(np.int64)
    items = np.bincount(rater[graded], minlength=n_raters).tolist()
    correct = np.bincount(rater[graded & (ring.label == expected)], minlength=n_raters).tolist()
    return {
        name: agreement.GoldAccuracy(
            items=items[code_],
            correct=correct[code_],
            accuracy=correct[code_] / items[code_] if items[code_] else None,
        )
        for code_, name in enumerate(ring.raters)
    }
