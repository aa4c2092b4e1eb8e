"""What changed between two native-layout version folders (no Django).

Read from each folder: `clips.csv` (clip -> split group and split) and every
`labels_<ring>.csv` (clip -> majority label). Memory: one small tuple per clip and one
string per clip and ring, for both folders.

- **clips added / removed**: clip ids in the newer folder only / in the older only.
- **labels changed** (per ring): clips in both whose majority label differs, with `from`
  and `to` (null where the clip has no majority at that ring in one of them, e.g. its only
  human label was removed).
- **split moves**: split groups (speaker, recording or clip) present in both whose split
  differs. The builder keeps every old group in its split, so for its own outputs this list
  is empty; `summary.old_groups_kept_split` says so explicitly.

Lists are sorted (clip id, then group name) and capped at `limit` entries each; the
summary always has the full counts.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RINGS = ("core", "secondary", "tertiary")
DEFAULT_LIMIT = 1000


@dataclass(frozen=True)
class Side:
    clips: dict[int, tuple[str, str]]  # clip -> (group, split)
    labels: dict[str, dict[int, str]]  # ring -> clip -> majority


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        yield from csv.DictReader(file)


def read_side(folder: Path) -> Side:
    """The parts of a version folder that a diff compares."""
    clips = {int(r["clip_id"]): (r["group"], r["split"]) for r in _rows(folder / "clips.csv")}
    labels: dict[str, dict[int, str]] = {}
    for ring in RINGS:
        path = folder / f"labels_{ring}.csv"
        if path.is_file():
            labels[ring] = {int(r["clip_id"]): r["majority"] for r in _rows(path) if r["majority"]}
    return Side(clips, labels)


def diff_sides(old: Side, new: Side, *, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """The diff of two versions' contents (see the module docstring for the rules)."""
    added = sorted(set(new.clips) - set(old.clips))
    removed = sorted(set(old.clips) - set(new.clips))
    both = sorted(set(old.clips) & set(new.clips))
    changed: dict[str, list[dict[str, Any]]] = {}
    for ring in RINGS:
        if ring not in old.labels and ring not in new.labels:
            continue
        before, after = old.labels.get(ring, {}), new.labels.get(ring, {})
        changed[ring] = [
            {"clip_id": clip, "from": before.get(clip), "to": after.get(clip)}
            for clip in both
            if before.get(clip) != after.get(clip)
        ]
    old_groups = dict(old.clips.values())
    new_groups = dict(new.clips.values())
    moves = [
        {"group": group, "from": old_groups[group], "to": new_groups[group]}
        for group in sorted(set(old_groups) & set(new_groups))
        if old_groups[group] != new_groups[group]
    ]
    return {
        "summary": {
            "clips_from": len(old.clips),
            "clips_to": len(new.clips),
            "clips_added": len(added),
            "clips_removed": len(removed),
            "labels_changed": {ring: len(rows) for ring, rows in changed.items()},
            "groups_added": len(set(new_groups) - set(old_groups)),
            "groups_removed": len(set(old_groups) - set(new_groups)),
            "old_groups": len(set(old_groups) & set(new_groups)),
            "split_moves": len(moves),
            "old_groups_kept_split": not moves,
        },
        "limit": limit,
        "clips_added": added[:limit],
        "clips_removed": removed[:limit],
        "labels_changed": {ring: rows[:limit] for ring, rows in changed.items()},
        "split_moves": moves[:limit],
    }


def diff_folders(old: Path, new: Path, *, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    return diff_sides(read_side(old), read_side(new), limit=limit)
