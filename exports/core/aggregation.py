"""Per-clip labels from several raters at one ring of the wheel.

Input: an iterable of `Rating(item, rater, label)`, one per rater and item, all at the same
ring (core, secondary or tertiary). A skip is not a rating: the caller leaves it out. Mapping a
fine node to its ancestor at a ring is the caller's job; `at_ring` does it for dotted keys.

Every function here gives the same output for the same ratings in any order: items come out
sorted (integer ids first, then string ids), labels inside a result sorted, and no rule looks
at the position of a rating in the input.

Rules, in one place:
- One rating per (item, rater). A second one is an error (`DuplicateRatingError`), not a
  silent overwrite: the caller passes each annotator's current annotation only.
- Majority vote tie rule: among the labels with the most votes on an item, the one with the
  most ratings across the whole input (the dataset at this ring) wins, then the
  lexicographically smallest key. `tied` says that a tie was broken.
- Soft labels: the share of the item's raters who chose each label (sums to 1).
- Dawid-Skene: crowd-kit's `DawidSkene` (EM over per-rater confusion matrices), fitted on a
  frame sorted by (item, rater), so the fit does not depend on input order. Its label is the
  label of highest posterior, exact ties to the lexicographically smallest key.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd
from crowdkit.aggregation import DawidSkene
from pandas.errors import PandasDeprecationWarning

Item = str | int


@dataclass(frozen=True)
class Rating:
    """One rater's label for one item at one ring. `rater` is a pseudonymous id."""

    item: Item
    rater: str
    label: str


class DuplicateRatingError(ValueError):
    """The same rater rated the same item twice in one input."""


@dataclass(frozen=True)
class MajorityResult:
    """`label` got `votes` of the item's `raters` ratings; `tied`: another label had as many."""

    label: str
    votes: int
    raters: int
    tied: bool


@dataclass(frozen=True)
class DSResult:
    """Dawid-Skene's label and posterior over every label seen at this ring (keys sorted)."""

    label: str
    posterior: dict[str, float]


@dataclass(frozen=True)
class ItemAgreement:
    """Agreement on one item.

    `majority_share`: votes of the majority label / raters (1.0 for a single rater).
    `pairwise`: share of unordered rater pairs who chose the same label,
    sum_c n_c (n_c - 1) / (n (n - 1)); None with fewer than two raters (no pair).
    """

    raters: int
    majority_share: float
    pairwise: float | None


def item_sort_key(item: Item) -> tuple[int, int | str]:
    """Sort key for clip ids: integers (numerically) before strings (lexicographically)."""
    if isinstance(item, int):
        return (0, item)
    return (1, item)


def at_ring(key: str, ring: int) -> str | None:
    """The ancestor of a dotted node key at `ring` (0 = core).

    "mad.angry.furious" -> ring 0 "mad", ring 1 "mad.angry", ring 2 itself. A key shallower
    than the ring gives None: that rating does not count at that ring (a core-only label says
    nothing about the secondary ring). Raises ValueError on a negative ring or an empty
    segment ("", "mad..x").
    """
    if ring < 0:
        raise ValueError(f"ring must be >= 0, got {ring}")
    parts = key.split(".")
    if any(not part for part in parts):
        raise ValueError(f"malformed node key {key!r}")
    if len(parts) <= ring:
        return None
    return ".".join(parts[: ring + 1])


def labels_by_item(ratings: Iterable[Rating]) -> dict[Item, dict[str, str]]:
    """{item: {rater: label}}, items and raters sorted. Raises DuplicateRatingError."""
    grouped: dict[Item, dict[str, str]] = defaultdict(dict)
    for rating in ratings:
        per_item = grouped[rating.item]
        if rating.rater in per_item:
            raise DuplicateRatingError(
                f"rater {rating.rater!r} rated item {rating.item!r} more than once"
            )
        per_item[rating.rater] = rating.label
    return {
        item: dict(sorted(grouped[item].items())) for item in sorted(grouped, key=item_sort_key)
    }


def majority_vote(ratings: Iterable[Rating]) -> dict[Item, MajorityResult]:
    """The most chosen label per item, ties broken by the module's tie rule.

    Tie rule: among the labels with the most votes on the item, the one most frequent across
    the whole input wins, then the lexicographically smallest key. Both criteria are
    properties of the rating set, not of its order.
    """
    by_item = labels_by_item(ratings)
    overall = Counter(label for raters in by_item.values() for label in raters.values())
    result: dict[Item, MajorityResult] = {}
    for item, raters in by_item.items():
        counts = Counter(raters.values())
        top = max(counts.values())
        leaders = [label for label, n in counts.items() if n == top]
        label = min(leaders, key=lambda c: (-overall[c], c))
        result[item] = MajorityResult(
            label=label, votes=top, raters=len(raters), tied=len(leaders) > 1
        )
    return result


def soft_labels(ratings: Iterable[Rating]) -> dict[Item, dict[str, float]]:
    """{item: {label: share of the item's raters who chose it}}, labels sorted, shares sum
    to 1. Labels nobody chose for the item are absent (not 0.0)."""
    result: dict[Item, dict[str, float]] = {}
    for item, raters in labels_by_item(ratings).items():
        n = len(raters)
        counts = Counter(raters.values())
        result[item] = {label: counts[label] / n for label in sorted(counts)}
    return result


def item_agreement(ratings: Iterable[Rating]) -> dict[Item, ItemAgreement]:
    """Raters, majority share and pairwise percent agreement per item (see ItemAgreement)."""
    result: dict[Item, ItemAgreement] = {}
    for item, raters in labels_by_item(ratings).items():
        n = len(raters)
        counts = Counter(raters.values())
        agreeing_pairs = sum(c * (c - 1) for c in counts.values())
        result[item] = ItemAgreement(
            raters=n,
            majority_share=max(counts.values()) / n,
            pairwise=agreeing_pairs / (n * (n - 1)) if n > 1 else None,
        )
    return result


def dawid_skene(
    ratings: Iterable[Rating], *, n_iter: int = 100, tol: float = 1e-5
) -> dict[Item, DSResult]:
    """Dawid-Skene labels and posteriors per item, fitted with crowd-kit.

    The frame handed to crowd-kit has one row per rating, sorted by (item, rater), with items
    replaced by their rank in item order (so integer and string clip ids can mix). crowd-kit
    starts EM from the majority-vote distribution and stops after `n_iter` iterations or when
    the evidence lower bound gains less than `tol`. The posterior lists every label of the
    input (keys sorted), including labels with probability 0 for that item.

    Raises ValueError when n_iter < 1 or tol < 0.
    """
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    by_item = labels_by_item(ratings)
    if not by_item:
        return {}
    items = list(by_item)
    # Raters and labels go in as their rank in sorted order, not as strings: pandas groups
    # and joins integers several times faster, and a rank keeps the order of the names, so
    # crowd-kit sees the same groups in the same order and computes the same floats.
    raters = {r: i for i, r in enumerate(sorted({r for v in by_item.values() for r in v}))}
    names = sorted({label for votes in by_item.values() for label in votes.values()})
    code = {label: index for index, label in enumerate(names)}
    rows = [
        (index, raters[rater], code[label])
        for index, item in enumerate(items)
        for rater, label in by_item[item].items()
    ]
    frame = pd.DataFrame(rows, columns=["task", "worker", "label"])
    model = DawidSkene(n_iter=n_iter, tol=tol)
    # crowd-kit 1.4.2 still passes inplace= and copy= that pandas 3 deprecates: one warning
    # per EM step would flood the export task's log. Only those warnings, only from crowd-kit.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=PandasDeprecationWarning, module="crowdkit")
        probas = model.fit_predict_proba(frame)
    columns = [names[int(label)] for label in probas.columns]
    labels = sorted(columns)
    result: dict[Item, DSResult] = {}
    # One array lookup per item instead of a pandas row lookup (100,000 of them per ring).
    matrix = probas.loc[list(range(len(items)))].to_numpy(dtype=float).tolist()
    for item, values in zip(items, matrix, strict=True):
        row: Mapping[str, float] = dict(zip(columns, values, strict=True))
        posterior = {label: row[label] for label in labels}
        best = max(posterior.values())
        label = min(c for c, p in posterior.items() if p == best)
        result[item] = DSResult(label=label, posterior=posterior)
    return result
