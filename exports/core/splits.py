"""Speaker-disjoint train/dev/test splits: stratified, deterministic, stable as a dataset grows.

Who depends on this: the dataset-version builder (which stores `SplitResult.history` with the
version and passes it back as `previous` when the next version is built) and the version diff
(`split_moves`, whose answer must be empty for every group a previous version assigned).

Groups. Splits are made of groups, never of clips: every clip of a group lands in the same
split, so no speaker is heard in two splits. A clip's group is given by `group_of`:
``"speaker:<speaker id>"`` when the clip has a speaker id, else ``"recording:<recording id>"``
(the clips of one recording are presumably one voice), else ``"clip:<clip id>"`` for a lone
clip. The prefixes keep the three kinds apart, so a speaker called "7" and recording 7 are two
groups. A group is keyed by that string alone: a clip whose speaker id is filled in later moves
from its recording's group to its speaker's group, and may change split with it.

Inputs. `assign_splits(clips, targets, seed, previous)`:
- `clips`: `SplitClip(clip_id, group, label, gender)` rows, in any order. `label` is the clip's
  aggregated label (None when it has none; counted under `NO_LABEL`), `gender` a free string
  ("unknown" when unknown). Clip ids are unique, groups and labels non-empty strings.
- `targets`: split name -> share of clips, e.g. ``{"train": 0.8, "dev": 0.1, "test": 0.1}``:
  1 to `MAX_SPLITS` splits, every share finite and > 0 (leave a split out rather than give it
  0), summing to 1 within `SUM_TOLERANCE`.
- `seed`: an int in the signed 64-bit range; it keys the hash that orders the new groups.
- `previous`: group -> split from earlier versions (`SplitResult.history`). Every group found
  there keeps its split, always, even when the dataset's balance has drifted away from the
  targets; a split named there must still be among the targets (ValueError otherwise).

The rule for new groups (the same on a first version, where every group is new):
1. Order. New groups are taken in the order of ``blake2b(group, key=seed)`` (16-byte digest,
   the seed as 8 signed big-endian bytes; ties, which need a hash collision, by group name).
   The order depends on the seed and on the group's name, never on input order or on
   Python's per-process `hash()`.
2. Choice. A stratum is a (label, gender) pair. Let ``n[k]`` be the number of clips of stratum
   k in the whole dataset (old groups included), ``E[s][k] = target[s] * n[k]`` the clips that
   split s should hold, and ``A[s][k]`` the clips it holds so far: those of the old groups plus
   the new groups placed before. A group with ``c[k]`` clips per stratum goes to the split
   whose Pearson chi-square ``sum_k (A[s][k] - E[s][k])**2 / E[s][k]`` grows least when the
   group is added, i.e. whose deficit it fills best; the growth is
   ``sum_k c[k] * (2 * (A[s][k] - E[s][k]) + c[k]) / E[s][k]``. Ties go to the split with the
   larger target, then to the smaller name ("split order", also the order of
   `SplitResult.counts`). Dividing by E weighs a missing clip more in a small split, whose
   shares it moves more.
3. Small datasets. While some split holds no group and the new groups still to place are no
   more than the splits without a group, the next group may only go to one of those splits
   (chosen by the same chi-square rule). So every split gets at least one group whenever the
   new groups are at least as many as the splits that have none: on a first version, whenever
   there are at least as many groups as splits (three for train/dev/test). Otherwise (fewer
   groups than splits) some split stays empty; that is reported in `counts`, not an error.
   With few large speakers (EmoDB: 10 speakers of 35-71 clips, 80/10/10), one speaker
   overshoots a 10% split, so chi-square alone keeps choosing train and this rule is what
   fills dev and test: with the last new groups in seed order.

Output. `SplitResult`: `assignment` (group -> split, the groups of these clips), `by_clip`
(clip id -> split), `history` (`previous` updated with `assignment`: pass it as the next
`previous`, so a speaker absent from one version keeps its split when it comes back), and
`counts` (per split: clips, groups, clips per label, clips per gender, every split, label and
gender listed even at 0). Every dict is sorted by key, `counts` by split order, so equal inputs
give equal (and equally serialised) results.

Cost: one pass over the clips, then (new groups) x (splits) x (strata of the group) steps.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: The label key under which clips without a label are counted (labels themselves are never "").
NO_LABEL = ""
#: At most this many splits: a bound on the per-group work, far above train/dev/test.
MAX_SPLITS = 16
#: How far the target shares may sum from 1 (room for decimal shares such as 0.7 + 0.2 + 0.1).
SUM_TOLERANCE = 1e-6
_SEED_MIN = -(2**63)
_SEED_MAX = 2**63 - 1

Stratum = tuple[str, str]  # (label or NO_LABEL, gender)


@dataclass(frozen=True, slots=True)
class SplitClip:
    """One clip as the splitter sees it (see the module docstring for the group convention)."""

    clip_id: int
    group: str
    label: str | None
    gender: str


@dataclass(frozen=True, slots=True)
class SplitCounts:
    """What one split holds: clips, groups, and clips per label and per gender (sorted)."""

    clips: int
    groups: int
    labels: dict[str, int]
    genders: dict[str, int]


@dataclass(frozen=True, slots=True)
class SplitResult:
    """The splits of one dataset version; every dict sorted (`counts` in split order)."""

    assignment: dict[str, str]
    by_clip: dict[int, str]
    history: dict[str, str]
    counts: dict[str, SplitCounts]


def group_of(speaker_id: str | None, recording_id: int | None, clip_id: int) -> str:
    """The split group of a clip: its speaker, else its recording, else the clip alone.

    A blank speaker id counts as none; a non-blank one is used verbatim.
    """
    if speaker_id is not None and speaker_id.strip():
        return f"speaker:{speaker_id}"
    if recording_id is not None:
        return f"recording:{recording_id}"
    return f"clip:{clip_id}"


def split_moves(
    previous: Mapping[str, str], current: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """Groups in both mappings whose split changed: group -> (old split, new split), sorted.

    Groups in only one of them (added or gone) are not moves. For `assign_splits` called with
    `previous`, the answer is empty by construction; the version diff reports it.
    """
    return {
        group: (previous[group], current[group])
        for group in sorted(previous.keys() & current.keys())
        if previous[group] != current[group]
    }


def assign_splits(
    clips: Iterable[SplitClip],
    targets: Mapping[str, float],
    seed: int,
    previous: Mapping[str, str] | None = None,
) -> SplitResult:
    """Split `clips` by group into `targets`, keeping every group of `previous` where it was.

    The rule is in the module docstring. Raises ValueError for invalid targets, an out-of-range
    seed, no clips, a duplicate clip id, an empty group or label, or a `previous` split that is
    not among the targets.
    """
    order = _split_order(targets)
    _check_seed(seed)
    previous = {} if previous is None else previous
    for group, split in previous.items():
        if split not in targets:
            raise ValueError(
                f"group {group!r} is in split {split!r} from a previous version, and "
                f"{split!r} is not among the targets {sorted(targets)}: old groups keep their "
                "split, so a split cannot be dropped once used"
            )

    strata_of, clips_of = _collect(clips)
    totals: Counter[Stratum] = Counter()
    for strata in strata_of.values():
        totals.update(strata)
    share = dict(order)
    expected = {s: {k: share[s] * n for k, n in totals.items()} for s, _ in order}
    held: dict[str, Counter[Stratum]] = {s: Counter() for s, _ in order}
    groups_in: Counter[str] = Counter()

    assignment: dict[str, str] = {}
    new_groups: list[str] = []
    for group in strata_of:
        if group in previous:
            assignment[group] = previous[group]
            held[previous[group]].update(strata_of[group])
            groups_in[previous[group]] += 1
        else:
            new_groups.append(group)
    new_groups.sort(key=lambda group: (_rank(seed, group), group))

    rank = {s: i for i, (s, _) in enumerate(order)}
    for placed, group in enumerate(new_groups):
        group_strata = sorted(strata_of[group].items())
        empty = [s for s, _ in order if groups_in[s] == 0]
        left = len(new_groups) - placed
        candidates = empty if empty and left <= len(empty) else [s for s, _ in order]
        best = min(candidates, key=lambda s: (_growth(held[s], expected[s], group_strata), rank[s]))
        assignment[group] = best
        held[best].update(strata_of[group])
        groups_in[best] += 1

    assignment = dict(sorted(assignment.items()))
    by_clip = dict(
        sorted((clip_id, assignment[g]) for g, ids in clips_of.items() for clip_id in ids)
    )
    history = dict(sorted({**previous, **assignment}.items()))
    labels = sorted({label for label, _ in totals})
    genders = sorted({gender for _, gender in totals})
    counts: dict[str, SplitCounts] = {}
    for split, _ in order:
        per_label: Counter[str] = Counter()
        per_gender: Counter[str] = Counter()
        for (label, gender), n in held[split].items():
            per_label[label] += n
            per_gender[gender] += n
        counts[split] = SplitCounts(
            clips=sum(held[split].values()),
            groups=groups_in[split],
            labels={label: per_label[label] for label in labels},
            genders={gender: per_gender[gender] for gender in genders},
        )
    return SplitResult(assignment=assignment, by_clip=by_clip, history=history, counts=counts)


def _split_order(targets: Mapping[str, float]) -> list[tuple[str, float]]:
    """Validated targets in split order: larger share first, then name."""
    if not targets:
        raise ValueError(
            "targets are empty: give split shares, e.g. {'train': 0.8, 'dev': 0.1, 'test': 0.1}"
        )
    if len(targets) > MAX_SPLITS:
        raise ValueError(f"{len(targets)} splits requested; at most {MAX_SPLITS} are allowed")
    for name, share in targets.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"split names must be non-empty strings, got {name!r}")
        if (
            isinstance(share, bool)
            or not isinstance(share, int | float)
            or not math.isfinite(share)
            or share <= 0
        ):
            raise ValueError(
                f"the target of split {name!r} is {share!r}; every share must be a finite "
                "number > 0 (leave a split out instead of giving it 0)"
            )
    total = math.fsum(targets.values())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ValueError(f"the target shares sum to {total!r}, not 1: {dict(targets)!r}")
    return sorted(
        ((name, float(share)) for name, share in targets.items()),
        key=lambda item: (-item[1], item[0]),
    )


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not _SEED_MIN <= seed <= _SEED_MAX:
        raise ValueError(f"seed must be an int in the signed 64-bit range, got {seed!r}")


def _collect(
    clips: Iterable[SplitClip],
) -> tuple[dict[str, Counter[Stratum]], dict[str, list[int]]]:
    """Per group: clips per stratum, and clip ids. Raises ValueError on bad or no clips."""
    strata_of: dict[str, Counter[Stratum]] = {}
    clips_of: dict[str, list[int]] = {}
    seen: set[int] = set()
    for clip in clips:
        if clip.clip_id in seen:
            raise ValueError(f"clip {clip.clip_id} appears twice: clip ids must be unique")
        seen.add(clip.clip_id)
        if not clip.group:
            raise ValueError(f"clip {clip.clip_id} has an empty group (see group_of)")
        if clip.label == NO_LABEL:
            raise ValueError(f"clip {clip.clip_id} has an empty label: give None for no label")
        stratum = (NO_LABEL if clip.label is None else clip.label, clip.gender)
        strata_of.setdefault(clip.group, Counter())[stratum] += 1
        clips_of.setdefault(clip.group, []).append(clip.clip_id)
    if not seen:
        raise ValueError("there are no clips to split")
    return strata_of, clips_of


def _growth(
    have: Counter[Stratum], want: Mapping[Stratum, float], strata: list[tuple[Stratum, int]]
) -> float:
    """How much a split's chi-square grows when a group with these strata joins it."""
    return math.fsum(c * (2 * (have[k] - want[k]) + c) / want[k] for k, c in strata)


def _rank(seed: int, group: str) -> bytes:
    """The seed-keyed hash that orders new groups (stable across processes and platforms)."""
    key = seed.to_bytes(8, "big", signed=True)
    return hashlib.blake2b(group.encode("utf-8"), digest_size=16, key=key).digest()
