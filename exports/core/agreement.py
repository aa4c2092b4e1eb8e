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

#: Coincidence tensors of at most this many cells (16 MB of float64) are left to krippendorff
#: in one piece; larger ones are summed in blocks of this size (`_blockwise_alpha`).
BLOCK_CELLS = 1 << 21


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

    Hands krippendorff the value counts, shape (items, values): how many raters gave each
    value to each pairable item, values encoded as their index in the sorted set of values
    (strings sort by key, booleans False < True), so the encoding depends on the values only.
    These are the counts krippendorff derives itself from a (raters, items) reliability
    matrix, so alpha is the same to the bit, without that matrix and its (items, raters,
    values) comparison (gigabytes at 100,000 items and 50 raters).
    """
    pairable = [raters for raters in by_item.values() if len(raters) >= 2]
    values = sorted({value for raters in pairable for value in raters.values()}, key=str)
    if len(values) < 2:
        return None
    code = {value: index for index, value in enumerate(values)}
    counts = np.zeros((len(pairable), len(values)), dtype=np.int_)
    for row, raters in enumerate(pairable):
        for value in raters.values():
            counts[row, code[value]] += 1
    return _alpha_of_counts(counts)


def _alpha_of_counts(counts: np.ndarray) -> float:
    """Nominal alpha of value counts (items, values): krippendorff's own when its coincidence
    tensors are small, else the same computation block by block (`_blockwise_alpha`)."""
    items, values = counts.shape
    if items * values * values <= BLOCK_CELLS:
        return float(
            krippendorff.alpha(
                value_counts=counts.astype(np.int_, copy=False),
                value_domain=np.arange(values),
                level_of_measurement="nominal",
            )
        )
    return _blockwise_alpha(counts)


def _blockwise_alpha(counts: np.ndarray, block_cells: int = BLOCK_CELLS) -> float:
    """krippendorff.alpha(value_counts=counts, level_of_measurement="nominal"), in bounded memory.

    krippendorff 0.9 builds the coincidence matrix from (items, values, values) float64
    tensors, several at once: 100,000 items at the 72 labels of the outer ring are 4 GB
    each. This runs the same operations on blocks of items and adds each block's units to the
    running total one after the other, the order in which numpy sums the whole tensor over
    its first axis, so the result is the same float to the bit (a test compares the two).
    """
    items, values = counts.shape
    exact = _exact_coincidences(counts)
    if exact is not None:
        return _alpha_of_coincidences(exact)
    eye = np.eye(values)
    block = max(1, block_cells // (values * values))
    coincidences = np.zeros((values, values))
    for start in range(0, items, block):
        part = counts[start : start + block].astype(np.int_, copy=False)
        pairable = np.maximum(part.sum(axis=1), 2)
        diagonals = part[:, np.newaxis, :] * eye[np.newaxis, ...]
        unnormalised = part[..., np.newaxis] * part[:, np.newaxis, :] - diagonals
        units = np.divide(unnormalised, (pairable - 1).reshape((-1, 1, 1)), dtype=np.float64)
        coincidences = np.concatenate([coincidences[np.newaxis], units]).sum(axis=0)
    return _alpha_of_coincidences(coincidences)


#: `_exact_coincidences` applies while every unit's divisor is at most this power of two and
#: the sum of squared ratings per item stays below EXACT_LIMIT: every term and partial sum
#: then has at most 10 + 40 significant bits, exact in a float64's 53.
EXACT_DIVISOR = 1 << 10
EXACT_LIMIT = 1 << 40


def _exact_coincidences(counts: np.ndarray) -> np.ndarray | None:
    """The coincidence matrix of `_blockwise_alpha`, to the bit, by integer matrix products;
    None when the shortcut does not apply.

    Each item adds (c_i c_j - [i == j] c_i) / (n_u - 1) to cell (i, j). When every divisor
    n_u - 1 is a power of two (items with 2, 3 or 5 ratings: a dataset of three annotators
    per clip has 2 and 3), each such term is a dyadic fraction that float64 holds exactly,
    and so is every partial sum below EXACT_LIMIT: the sum is then the same float whatever
    the order of the additions, that of `_blockwise_alpha`'s loop included. Grouped by
    divisor, it is C_d^T C_d - diag(colsum C_d) in int64, divided once: one matrix product
    per divisor instead of an (items, values, values) tensor per block (a test compares).
    """
    raters = counts.sum(axis=1)
    divisors = np.maximum(raters, 2) - 1
    if (divisors & (divisors - 1)).any() or int(divisors.max(initial=1)) > EXACT_DIVISOR:
        return None
    if float(np.square(raters.astype(np.float64)).sum()) >= EXACT_LIMIT:
        return None
    values = counts.shape[1]
    coincidences = np.zeros((values, values))
    for divisor in np.unique(divisors).tolist():
        part = counts[divisors == divisor].astype(np.int64, copy=False)
        pairs = part.T @ part - np.diag(part.sum(axis=0))
        coincidences += pairs / divisor
    return coincidences


def _alpha_of_coincidences(coincidences: np.ndarray) -> float:
    """Nominal alpha from the coincidence matrix (krippendorff 0.9's own steps)."""
    values = coincidences.shape[0]
    n_v = coincidences.sum(axis=0)
    expected = np.divide(np.outer(n_v, n_v) - np.diagflat(n_v), n_v.sum() - 1, dtype=np.float64)
    codes = np.arange(values)
    distance = (codes[:, np.newaxis] != codes[np.newaxis, :]).astype(np.float64)
    return float(1 - (coincidences * distance).sum() / (expected * distance).sum())


def krippendorff_alpha(ratings: Iterable[Rating]) -> float | None:
    """Krippendorff's alpha, nominal, over all items and raters (None: module docstring)."""
    return _nominal_alpha(labels_by_item(ratings))


def alpha_per_class(ratings: Iterable[Rating]) -> dict[str, float | None]:
    """{label: alpha of the one-vs-rest coding "label == c"} for every label in the input.

    One-vs-rest: each rating becomes True (it chose c) or False (it chose anything else), and
    nominal alpha is computed on that binary coding. A class nobody paired on (it occurs only
    on single-rated items) or that every pairable rating chose gives None.

    The (items, labels) count matrix is built once; each class's value counts are its
    (False, True) columns, the counts `_nominal_alpha` would build from the binary coding.
    """
    by_item = labels_by_item(ratings)
    labels = sorted({label for raters in by_item.values() for label in raters.values()})
    column = {label: index for index, label in enumerate(labels)}
    pairable = [raters for raters in by_item.values() if len(raters) >= 2]
    chose = np.zeros((len(pairable), len(labels)), dtype=np.int_)
    for row, raters in enumerate(pairable):
        for label in raters.values():
            chose[row, column[label]] += 1
    return alpha_per_class_of_counts(chose, labels)


def alpha_per_class_of_counts(chose: np.ndarray, labels: list[str]) -> dict[str, float | None]:
    """`alpha_per_class` from its (pairable items, labels) count matrix (labels sorted)."""
    rated = chose.sum(axis=1)
    result: dict[str, float | None] = {}
    for index, label in enumerate(labels):
        yes = chose[:, index]
        counts = np.stack([rated - yes, yes], axis=1)
        # Both codes must occur on pairable items, else alpha is undefined (0/0).
        result[label] = _alpha_of_counts(counts) if counts.any(axis=0).all() else None
    return result


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
    return kappa_of_counts(n, agreeing, chance)


def kappa_of_counts(n: int, agreeing: int, chance: int) -> float | None:
    """Cohen's kappa from n positions, how many agree, and sum_c a_c b_c (`cohen_kappa`)."""
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
