"""From annotations to training targets, and from model outputs back to every wheel node.

Framework-free: the Django glue (learner.services.training) turns rows into the small
records below.

Label space
- The *core* head has one class per core (level 0) feeling of the taxonomy.
- The *fine* head has one class per feeling of the finest ring that any label of the project
  reaches (`fine_level`), plus every shallower feeling without children (a leaf), so that
  the fine classes cover the whole wheel. When every label is a core feeling, fine_level is
  0 and there is no fine head.

Soft targets, per clip, from its current annotations
- A skip ("no speech", "noise", …) is not a judgement of emotion: it is left out of the
  targets. A clip whose annotations are all skips is not a training example.
- Each labelled annotation counts 1, or `unsure_weight` (default 0.5) when the annotator
  marked it unsure.
- Core target: the weighted share of annotations per core feeling (a fine label counts for
  its core ancestor). Fine target: the weighted share per fine class, over the annotations
  made at the fine ring (or on a leaf); coarser labels do not enter it.
- Example weights: core = (sum of weights) / (number of labelled annotations), i.e. 1 when
  nobody was unsure and `unsure_weight` when everybody was; fine = (sum of the weights of
  the fine-ring annotations) / (number of labelled annotations), so a clip that only one of
  two annotators labelled finely teaches the fine head half as much. Rows with weight 0 at a
  head are ignored by that head's loss and evaluation.

Weak labels (another model's predictions, `WeakJudgement`: a distribution over node keys and
its source's weight W in [0, 1])
- A weak row's core target is the distribution summed onto the core feelings (renormalised
  over the keys the label space knows); its fine target the share that falls on fine
  classes, renormalised; several sources on one clip are averaged, weighted by W.
- Example weights: core = W (the largest W among the clip's sources, so two weak sources
  never outweigh one human label); fine = W x the share of the mass on fine classes.
- `merge_targets` appends weak rows only for clips without human judgements: a clip that
  a human labelled (or skipped) keeps exactly its human targets; W = 0 adds nothing.
  `Targets.weak` marks the weak rows so that evaluation can leave them out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Node:
    key: str
    name: str
    level: int
    parent: str | None


@dataclass(frozen=True)
class Judgement:
    """One current annotation: a node key, or None for a skip."""

    clip_id: int
    node: str | None
    unsure: bool = False


@dataclass
class LabelSpace:
    nodes: list[Node]
    fine_level: int
    core: list[str] = field(init=False)
    fine: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self._by_key = {n.key: n for n in self.nodes}
        self._children: dict[str | None, list[str]] = defaultdict(list)
        for n in self.nodes:
            self._children[n.parent].append(n.key)
        self.core = [n.key for n in self.nodes if n.level == 0]
        if self.fine_level == 0:
            self.fine = []
        else:
            self.fine = [
                n.key
                for n in self.nodes
                if n.level == self.fine_level
                or (n.level < self.fine_level and not self._children.get(n.key))
            ]
        self._fine_set = set(self.fine)

    # --- tree helpers -------------------------------------------------------------------

    def node(self, key: str) -> Node:
        return self._by_key[key]

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def children(self, key: str) -> list[str]:
        return list(self._children.get(key, []))

    def ancestor_at(self, key: str, level: int) -> str:
        """The node's ancestor at `level` (itself when it is at or above that level)."""
        node = self._by_key[key]
        while node.level > level and node.parent is not None:
            node = self._by_key[node.parent]
        return node.key

    def fine_class(self, key: str) -> str | None:
        """The fine class a label counts for, or None when it is coarser than the fine ring."""
        if not self.fine:
            return None
        candidate = self.ancestor_at(key, self.fine_level)
        return candidate if candidate in self._fine_set else None

    def to_state(self) -> dict[str, Any]:
        return {
            "fine_level": self.fine_level,
            "nodes": [[n.key, n.name, n.level, n.parent] for n in self.nodes],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LabelSpace:
        return cls(
            nodes=[Node(k, name, int(level), parent) for k, name, level, parent in state["nodes"]],
            fine_level=int(state["fine_level"]),
        )


def label_space(nodes: Sequence[Node], judgements: Iterable[Judgement]) -> LabelSpace:
    """The label space of a taxonomy given the labels made on it (fine ring = deepest used)."""
    levels = {n.key: n.level for n in nodes}
    used = [levels[j.node] for j in judgements if j.node is not None and j.node in levels]
    return LabelSpace(list(nodes), max(used, default=0))


@dataclass
class Targets:
    """Per-clip training targets; rows follow `clip_ids`."""

    clip_ids: list[int]
    core: np.ndarray  # (N, Kc)
    core_weight: np.ndarray  # (N,)
    fine: np.ndarray | None  # (N, Kf) or None without a fine head
    fine_weight: np.ndarray | None  # (N,)
    skipped_only: list[int]  # clips whose annotations are all skips (not examples)
    # (N,) True where the row is a weak label (another model's prediction), None: no weak rows
    weak: np.ndarray | None = None

    def weak_rows(self) -> np.ndarray:
        """(N,) bool: which rows are weak labels (all False without any)."""
        if self.weak is None:
            return np.zeros(len(self.clip_ids), dtype=bool)
        return np.asarray(self.weak, dtype=bool)

    def human_only(self) -> Targets:
        """The rows that are not weak labels (what a trainability check or an evaluation
        looks at); itself when there are no weak rows."""
        keep = np.flatnonzero(~self.weak_rows())
        if len(keep) == len(self.clip_ids):
            return self
        return Targets(
            clip_ids=[self.clip_ids[i] for i in keep],
            core=self.core[keep],
            core_weight=self.core_weight[keep],
            fine=self.fine[keep] if self.fine is not None else None,
            fine_weight=self.fine_weight[keep] if self.fine_weight is not None else None,
            skipped_only=list(self.skipped_only),
        )


def soft_targets(
    space: LabelSpace, judgements: Iterable[Judgement], *, unsure_weight: float = 0.5
) -> Targets:
    """Soft targets per clip (see the module docstring for the rules)."""
    by_clip: dict[int, list[Judgement]] = defaultdict(list)
    for j in judgements:
        by_clip[j.clip_id].append(j)
    core_index = {k: i for i, k in enumerate(space.core)}
    fine_index = {k: i for i, k in enumerate(space.fine)}
    clip_ids: list[int] = []
    skipped: list[int] = []
    core_rows, core_w, fine_rows, fine_w = [], [], [], []
    for clip_id in sorted(by_clip):
        labelled = [(j.node, j.unsure) for j in by_clip[clip_id] if j.node is not None]
        if not labelled:
            skipped.append(clip_id)
            continue
        core = np.zeros(len(space.core))
        fine = np.zeros(len(space.fine))
        total = 0.0
        fine_total = 0.0
        for node, unsure in labelled:
            w = unsure_weight if unsure else 1.0
            core[core_index[space.ancestor_at(node, 0)]] += w
            total += w
            fine_key = space.fine_class(node)
            if fine_key is not None:
                fine[fine_index[fine_key]] += w
                fine_total += w
        clip_ids.append(clip_id)
        core_rows.append(core / total if total > 0 else core)
        core_w.append(total / len(labelled))
        fine_rows.append(fine / fine_total if fine_total > 0 else fine)
        fine_w.append(fine_total / len(labelled))
    return _stacked(space, clip_ids, core_rows, core_w, fine_rows, fine_w, skipped_only=skipped)


def _stacked(
    space: LabelSpace,
    clip_ids: list[int],
    core_rows: list[np.ndarray],
    core_w: list[float],
    fine_rows: list[np.ndarray],
    fine_w: list[float],
    *,
    skipped_only: list[int],
    weak: np.ndarray | None = None,
) -> Targets:
    """Targets from per-clip rows (no fine head when the space has no fine ring)."""
    n_core, n_fine = len(space.core), len(space.fine)
    has_fine = n_fine > 0
    return Targets(
        clip_ids=clip_ids,
        core=np.array(core_rows, dtype=np.float64).reshape(-1, n_core),
        core_weight=np.array(core_w, dtype=np.float64),
        fine=np.array(fine_rows, dtype=np.float64).reshape(-1, n_fine) if has_fine else None,
        fine_weight=np.array(fine_w, dtype=np.float64) if has_fine else None,
        skipped_only=skipped_only,
        weak=weak,
    )


# --- Weak labels: another model's predictions as soft targets ------------------------------


@dataclass(frozen=True)
class WeakJudgement:
    """One external model's distribution over node keys for one clip, with the weight its
    source carries (learner.services.weak_labels: the source's weight in [0, 1])."""

    clip_id: int
    probabilities: Mapping[str, float]
    weight: float


def weak_soft_targets(space: LabelSpace, weak: Iterable[WeakJudgement]) -> Targets:
    """Soft targets from weak labels, one row per clip (see "Weak labels" in the module
    docstring). Keys outside the label space are ignored; a row with no mass left, or with
    weight 0, is not an example."""
    by_clip: dict[int, list[WeakJudgement]] = defaultdict(list)
    for w in weak:
        if w.weight > 0:
            by_clip[w.clip_id].append(w)
    core_index = {k: i for i, k in enumerate(space.core)}
    fine_index = {k: i for i, k in enumerate(space.fine)}
    clip_ids: list[int] = []
    core_rows, core_w, fine_rows, fine_w = [], [], [], []
    for clip_id in sorted(by_clip):
        core = np.zeros(len(space.core))
        fine = np.zeros(len(space.fine))
        fine_mass = 0.0
        total_weight = 0.0
        for w in by_clip[clip_id]:
            c = np.zeros(len(space.core))
            f = np.zeros(len(space.fine))
            for key, p in w.probabilities.items():
                if key not in space or not p > 0:
                    continue
                c[core_index[space.ancestor_at(key, 0)]] += p
                fine_key = space.fine_class(key)
                if fine_key is not None:
                    f[fine_index[fine_key]] += p
            mass = c.sum()
            if mass <= 0:
                continue
            core += w.weight * c / mass
            fine += w.weight * f / mass
            fine_mass += w.weight * f.sum() / mass
            total_weight += w.weight
        if total_weight <= 0:
            continue
        weight = max(w.weight for w in by_clip[clip_id])
        clip_ids.append(clip_id)
        core_rows.append(core / total_weight)
        core_w.append(weight)
        fine_rows.append(fine / fine.sum() if fine.sum() > 0 else fine)
        fine_w.append(weight * fine_mass / total_weight)
    return _stacked(
        space, clip_ids, core_rows, core_w, fine_rows, fine_w,
        skipped_only=[], weak=np.ones(len(clip_ids), dtype=bool),
    )  # fmt: skip


def merge_targets(human: Targets, weak: Targets) -> Targets:
    """The human targets with the weak rows of clips that no human judged appended after
    them (`weak` marks which rows are weak). A clip with a human label, or whose human
    judgements are all skips, keeps only what the humans said."""
    judged = set(human.clip_ids) | set(human.skipped_only)
    keep = np.array([c not in judged for c in weak.clip_ids], dtype=bool)
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        return human

    def stack(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
        if a is None or b is None:
            return None
        return np.concatenate([a, b[rows]])

    return Targets(
        clip_ids=[*human.clip_ids, *(weak.clip_ids[i] for i in rows)],
        core=np.concatenate([human.core, weak.core[rows]]),
        core_weight=np.concatenate([human.core_weight, weak.core_weight[rows]]),
        fine=stack(human.fine, weak.fine),
        fine_weight=stack(human.fine_weight, weak.fine_weight),
        skipped_only=list(human.skipped_only),
        weak=np.concatenate([human.weak_rows(), np.ones(len(rows), dtype=bool)]),
    )


def node_probabilities(
    space: LabelSpace, core_probs: np.ndarray, fine_probs: np.ndarray | None
) -> list[dict[str, float]]:
    """Probabilities for every node of the wheel, per level, for one clip.

    core_probs: (Kc,) calibrated; fine_probs: (Kf,) calibrated or None. Returns one dict
    per level (0, 1, 2, …) mapping node key -> probability.

    The core head decides how likely each core feeling is; the fine head decides how that
    probability divides among the fine classes under it (its probabilities renormalised
    within each core feeling), so the rings always agree: a node's probability is the sum of
    its children's. Rings between the core and the fine ring are sums over their fine
    descendants; rings finer than anything labelled split their parent's probability evenly
    (the model has no evidence there) — a leaf above such a ring keeps its probability at
    its own level only.
    """
    probs: dict[str, float] = {k: float(p) for k, p in zip(space.core, core_probs, strict=True)}
    if fine_probs is not None and space.fine:
        fine = dict(zip(space.fine, (float(p) for p in fine_probs), strict=True))
        by_core: dict[str, list[str]] = defaultdict(list)
        for key in space.fine:
            by_core[space.ancestor_at(key, 0)].append(key)
        for core_key, members in by_core.items():
            if members == [core_key]:
                continue  # a core feeling without children is its own fine class
            mass = sum(fine[k] for k in members)
            for k in members:
                share = fine[k] / mass if mass > 1e-12 else 1.0 / len(members)
                probs[k] = probs[core_key] * share
        # Rings in between: sums of fine descendants.
        for level in range(space.fine_level - 1, 0, -1):
            for node in space.nodes:
                if node.level == level and node.key not in probs:
                    probs[node.key] = sum(probs.get(c, 0.0) for c in space.children(node.key))
    # Rings deeper than the fine ring (or than the core ring without a fine head).
    max_level = max((n.level for n in space.nodes), default=0)
    for level in range(space.fine_level + 1, max_level + 1):
        for node in space.nodes:
            if node.level == level and node.parent is not None:
                siblings = space.children(node.parent)
                probs[node.key] = probs.get(node.parent, 0.0) / len(siblings)
    levels: list[dict[str, float]] = [{} for _ in range(max_level + 1)]
    for node in space.nodes:
        levels[node.level][node.key] = probs.get(node.key, 0.0)
    return levels
