"""Readiness checks for load balancers (/readyz) and the operations page.

Each check is small and bounded in time: the database answers `SELECT 1`, the cache keeps
and returns a value, the broker accepts a connection (the one tasks are published on), the
media folder takes a file, and a Celery worker's heartbeat was seen within
`OPS_HEARTBEAT_FRESH_SECONDS` (workers write it every 2 s, ops.signals). Liveness stays
`/healthz` (labelling.views), which touches nothing but the process.

Written here rather than with django-health-check: five checks of a few lines each, and
the worker check reads our own heartbeat rather than broadcasting a ping on every probe
(docs/console.md, "Operations").
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import connection

from emoloop.celery import app
from ops.services import celery_state


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    error: str = ""
    ms: float = 0.0


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _cache() -> None:
    key = f"ops:ready:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=10)
    value = cache.get(key)
    cache.delete(key)
    if value != "1":
        raise RuntimeError("the cache did not return what was stored")


def _broker() -> None:
    """Connect to the broker that tasks are published to (broker_write_url when set)."""
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.1, timeout=2)
        client = getattr(conn.default_channel, "client", None)
        if client is not None and hasattr(client, "ping"):
            client.ping()


def _storage() -> None:
    root = Path(settings.MEDIA_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".ready-", dir=root)
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        os.unlink(name)


def _worker() -> None:
    seen = celery_state.last_heartbeat()
    if seen is None:
        raise RuntimeError("no Celery worker heartbeat seen")
    age = time.time() - seen["at"]
    if age > settings.OPS_HEARTBEAT_FRESH_SECONDS:
        raise RuntimeError(f"last Celery worker heartbeat {age:.0f} s ago")


CHECKS: dict[str, Callable[[], None]] = {
    "database": _database,
    "cache": _cache,
    "broker": _broker,
    "storage": _storage,
    "worker": _worker,
}


def run_checks() -> list[Check]:
    results = []
    for name, check in CHECKS.items():
        start = time.perf_counter()
        try:
            check()
        except Exception as exc:
            results.append(Check(name, False, _describe(exc), _ms(start)))
        else:
            results.append(Check(name, True, "", _ms(start)))
    return results


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
