"""The quality figures of a project, computed from its current HUMAN labels (corpus labels
never count) with the agreement functions of `exports.core` (no second implementation).

Definitions (docs/console.md, "Quality and review"):
- labels: current annotations that name a feeling; skips: current skips. skip rate =
  skips / (labels + skips); unsure rate = unsure labels / labels.
- time per label: `time_spent_ms` of the labels (skips excluded); median and p90 with linear
  interpolation (numpy's default, `statistics.quantiles(method="inclusive")`).
- gold accuracy: the rater's current labels on gold clips against the gold node, at the core
  ring (ancestors compared) and exactly (the finest ring: the same node).
- agreement with consensus, at the core ring: on every clip the rater labelled that others
  labelled too, the consensus is the majority of the OTHER raters (leave-one-out, so a
  rater never agrees with their own vote; ties by exports.core's rule); share = agreeing /
  clips, kappa = Cohen's kappa of the rater's labels against those consensus labels.
- pairwise kappa: Cohen's kappa of two raters on the clips both labelled (core ring); a
  rater's mean pairwise kappa is the mean over co-raters with a defined kappa, weighted by
  the number of shared clips.
- drift: the same per ISO week of the label's time (labels, gold accuracy at the core,
  consensus share).
- alpha: Krippendorff's alpha (nominal) per ring, overall and one-vs-rest per class; a label
  shallower than a ring does not count at that ring.
- confused pairs: for every clip and every two raters who gave different labels, the
  unordered pair of labels, counted (finest labels and core ring).
- review queue: clips whose core labels disagree (two or more labels and a majority share
  below the project's agreement target), with a label marked unsure, or on a gold clip with
  a label whose core differs from the gold's.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np

from exports.core.aggregation import Item, Rating, at_ring, item_agreement, majority_vote
from exports.core.agreement import (
    alpha_per_class,
    cohen_kappa,
    gold_accuracy,
    krippendorff_alpha,
    rater_vs_consensus,
)

RINGS = (0, 1, 2)
# Alpha per class at every ring (exports.core counts values once for all classes: about 2 s
# for 72 classes on 300,000 labels).
PER_CLASS_RINGS = RINGS
CONFUSED_PAIRS = 25
DRIFT_WEEKS = 12


@dataclass(frozen=True)
class LabelRow:
    """One current human annotation: `key` is its node's key in the active taxonomy
    version (None for a skip), `skip` the skip reason ("" for a label)."""

    clip: int
    rater: int
    key: str | None
    skip: str
    unsure: bool
    time_ms: int
    created_at: datetime


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _ratings(rows: Iterable[LabelRow], ring: int | None) -> list[Rating]:
    """Ratings at `ring` (None: the label as given), skips and too-shallow labels left out."""
    out = []
    for row in rows:
        if row.key is None:
            continue
        label = row.key if ring is None else at_ring(row.key, ring)
        if label is not None:
            out.append(Rating(row.clip, str(row.rater), label))
    return out


class LabelSet:
    """The rows and their ratings at each ring, each built once (a big project has
    300,000 rows, and every figure reads the core ring)."""

    def __init__(self, rows: list[LabelRow]) -> None:
        self.rows = rows
        self._at: dict[int | None, list[Rating]] = {}

    def at(self, ring: int | None) -> list[Rating]:
        if ring not in self._at:
            self._at[ring] = _ratings(self.rows, ring)
        return self._at[ring]


def _leave_one_out(core: list[Rating]) -> tuple[list[Rating], dict[Item, str]]:
    """Each rating re-keyed as item "clip|rater", and the majority of the other raters of
    that clip as its consensus (clips rated by one rater have none)."""
    by_clip: dict[int | str, list[Rating]] = defaultdict(list)
    for rating in core:
        by_clip[rating.item].append(rating)
    rekeyed: list[Rating] = []
    others: list[Rating] = []
    for clip, ratings in by_clip.items():
        if len(ratings) < 2:
            continue
        for mine in ratings:
            item = f"{clip}|{mine.rater}"
            rekeyed.append(Rating(item, mine.rater, mine.label))
            others.extend(Rating(item, o.rater, o.label) for o in ratings if o is not mine)
    consensus: dict[Item, str] = {
        str(item): result.label for item, result in majority_vote(others).items()
    }
    return rekeyed, consensus


def _pairs(core: list[Rating]) -> dict[tuple[str, str], tuple[list[str], list[str]]]:
    """{(rater a, rater b), a < b: (a's labels, b's labels) on their shared clips}."""
    by_clip: dict[int | str, dict[str, str]] = defaultdict(dict)
    for rating in core:
        by_clip[rating.item][rating.rater] = rating.label
    pairs: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for raters in by_clip.values():
        for a, b in itertools.combinations(sorted(raters), 2):
            first, second = pairs.setdefault((a, b), ([], []))
            first.append(raters[a])
            second.append(raters[b])
    return pairs


def _confused(ratings: list[Rating]) -> list[dict[str, object]]:
    by_clip: dict[int | str, list[str]] = defaultdict(list)
    for rating in ratings:
        by_clip[rating.item].append(rating.label)
    counts: Counter[tuple[str, str]] = Counter()
    for labels in by_clip.values():
        for a, b in itertools.combinations(labels, 2):
            if a != b:
                counts[(min(a, b), max(a, b))] += 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:CONFUSED_PAIRS]
    return [{"a": a, "b": b, "count": n} for (a, b), n in top]


def annotator_figures(
    labels: LabelSet, gold: Mapping[int, str], usernames: Mapping[int, str]
) -> list[dict[str, object]]:
    """One dict per rater with a current human annotation, sorted by username."""
    rows = labels.rows
    core = labels.at(0)
    exact = labels.at(None)
    gold_core: dict[Item, str] = {clip: key.split(".")[0] for clip, key in gold.items()}
    gold_exact: dict[Item, str] = dict(gold.items())
    acc_core = gold_accuracy(core, gold_core)
    acc_exact = gold_accuracy(exact, gold_exact)
    rekeyed, consensus = _leave_one_out(core)
    vs = rater_vs_consensus(rekeyed, consensus)
    pairs = _pairs(core)
    kappas: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for (a, b), (first, second) in pairs.items():
        kappa = cohen_kappa(first, second)
        if kappa is not None:
            kappas[a].append((kappa, len(first)))
            kappas[b].append((kappa, len(first)))

    per_rater: dict[int, list[LabelRow]] = defaultdict(list)
    for row in rows:
        per_rater[row.rater].append(row)
    out = []
    for rater, mine in per_rater.items():
        name = str(rater)
        named = [row for row in mine if row.key is not None]
        times = np.array([row.time_ms for row in named], dtype=float)
        skips = len(mine) - len(named)
        weighted = kappas.get(name, [])
        weight = sum(n for _, n in weighted)
        out.append(
            {
                "id": rater,
                "username": usernames.get(rater, f"#{rater}"),
                "labels": len(named),
                "skips": skips,
                "skip_rate": _ratio(skips, len(mine)),
                "unsure": sum(row.unsure for row in named),
                "unsure_rate": _ratio(sum(row.unsure for row in named), len(named)),
                "median_ms": float(np.median(times)) if len(times) else None,
                "p90_ms": float(np.percentile(times, 90)) if len(times) else None,
                "gold_core": asdict(acc_core[name]) if name in acc_core else None,
                "gold_exact": asdict(acc_exact[name]) if name in acc_exact else None,
                "consensus": asdict(vs[name]) if name in vs else None,
                "pairwise_kappa": (sum(k * n for k, n in weighted) / weight if weight else None),
                "co_raters": len(weighted),
                "weeks": _drift(mine, gold_core, consensus),
            }
        )
    return sorted(out, key=lambda entry: (str(entry["username"]), int(str(entry["id"]))))


def _drift(
    mine: list[LabelRow], gold_core: Mapping[Item, str], consensus: Mapping[Item, str]
) -> list[dict[str, object]]:
    """Per ISO week (the last DRIFT_WEEKS with labels): labels, gold accuracy at the core,
    consensus share (the same definitions as the whole-period figures)."""
    weeks: dict[str, list[LabelRow]] = defaultdict(list)
    for row in mine:
        if row.key is not None:
            weeks[_week(row.created_at)].append(row)
    out = []
    for week in sorted(weeks)[-DRIFT_WEEKS:]:
        rows = weeks[week]
        graded = [r.key.split(".")[0] == gold_core[r.clip] for r in rows if r.clip in gold_core]  # type: ignore[union-attr]
        compared = [
            r.key.split(".")[0] == consensus[f"{r.clip}|{r.rater}"]  # type: ignore[union-attr]
            for r in rows
            if f"{r.clip}|{r.rater}" in consensus
        ]
        out.append(
            {
                "week": week,
                "labels": len(rows),
                "gold_core_accuracy": _ratio(sum(graded), len(graded)),
                "consensus_share": _ratio(sum(compared), len(compared)),
            }
        )
    return out


def agreement_figures(labels: LabelSet, usernames: Mapping[int, str]) -> dict[str, object]:
    """Alpha per ring (overall and per class), the rater x rater matrix at the core ring,
    the most confused label pairs (finest and core)."""
    rings = []
    for ring in RINGS:
        ratings = labels.at(ring)
        pairable = sum(1 for n in Counter(r.item for r in ratings).values() if n >= 2)
        rings.append(
            {
                "ring": ring,
                "ratings": len(ratings),
                "pairable_clips": pairable,
                "alpha": krippendorff_alpha(ratings),
                "per_class": [
                    {"label": label, "alpha": alpha}
                    for label, alpha in (
                        alpha_per_class(ratings) if ring in PER_CLASS_RINGS else {}
                    ).items()
                ],
            }
        )
    core = labels.at(0)
    pairs = _pairs(core)
    raters = sorted({r.rater for r in core}, key=lambda r: (usernames.get(int(r), r), r))
    cells = []
    for a in raters:
        line: list[dict[str, object] | None] = []
        for b in raters:
            key = (a, b) if a < b else (b, a)
            if a == b or key not in pairs:
                line.append(None)
                continue
            first, second = pairs[key]
            line.append(
                {
                    "shared": len(first),
                    "agree": sum(x == y for x, y in zip(first, second, strict=True)),
                    "kappa": cohen_kappa(first, second),
                }
            )
        cells.append(line)
    return {
        "rings": rings,
        "matrix": {
            "raters": [{"id": int(r), "username": usernames.get(int(r), f"#{r}")} for r in raters],
            "cells": cells,
        },
        "confused": _confused(labels.at(None)),
        "confused_core": _confused(core),
    }


def review_queue(
    labels: LabelSet, gold: Mapping[int, str], target: float
) -> list[tuple[int, list[str]]]:
    """[(clip id, [reasons…]), …] in clip order; reasons: "gold_failed", "disagreement",
    "unsure" (module docstring)."""
    reasons: dict[int, set[str]] = defaultdict(set)
    for clip, agreement in item_agreement(labels.at(0)).items():
        if agreement.raters >= 2 and agreement.majority_share < target:
            reasons[int(clip)].add("disagreement")
    for row in labels.rows:
        if row.key is None:
            continue
        if row.unsure:
            reasons[row.clip].add("unsure")
        if row.clip in gold and row.key.split(".")[0] != gold[row.clip].split(".")[0]:
            reasons[row.clip].add("gold_failed")
    order = ("gold_failed", "disagreement", "unsure")
    return [(clip, [r for r in order if r in reasons[clip]]) for clip in sorted(reasons)]
