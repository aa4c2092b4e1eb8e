"""Storage usage: bytes and files under MEDIA_ROOT per top-level folder.

Walking a media folder of 100,000 clips takes seconds, so it is measured by a Celery task
(ops.tasks.measure_storage, every 10 minutes by the beat entry `ops-measure-storage`, and on
demand from the page)
and kept in the database (one row, ops.StorageReport); the page shows the last
measurement and when it was taken.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from ops.models import StorageReport


def _walk(path: Path) -> tuple[int, int]:
    """(bytes, files) under `path`, links not followed."""
    total = files = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                        files += 1
        except FileNotFoundError:
            continue
    return total, files


def measure(root: Path | None = None) -> dict[str, Any]:
    """Measure now and keep the result (replacing the previous one)."""
    base = Path(root or settings.MEDIA_ROOT)
    started = time.monotonic()
    folders: list[dict[str, Any]] = []
    loose_bytes = loose_files = 0
    if base.is_dir():
        for entry in sorted(os.scandir(base), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                size, count = _walk(Path(entry.path))
                folders.append({"folder": entry.name, "bytes": size, "files": count})
            elif entry.is_file(follow_symlinks=False):
                loose_bytes += entry.stat(follow_symlinks=False).st_size
                loose_files += 1
    if loose_files:
        folders.append({"folder": "(top level)", "bytes": loose_bytes, "files": loose_files})
    usage = {
        "root": str(base),
        "folders": folders,
        "total_bytes": sum(f["bytes"] for f in folders),
        "measured_at": time.time(),
        "took_s": round(time.monotonic() - started, 3),
    }
    StorageReport.objects.update_or_create(
        pk=1,
        defaults={
            "measured_at": timezone.now(),
            "root": usage["root"],
            "folders": folders,
            "total_bytes": usage["total_bytes"],
            "took_s": usage["took_s"],
        },
    )
    return usage


def last_measurement() -> dict[str, Any] | None:
    """The last measurement as `measure` returned it, or None if there was none."""
    row = StorageReport.objects.filter(pk=1).first()
    if row is None:
        return None
    return {
        "root": row.root,
        "folders": row.folders,
        "total_bytes": row.total_bytes,
        "measured_at": row.measured_at.timestamp(),
        "took_s": row.took_s,
    }
