"""Storage usage: bytes and files under MEDIA_ROOT per top-level folder.

Walking a media folder of 100,000 clips takes seconds, so it is measured by a Celery task
(ops.tasks.measure_storage, on the beat every `OPS_STORAGE_MEASURE_SECONDS` and on demand)
and kept in the cache; the page shows the last measurement and when it was taken.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache

CACHE_KEY = "ops:storage-usage"


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
    """Measure now and keep the result in the cache."""
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
    cache.set(CACHE_KEY, usage, timeout=None)
    return usage


def last_measurement() -> dict[str, Any] | None:
    value = cache.get(CACHE_KEY)
    return value if isinstance(value, dict) else None
