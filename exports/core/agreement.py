"""Agreement figures for a dataset at one ring: Krippendorff's alpha (nominal) overall and per
class, each rater against a consensus, each rater against gold answers.

Input: `Rating(item, rater, label)` from `exports.core.aggregation`, one per (item, rater)
(a duplicate raises `DuplicateRatingError`), all at one ring. Outputs are plain frozen
dataclasses and dicts with sorted keys; `dataclasses.asdict` makes them JSON.

Alpha is undefined (None, never NaN) when no item has two or more ratings, or when the
ratings on such items all carry one label: its expected disagreement is then 0 and alpha is
0/0. Perfect agreement on a single label says nothing about reliability, so it is not 1.0.
Items with a single rating cannot be paired and do not count (as in Krippendorff's own
definition); a label that only occurs on such items does not enter the figure either.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import krippendorff
import numpy as np

from exports.core.aggregation import Item, Rating, labels_by_item


@dataclass(frozen=True)
class RaterAgreement:
    """One rater against the consensus over the items they rated that have a consensus.

    `share` = agreeing / items; `kappa`: Cohen's kappa of the rater vs the consensus on
    those items. Both are None when items == 0; kappa is also None when undefined (rater and
    consensus use one and the same label on every item: chance agreement is 1, kappa 0/0).
    """

    items: int
    agreeing: int
    share: float | None
    kappa: float | None


@dataclass(frozen=True)
class GoldAccuracy:
    """One rater on gold items: `correct` of `items`; `accuracy` None when items == 0."""

    items: int
    correct: int
    accuracy: float | None


def _nominal_alpha(by_item: Mapping[Item, Mapping[str, str | bool]]) -> float | None:
    """Alpha (nominal) of {item: {rater: value}}; None when undefined (module docstring).

    Builds the reliability matrix, shape (raters, items), NaN where a rater did not rate an
    item, values encoded as their index in the sorted set of values (strings sort by key,
    booleans False < True), so the encoding depends on the values only.
    """
    pairable = {item: raters for item, raters in by_item.items() if len(raters) >= 2}
    values = sorted({value for raters in pairable.values() for value in raters.values()}, key=str)
    if len(values) < 2:
        return None
    code = {value: index for index, value in enumerate(values)}
    rater_ids = sorted({rater for raters in pairable.values() for rater in raters})
    row = {rater: index for index, rater in enumerate(rater_ids)}
    matrix = np.full((len(rater_ids), len(pairable)), np.nan)
    for column, raters in enumerate(pairable.values()):
        for rater, value in raters.items():
            matrix[row[rater], column] = code[value]
    return float(
        krippendorff.alpha(
            reliability_data=matrix,
            value_domain=np.arange(len(values)),
            level_of_measurement="nominal",
        )
    )


def krippendorff_alpha(ratings: Iterable[Rating]) -> float | None:
    """Krippendorff's alpha, nominal, over all items and raters (None: module docstring)."""
    return _nominal_alpha(labels_by_item(ratings))


def alpha_per_class(ratings: Iterable[Rating]) -> dict[str, float | None]:
    """{label: alpha of the one-vs-rest coding "label == c"} for every label in the input.

    One-vs-rest: each rating becomes True (it chose c) or False (it chose anything else), and
    nominal alpha is computed on that binary coding. A class nobody paired on (it occurs only
    on single-rated items) or that every pairable rating chose gives None.
    """
    by_item = labels_by_item(ratings)
    labels = sorted({label for raters in by_item.values() for label in raters.values()})
    return {
        label: _nominal_alpha(
            {
                item: {rater: chosen == label for rater, chosen in raters.items()}
                for item, raters in by_item.items()
            }
        )
        for label in labels
    }


def _by_rater(ratings: Iterable[Rating]) -> dict[str, dict[Item, str]]:
    """{rater: {item: label}}, raters sorted; duplicates rejected by labels_by_item."""
    result: dict[str, dict[Item, str]] = {}
    for item, raters in labels_by_item(ratings).items():
        for rater, label in raters.items():
            result.setdefault(rater, {})[item] = label
    return dict(sorted(result.items()))


def cohen_kappa(first: list[str], second: list[str]) -> float | None:
    """Cohen's kappa of two equal-length label sequences, None when undefined.

    kappa = (p_o - p_e) / (1 - p_e) with p_o the share of positions that agree and
    p_e = sum_c (share of c in first) (share of c in second). Computed on integer counts,
    (n * agreeing - sum_c a_c b_c) / (n^2 - sum_c a_c b_c), so "undefined" is exact: the
    denominator is 0 only when both sequences are one and the same label throughout (or
    empty).
    """
    if len(first) != len(second):
        raise ValueError(f"sequences differ in length: {len(first)} != {len(second)}")
    n = len(first)
    agreeing = sum(a == b for a, b in zip(first, second, strict=True))
    first_counts, second_counts = Counter(first), Counter(second)
    chance = sum(first_counts[c] * second_counts[c] for c in first_counts)
    if n * n == chance:
        return None
    return (n * agreeing - chance) / (n * n - chance)


def rater_vs_consensus(
    ratings: Iterable[Rating], consensus: Mapping[Item, str]
) -> dict[str, RaterAgreement]:
    """Each rater against `consensus` ({item: label}, e.g. the majority or DS labels).

    Only items with a consensus count. Every rater of the input appears (items 0 when none of
    theirs has a consensus), so a report lists every annotator. The consensus is taken as
    given: when it was built from the same ratings, it includes the rater's own vote, which
    raises their agreement (more so on items with few raters); the caller decides.
    """
    result: dict[str, RaterAgreement] = {}
    for rater, labels in _by_rater(ratings).items():
        mine = [label for item, label in labels.items() if item in consensus]
        theirs = [consensus[item] for item in labels if item in consensus]
        agreeing = sum(a == b for a, b in zip(mine, theirs, strict=True))
        result[rater] = RaterAgreement(
            items=len(mine),
            agreeing=agreeing,
            share=agreeing / len(mine) if mine else None,
            kappa=cohen_kappa(mine, theirs) if mine else None,
        )
    return result


def gold_accuracy(ratings: Iterable[Rating], gold: Mapping[Item, str]) -> dict[str, GoldAccuracy]:
    """Each rater's accuracy on the gold items they rated ({item: gold label}).

    Ratings of items without a gold answer are ignored; every rater of the input appears
    (items 0, accuracy None when they rated no gold item).
    """
    result: dict[str, GoldAccuracy] = {}
    for rater, labels in _by_rater(ratings).items():
        graded = [label == gold[item] for item, label in labels.items() if item in gold]
        correct = sum(graded)
        result[rater] = GoldAccuracy(
            items=len(graded),
            correct=correct,
            accuracy=correct / len(graded) if graded else None,
        )
    return result
