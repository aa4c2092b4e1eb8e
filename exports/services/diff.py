"""The diff between two ready versions of one project (rules: `exports.core.diff`)."""

from __future__ import annotations

from typing import Any

from exports.core.diff import DEFAULT_LIMIT, diff_folders
from exports.models import DatasetVersion
from exports.services.versions import local_copy

MAX_LIMIT = 10_000
# What exports.core.diff reads of a version (copied from storage when it is not local).
DIFF_FILES = frozenset({"clips.csv", "labels_core.csv", "labels_secondary.csv",
                        "labels_tertiary.csv"})  # fmt: skip


def diff(a: DatasetVersion, b: DatasetVersion, *, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """What changed from version `a` to version `b` (any order of numbers: `from` is `a`).

    Raises versions.NotReady when either is not ready, ValueError for versions of two
    projects or a limit out of range.
    """
    if a.project_id != b.project_id:
        raise ValueError("the two versions belong to different projects")
    if not 0 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 0 and {MAX_LIMIT}")
    wanted = DIFF_FILES.__contains__
    with local_copy(a, only=wanted) as old, local_copy(b, only=wanted) as new:
        found = diff_folders(old, new, limit=limit)
    return {"from": a.number, "to": b.number, **found}
