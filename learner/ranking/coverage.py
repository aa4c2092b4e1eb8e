"""Coverage constraints: minimum and maximum shares of clip-metadata groups in a batch.

A project can ask that, say, at least half of what gets labelled is female speech, or that
no single speaker takes more than 5 %, so that the labelled set does not collapse onto the
majority group that the model happens to find confusing. `apply_quotas` turns a ranking
(best first) into a batch that honours those shares.

Exact semantics, for each metadata key k (e.g. "gender") and group g (e.g. "female"):

- Shares count the labelled set as it will be after this batch: with L_k clips already
  labelled that carry key k (the sum of `already_labelled_counts[k]`, 0 when not given) and
  a batch of B, the total is T_k = L_k + B. Without counts, shares are shares of the batch.
- need(k, g) = min(B, max(0, ceil(min_share * T_k) - labelled(k, g)))  picks wanted from g.
- cap(k, g)  = max(0, floor(max_share * T_k) - labelled(k, g))          picks allowed from g.
- Pass 1 (minimums): walk the ranking best first and take a clip when it belongs to a
  group with an outstanding need and taking it breaks no cap; stop when every need is met
  or the batch is full. When the ranking holds fewer clips of a group than it needs, all
  of them are taken and the need stays unmet (a minimum asks for what exists).
- Pass 2 (fill): walk the ranking again and take any clip not yet taken that breaks no cap,
  until the batch is full.
- Caps are hard: if they leave too few eligible clips, the batch comes back shorter than B
  rather than breaking them. The caller sees the short batch and decides.
- Minimums over several keys are met greedily in rank order; when they cannot all be met
  within B, the better-ranked clips that serve some minimum win.
- The result is the taken clips in their ranked order: a subsequence of the ranking.

Group labels are compared by equality after `.tolist()`, so numpy strings and ints match
plain Python `str` and `int` keys. Groups not named in a share mapping are unconstrained.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import numpy as np

Shares = Mapping[str, Mapping[Hashable, float]]
Counts = Mapping[str, Mapping[Hashable, int]]

_SLACK = 1e-9  # so that 0.5 * 10 is 5, not 5.000000000000001 -> 6


@dataclass(frozen=True)
class Quotas:
    """A project's coverage constraints (see the module docstring for the semantics).

    min_share / max_share: metadata key -> group label -> share in [0, 1].
    already_labelled_counts: metadata key -> group label -> clips already labelled.
    """

    min_share: Shares = field(default_factory=dict)
    max_share: Shares = field(default_factory=dict)
    already_labelled_counts: Counts = field(default_factory=dict)

    def __post_init__(self) -> None:
        for which, shares in (("min_share", self.min_share), ("max_share", self.max_share)):
            for key, by_group in shares.items():
                for group, share in by_group.items():
                    if not (isinstance(share, numbers.Real) and 0.0 <= share <= 1.0):
                        raise ValueError(
                            f"{which}[{key!r}][{group!r}] = {share!r} is not in [0, 1]"
                        )
        for key, by_group in self.min_share.items():
            total = sum(by_group.values())
            if total > 1.0 + _SLACK:
                raise ValueError(f"min_share[{key!r}] adds up to {total:g} > 1")
            for group, share in by_group.items():
                cap = self.max_share.get(key, {}).get(group)
                if cap is not None and share > cap:
                    raise ValueError(
                        f"min_share[{key!r}][{group!r}] = {share} exceeds its max_share {cap}"
                    )
        for key, by_group in self.already_labelled_counts.items():
            for group, count in by_group.items():
                if not (isinstance(count, numbers.Integral) and count >= 0):
                    raise ValueError(
                        f"already_labelled_counts[{key!r}][{group!r}] = {count!r} is not a "
                        "non-negative integer"
                    )

    @property
    def keys(self) -> set[str]:
        """The metadata keys that the shares constrain."""
        return set(self.min_share) | set(self.max_share)

    def apply(
        self, ranked_indices: np.ndarray, groups: Mapping[str, np.ndarray], batch_size: int
    ) -> np.ndarray:
        return apply_quotas(
            ranked_indices,
            groups,
            batch_size,
            min_share=self.min_share,
            max_share=self.max_share,
            already_labelled_counts=self.already_labelled_counts,
        )


def _targets(
    shares: Shares, counts: Counts, batch_size: int, *, minimum: bool
) -> dict[tuple[str, Hashable], int]:
    out: dict[tuple[str, Hashable], int] = {}
    for key, by_group in shares.items():
        labelled = counts.get(key, {})
        total = sum(labelled.values()) + batch_size
        for group, share in by_group.items():
            have = labelled.get(group, 0)
            if minimum:
                out[key, group] = min(batch_size, max(0, math.ceil(share * total - _SLACK) - have))
            else:
                out[key, group] = max(0, math.floor(share * total + _SLACK) - have)
    return out


def apply_quotas(
    ranked_indices: np.ndarray,
    groups: Mapping[str, np.ndarray],
    batch_size: int,
    *,
    min_share: Shares | None = None,
    max_share: Shares | None = None,
    already_labelled_counts: Counts | None = None,
) -> np.ndarray:
    """(r,) pool positions, best first -> (<= batch_size,) positions honouring the shares.

    groups: metadata key -> (n,) labels indexed by pool position (n > every ranked index).
    See the module docstring for the exact semantics of the two passes.
    """
    quotas = Quotas(min_share or {}, max_share or {}, already_labelled_counts or {})
    ranked = np.asarray(ranked_indices)
    if ranked.ndim != 1 or not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError("ranked_indices must be a 1-D array of integer pool positions")
    if len(np.unique(ranked)) != len(ranked):
        raise ValueError("ranked_indices contains repeated positions")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    missing = quotas.keys - set(groups)
    if missing:
        raise ValueError(f"quotas name metadata the pool does not carry: {sorted(missing)}")
    keys = sorted(quotas.keys)
    labels: dict[str, list[Hashable]] = {}
    for key in keys:
        column = np.asarray(groups[key])
        if len(ranked) and (ranked.min() < 0 or ranked.max() >= len(column)):
            raise ValueError(f"ranked_indices fall outside groups[{key!r}] (length {len(column)})")
        labels[key] = column[ranked].tolist()

    counts = quotas.already_labelled_counts
    need = _targets(quotas.min_share, counts, batch_size, minimum=True)
    cap = _targets(quotas.max_share, counts, batch_size, minimum=False)
    used: dict[tuple[str, Hashable], int] = {}
    outstanding = sum(need.values())
    taken = np.zeros(len(ranked), dtype=bool)
    n_taken = 0

    def allowed(row: int) -> bool:
        for key in keys:
            slot = (key, labels[key][row])
            if slot in cap and used.get(slot, 0) >= cap[slot]:
                return False
        return True

    def take(row: int) -> None:
        nonlocal n_taken, outstanding
        taken[row] = True
        n_taken += 1
        for key in keys:
            slot = (key, labels[key][row])
            used[slot] = used.get(slot, 0) + 1
            if need.get(slot, 0) > 0:
                need[slot] -= 1
                outstanding -= 1

    if outstanding:
        for row in range(len(ranked)):
            if outstanding == 0 or n_taken == batch_size:
                break
            serves = any(need.get((key, labels[key][row]), 0) > 0 for key in keys)
            if serves and allowed(row):
                take(row)
    for row in range(len(ranked)):
        if n_taken == batch_size:
            break
        if not taken[row] and allowed(row):
            take(row)
    return ranked[taken]
