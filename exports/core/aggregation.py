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

import numpy as np

Item = str | int


@dataclass(frozen=True, slots=True)
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


#: crowd-kit's EM settings for dataset versions (recorded in DatasetVersion.aggregation, so a
#: rebuild uses the settings its version was built with). The tolerance is on the change of the
#: evidence lower bound per rating between two EM steps; docs/datasets.md, "Aggregation", gives
#: what it changes against a fit run to 1e-5 on the 100,000-clip bench.
DS_N_ITER = 100
DS_TOL = 1e-3


def _check_ds_parameters(n_iter: int, tol: float) -> None:
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")


@dataclass(frozen=True)
class CodedRatings:
    """Ratings as crowd-kit's input, in integer codes: one row per rating sorted by (item,
    rater); `tasks` holds the item's position in `items` (item order), `workers` the rater's
    rank among the sorted raters, `labels` the label's index in `names` (sorted). Ranks keep
    the order of the names, so crowd-kit sees the same groups in the same order as with the
    names themselves, and pandas groups and joins integers several times faster than strings.
    The arrays alone (a few MB) are what a worker process needs to fit."""

    items: list[Item]
    names: list[str]
    tasks: np.ndarray
    workers: np.ndarray
    labels: np.ndarray


def code_ratings(by_item: Mapping[Item, Mapping[str, str]]) -> CodedRatings:
    """{item: {rater: label}} (items in output order, raters sorted: `labels_by_item`)."""
    names = sorted({label for votes in by_item.values() for label in votes.values()})
    raters = sorted({rater for votes in by_item.values() for rater in votes})
    label_code = {label: index for index, label in enumerate(names)}
    rater_code = {rater: index for index, rater in enumerate(raters)}
    size = sum(len(votes) for votes in by_item.values())
    tasks = np.empty(size, dtype=np.int32)
    workers = np.empty(size, dtype=np.int32)
    labels = np.empty(size, dtype=np.int32)
    row = 0
    for index, votes in enumerate(by_item.values()):
        for rater, label in votes.items():
            tasks[row], workers[row], labels[row] = index, rater_code[rater], label_code[label]
            row += 1
    return CodedRatings(list(by_item), names, tasks, workers, labels)


def fit_coded(
    tasks: np.ndarray, workers: np.ndarray, labels: np.ndarray, n_iter: int, tol: float
) -> np.ndarray:
    """crowd-kit's DawidSkene on coded ratings (CodedRatings' arrays): the posterior matrix
    (items, labels), rows in task-code order, columns in label-code order. Needs only numpy
    arrays, so it runs as well in a worker process. crowd-kit's steps run on blocks of the
    ratings (`exports.core.dawid_skene.BlockedDawidSkene`: the same floats, a fraction of
    the memory)."""
    # Imported here: crowd-kit brings pandas, scikit-learn and nltk (about 200 MB of
    # resident memory), which only the process that fits needs (exports.services.ds_fit).
    # From its own module (the class crowdkit.aggregation exports), so that the worker's
    # lean imports (exports.core.ds_worker) find it without the package's __init__.
    import pandas as pd
    from pandas.errors import PandasDeprecationWarning

    from exports.core.dawid_skene import BlockedDawidSkene

    frame = pd.DataFrame({"task": tasks, "worker": workers, "label": labels})
    model = BlockedDawidSkene(n_iter=n_iter, tol=tol)
    # crowd-kit 1.4.2 still passes inplace= and copy= that pandas 3 deprecates: one warning
    # per EM step would flood the export task's log. Only those warnings, only from crowd-kit.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=PandasDeprecationWarning, module="crowdkit")
        probas = model.fit_predict_proba(frame)
    del frame
    n_items, n_labels = int(tasks.max()) + 1, int(labels.max()) + 1
    matrix: np.ndarray = probas.reindex(index=range(n_items), columns=range(n_labels)).to_numpy(
        dtype=np.float64
    )
    return matrix


def fit_coded_top(
    tasks: np.ndarray, workers: np.ndarray, labels: np.ndarray, n_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """`fit_coded`'s label code of highest posterior per item (the first maximum: with
    labels in sorted order, exact ties go to the smallest key) and that posterior. Two
    small arrays: what a worker process sends back."""
    matrix = fit_coded(tasks, workers, labels, n_iter, tol)
    best = matrix.argmax(axis=1)
    return best, matrix[np.arange(len(best)), best]


def top_labels(
    coded: CodedRatings, best: np.ndarray, top: np.ndarray
) -> dict[Item, tuple[str, float]]:
    """{item: (label, posterior)} from `fit_coded_top`'s arrays."""
    names = coded.names
    return {
        item: (names[code], probability)
        for item, code, probability in zip(coded.items, best.tolist(), top.tolist(), strict=True)
    }


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
    _check_ds_parameters(n_iter, tol)
    by_item = labels_by_item(ratings)
    if not by_item:
        return {}
    coded = code_ratings(by_item)
    names = coded.names
    matrix = fit_coded(coded.tasks, coded.workers, coded.labels, n_iter, tol)
    result: dict[Item, DSResult] = {}
    for item, values in zip(by_item, matrix.tolist(), strict=True):
        posterior = dict(zip(names, values, strict=True))
        best = max(values)
        label = min(c for c, p in posterior.items() if p == best)
        result[item] = DSResult(label=label, posterior=posterior)
    return result


def dawid_skene_labels(
    ratings: Iterable[Rating], *, n_iter: int = DS_N_ITER, tol: float = DS_TOL
) -> dict[Item, tuple[str, float]]:
    """{item: (Dawid-Skene label, its posterior)}: `dawid_skene` without the posterior over
    every label (72 floats per clip at the outer ring of the wheel, which a dataset version
    does not write). Same fit, same label (highest posterior, exact ties to the smallest
    key: labels are in sorted order and argmax takes the first maximum)."""
    _check_ds_parameters(n_iter, tol)
    by_item = labels_by_item(ratings)
    if not by_item:
        return {}
    coded = code_ratings(by_item)
    return top_labels(coded, *fit_coded_top(coded.tasks, coded.workers, coded.labels, n_iter, tol))
