"""Readiness checks for load balancers (/readyz), `ops_status` and the operations page.

Checks: the database answers `SELECT 1`; the cache keeps and returns a value; the broker
that tasks are published on accepts a connection; the object store (default_storage)
answers; a Celery worker's heartbeat was seen within `OPS_HEARTBEAT_FRESH_SECONDS` (workers
write it every 5 s, ops.signals). Liveness stays `/healthz` (labelling.views), which
touches nothing but the process.

Cheap by construction:
- The checks that talk over the network to something other than the database (cache,
  broker, storage) run in a small pool of threads, each given `OPS_READYZ_TIMEOUT_SECONDS`;
  one that has not answered by then is reported failing with the reason "timeout" (its
  thread finishes in the background; the pool is bounded, so a hung service cannot pile
  threads up). The database checks run in the caller's thread (its connection and, in
  tests, its transaction); bound them with `connect_timeout` in DATABASE_URL.
- The object store is asked the cheapest question each kind of storage has: a local
  folder takes a small file (writability is what fails on a disk); S3 answers one HEAD on
  the bucket (a missing bucket or wrong credentials fail it; needs s3:ListBucket, which
  the storage usage measurement needs too); any other storage is asked whether a sentinel
  key exists. Never a listing.
- `/readyz` answers from a per-process copy of the last result for
  `OPS_READYZ_CACHE_SECONDS`, computed by one thread at a time, so a probe storm costs one
  round of checks per process per interval.

Written here rather than with django-health-check (4.8, evaluated for issue 13): its
storage check saves and deletes a file on every probe (four requests on S3), its Celery
check broadcasts a ping and waits for replies on every probe, its JSON names the errors
(worker host names, exception texts), it neither caches nor bounds a check in time, and
it answers 500; we would have replaced four of its five checks and its view.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection

from emoloop.celery import app
from ops.services import celery_state

# The key asked for on a storage with neither local paths nor an S3 bucket: it need not
# exist, a 404 is an answer; only an error (unreachable, denied, timeout) fails the check.
SENTINEL_KEY = ".emoloop-readyz"


class NotReady(RuntimeError):
    """A check's own verdict, with the public reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Check:
    """One check's result. `error` is the full text (for admins: ops_status, /ops/);
    `reason` is the generic code that /readyz may show anyone."""

    name: str
    ok: bool
    error: str = ""
    ms: float = 0.0
    reason: str = ""


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
        raise NotReady("error", "the cache did not return what was stored")


def _broker() -> None:
    """Connect to the broker that tasks are published to (broker_write_url when set)."""
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.1, timeout=2)
        client = getattr(conn.default_channel, "client", None)
        if client is not None and hasattr(client, "ping"):
            client.ping()


def _local_root() -> Path | None:
    """The folder behind default_storage, or None for a storage without local paths."""
    try:
        return Path(default_storage.path(""))
    except NotImplementedError:
        return None


def _storage() -> None:
    root = _local_root()
    if root is None:
        bucket = getattr(default_storage, "bucket_name", None)
        client = getattr(getattr(default_storage, "connection", None), "meta", None)
        if bucket and client is not None:  # S3: one HEAD on the bucket (a missing one fails)
            client.client.head_bucket(Bucket=bucket)
        else:  # another remote storage: one existence question; False is an answer too
            default_storage.exists(SENTINEL_KEY)
        return
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
        raise NotReady("missing", "no Celery worker heartbeat seen")
    age = time.time() - seen["at"]
    if age > settings.OPS_HEARTBEAT_FRESH_SECONDS:
        raise NotReady("stale", f"last Celery worker heartbeat {age:.0f} s ago")


CHECKS: dict[str, Callable[[], None]] = {
    "database": _database,
    "cache": _cache,
    "broker": _broker,
    "storage": _storage,
    "worker": _worker,
}
# Run in the caller's thread: they use the Django database connection.
IN_THREAD = {"database", "worker"}

# Bounded: a check that hangs keeps one thread; more hung checks than threads queue, and a
# queued check is cancelled when its time is up.
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


def run_checks(timeout: float | None = None) -> list[Check]:
    """Run every check now (no cache), each bounded by `timeout` seconds."""
    limit = settings.OPS_READYZ_TIMEOUT_SECONDS if timeout is None else timeout
    started = {name: time.perf_counter() for name in CHECKS}
    futures: dict[str, Future[None]] = {
        name: _pool.submit(check) for name, check in CHECKS.items() if name not in IN_THREAD
    }
    results: dict[str, Check] = {}
    for name, check in CHECKS.items():
        if name in IN_THREAD:
            started[name] = time.perf_counter()
            results[name] = _outcome(name, started[name], check)
    deadline = time.monotonic() + limit
    for name, future in futures.items():
        results[name] = _outcome(name, started[name], _waiter(future, deadline))
        if not results[name].ok:
            future.cancel()
    return [results[name] for name in CHECKS]


def _waiter(future: Future[None], deadline: float) -> Callable[[], None]:
    return lambda: future.result(max(0.0, deadline - time.monotonic()))


def _outcome(name: str, start: float, call: Callable[[], object]) -> Check:
    try:
        call()
    except Exception as exc:
        return Check(name, False, _describe(exc), _ms(start), _reason(exc))
    return Check(name, True, "", _ms(start))


def _reason(exc: BaseException) -> str:
    """A generic code for the public body: nothing of the exception's text."""
    if isinstance(exc, NotReady):
        return exc.reason
    if isinstance(exc, FutureTimeout | TimeoutError | socket.timeout):
        return "timeout"
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, ConnectionError | OSError | DatabaseError) or names & {
        "ConnectionError",  # redis, botocore (EndpointConnectionError), kombu
        "OperationalError",
        "EndpointConnectionError",
    }:
        return "unreachable"
    if "ClientError" in names:  # botocore: the store answered, but refused (403, …)
        return "refused"
    return "error"


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FutureTimeout):
        return "no answer within OPS_READYZ_TIMEOUT_SECONDS"
    return f"{type(exc).__name__}: {exc}"[:300]


# --- /readyz: the last result, shared by the process's threads for a few seconds -----------

_lock = threading.Lock()
_last: tuple[float, list[Check]] | None = None


def readiness() -> list[Check]:
    """The checks' results, at most `OPS_READYZ_CACHE_SECONDS` old (one thread runs them;
    the others wait for its result instead of running their own)."""
    global _last
    ttl = settings.OPS_READYZ_CACHE_SECONDS
    # The database check runs in the caller's thread (Django's connections are per thread)
    # and has no time box of its own: a round stuck on a hung database must not queue every
    # later probe behind it. They wait a bounded time, then answer "timeout".
    if not _lock.acquire(timeout=2 * settings.OPS_READYZ_TIMEOUT_SECONDS + 1):
        return [
            Check(name, False, "another readiness round is still running", 0.0, "timeout")
            for name in CHECKS
        ]
    try:
        now = time.monotonic()
        if _last is not None and now - _last[0] < ttl:
            return _last[1]
        results = run_checks()
        _last = (time.monotonic(), results)
        return results
    finally:
        _lock.release()


def forget_cached() -> None:
    """Drop the cached result (tests; after a deployment step that must be seen at once)."""
    global _last
    with _lock:
        _last = None
