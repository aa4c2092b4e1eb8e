"""Celery tasks of the operations room: storage measurement and the probe."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.core.cache import cache

from ops.services import storage


class ProbeFailed(RuntimeError):
    """Raised on purpose by the probe, to see a failure go through the real machinery."""


@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1740)
def measure_storage() -> dict[str, Any]:
    """Measure default_storage's usage per top folder (kept in ops.StorageReport for the page)."""
    return storage.measure()


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def probe(fail: bool = False, fail_once: str = "") -> str:
    """A task that fails on demand: always with `fail`, or only the first time it runs with a
    given `fail_once` key (so that a retry of the failure succeeds). Idempotent."""
    if fail:
        raise ProbeFailed("probe failed on purpose")
    if fail_once and cache.add(f"ops:probe-failed:{fail_once}", 1, timeout=3600):
        raise ProbeFailed(f"probe {fail_once!r} failed on purpose (first run)")
    return "ok"
