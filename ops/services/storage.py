"""Storage usage: bytes and files in default_storage per top-level folder.

Three ways, by what the storage is:
- a local folder (FileSystemStorage, `EMOLOOP_STORAGE=local`): a walk of MEDIA_ROOT;
- S3 (`EMOLOOP_STORAGE=s3`): the bucket's `list_objects_v2` pages under the storage's
  prefix, through the storage's own client (1,000 keys and their sizes a request; no
  request per file);
- any other storage: `listdir` recursively and `size` per file (one request each).
Each stops after `OPS_STORAGE_MAX_OBJECTS` files and says so in `root`.

Walking 100,000 clips takes seconds (minutes on S3), so it is measured by a Celery task
(ops.tasks.measure_storage, every 10 minutes by the beat entry `ops-measure-storage`, and on
demand from the page) and kept in the database (one row, ops.StorageReport); the page shows
the last measurement and when it was taken.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import Storage, default_storage
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


class _Tally:
    """Bytes and files per top-level folder, stopping at `limit` files."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counted = 0
        self.per_folder: dict[str, list[int]] = {}

    @property
    def full(self) -> bool:
        return self.counted >= self.limit

    def add(self, relative: str, size: int) -> None:
        head, sep, _ = relative.partition("/")
        folder = head if sep else TOP_LEVEL
        entry = self.per_folder.setdefault(folder, [0, 0])
        entry[0] += size
        entry[1] += 1
        self.counted += 1

    def folders(self) -> list[dict[str, Any]]:
        named = sorted(name for name in self.per_folder if name != TOP_LEVEL)
        order = named + ([TOP_LEVEL] if TOP_LEVEL in self.per_folder else [])
        return [
            {"folder": name, "bytes": self.per_folder[name][0], "files": self.per_folder[name][1]}
            for name in order
        ]


TOP_LEVEL = "(top level)"


def _local(base: Path) -> list[dict[str, Any]]:
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
        folders.append({"folder": TOP_LEVEL, "bytes": loose_bytes, "files": loose_files})
    return folders


def _s3(store: Any, tally: _Tally) -> str:
    """List the bucket under the storage's prefix, a page (1,000 keys) at a time."""
    prefix = f"{store.location.strip('/')}/" if store.location.strip("/") else ""
    pages = store.connection.meta.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket_name, Prefix=prefix
    )
    for page in pages:
        for item in page.get("Contents", []):
            tally.add(item["Key"][len(prefix) :], int(item["Size"]))
            if tally.full:
                break
        if tally.full:
            break
    return f"s3://{store.bucket_name}/{prefix}"


def _listed(store: Storage, tally: _Tally) -> str:
    """Any other storage: listdir from the top, size per file."""
    stack = [""]
    while stack and not tally.full:
        folder = stack.pop()
        folders, files = store.listdir(folder)
        stack.extend(f"{folder}{name}/" for name in folders)
        for name in files:
            tally.add(f"{folder}{name}", store.size(f"{folder}{name}"))
            if tally.full:
                break
    return type(store).__name__


def measure(root: Path | None = None) -> dict[str, Any]:
    """Measure now and keep the result (replacing the previous one). `root`: a local folder
    to measure instead of default_storage."""
    started = time.monotonic()
    limit = settings.OPS_STORAGE_MAX_OBJECTS
    local = Path(root) if root is not None else _local_root()
    if local is not None:
        where, folders = str(local), _local(local)
    else:
        tally = _Tally(limit)
        if getattr(default_storage, "bucket_name", None) and hasattr(default_storage, "connection"):
            where = _s3(default_storage, tally)
        else:
            where = _listed(default_storage, tally)
        folders = tally.folders()
        if tally.full:
            where += f" (stopped after {limit} files: OPS_STORAGE_MAX_OBJECTS)"
    usage = {
        "root": where[:500],
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


def _local_root() -> Path | None:
    """The folder behind default_storage, or None for a storage without local paths."""
    try:
        return Path(default_storage.path(""))
    except NotImplementedError:
        return None


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
