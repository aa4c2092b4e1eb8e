"""The Celery picture for admins: workers alive, tasks running and queued, beat runs, and
the heartbeat that /readyz reads.

Workers and running tasks are asked live (one broadcast, `OPS_INSPECT_TIMEOUT_SECONDS`).
A worker whose heartbeat was written in the last `SILENT_LISTED_HOURS` but that does not
answer is listed apart (`silent_workers`): "not answering" while its heartbeat is fresher
than `OPS_HEARTBEAT_FRESH_SECONDS`, "missing" once it is older, so a killed worker goes
missing on the page instead of vanishing from it. Queue lengths are the Redis lists'
lengths on the broker (None on other brokers).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from emoloop.celery import app
from ops.models import BeatRun, TaskFailure, TaskOutcome, WorkerHeartbeat

# kombu's Redis transport keeps a queue's messages of priority p > 0 in "<queue>\x06\x16<p>".
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
# A worker's heartbeat fires every 2 s; it is written at most this often per worker.
HEARTBEAT_WRITE_SECONDS = 5.0
# A worker that stopped answering stays on the operations page this long after its last
# heartbeat (a worker stopped for good, or renamed, then drops off the list).
SILENT_LISTED_HOURS = 24
_last_written: dict[str, float] = {}


def note_heartbeat(hostname: str) -> None:
    """Called in the worker at every heartbeat; writes the worker's row when it is due."""
    now = time.monotonic()
    if now - _last_written.get(hostname, float("-inf")) < HEARTBEAT_WRITE_SECONDS:
        return
    WorkerHeartbeat.objects.bulk_create(
        [WorkerHeartbeat(hostname=hostname[:200], last_seen=timezone.now())],
        update_conflicts=True,
        unique_fields=["hostname"],
        update_fields=["last_seen"],
    )
    _last_written[hostname] = now


def note_outcome(task_name: str, outcome: str) -> None:
    """Count one outcome (succeeded, failed, retried) of `task_name`: one upsert, atomic in
    the database, so workers on every host add to the same counter."""
    table = TaskOutcome._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (task_name, outcome, count) VALUES (%s, %s, 1) "  # noqa: S608 (the table name is ours)
            f"ON CONFLICT (task_name, outcome) DO UPDATE SET count = {table}.count + 1",
            [task_name[:200], outcome],
        )


def last_heartbeat() -> dict[str, Any] | None:
    """The newest heartbeat of any worker: hostname and `at` (a Unix time)."""
    row = WorkerHeartbeat.objects.order_by("-last_seen").first()
    if row is None:
        return None
    return {"hostname": row.hostname, "at": row.last_seen.timestamp()}


def silent_workers(answered: Iterable[str], now: float | None = None) -> list[dict[str, Any]]:
    """Workers seen (a heartbeat) in the last `SILENT_LISTED_HOURS` that are not among
    `answered`: hostname, `last_seen` (a Unix time), `age_s` and `state`, "missing" when the
    heartbeat is older than `OPS_HEARTBEAT_FRESH_SECONDS`, else "not answering"."""
    now = time.time() if now is None else now
    since = timezone.now() - timedelta(hours=SILENT_LISTED_HOURS)
    rows = (
        WorkerHeartbeat.objects.filter(last_seen__gte=since)
        .exclude(hostname__in=list(answered))
        .order_by("hostname")
    )
    fresh = settings.OPS_HEARTBEAT_FRESH_SECONDS
    silent = []
    for row in rows:
        seen = row.last_seen.timestamp()
        age = max(0.0, now - seen)
        state = "missing" if age > fresh else "not answering"
        silent.append({"hostname": row.hostname, "last_seen": seen, "age_s": round(age, 1),
                       "state": state})  # fmt: skip
    return silent


def queue_names() -> list[str]:
    """The default queue and every queue a route names (settings.CELERY_TASK_ROUTES)."""
    names = {settings.CELERY_TASK_DEFAULT_QUEUE}
    for route in settings.CELERY_TASK_ROUTES.values():
        if isinstance(route, dict) and route.get("queue"):
            names.add(route["queue"])
    return sorted(names)


def workers(timeout: float | None = None) -> dict[str, list[dict[str, Any]]]:
    """Hostname → its running tasks, for every worker that answers within `timeout`."""
    wait = settings.OPS_INSPECT_TIMEOUT_SECONDS if timeout is None else timeout
    replies = app.control.inspect(timeout=wait).active() or {}
    return {host: list(tasks or []) for host, tasks in sorted(replies.items())}


def queue_lengths() -> dict[str, int] | None:
    """Messages waiting per queue: Redis lists' lengths, or the filesystem broker's spool
    files (`make run`); None on another broker."""
    url = str(app.conf.broker_write_url or app.conf.broker_url or "")
    if url.startswith("filesystem://"):
        folder = (app.conf.broker_transport_options or {}).get("data_folder_in")
        return spool_lengths(Path(folder), queue_names()) if folder else None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    names = queue_names()
    with app.connection_for_write() as conn:
        pipe = conn.default_channel.client.pipeline(transaction=False)  # one round trip
        for queue in names:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(queue + suffix)
        lengths = [int(n) for n in pipe.execute()]
    per = len(_PRIORITY_SUFFIXES)
    return {queue: sum(lengths[i * per : (i + 1) * per]) for i, queue in enumerate(names)}


def spool_lengths(folder: Path, queues: Iterable[str]) -> dict[str, int]:
    """kombu's filesystem transport keeps one `<time>_<uuid>.<queue>.msg` file per waiting
    message in `folder`: count them per queue (one directory listing)."""
    counts = dict.fromkeys(queues, 0)
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                stem, _, kind = entry.name.rpartition(".")
                queue = stem.partition(".")[2]
                if kind == "msg" and queue in counts:
                    counts[queue] += 1
    except FileNotFoundError:
        pass  # no message was ever sent
    return counts


def running_per_queue(active: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tasks in active.values():
        for task in tasks:
            queue = (task.get("delivery_info") or {}).get("routing_key") or "?"
            counts[queue] = counts.get(queue, 0) + 1
    return counts


def failed_per_queue(hours: int = 24) -> dict[str, int]:
    since = timezone.now() - timedelta(hours=hours)
    rows = (
        TaskFailure.objects.filter(failed_at__gte=since)
        .values("queue")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {row["queue"] or "?": row["n"] for row in rows}


def beat_task_names() -> set[str]:
    return {str(entry["task"]) for entry in settings.CELERY_BEAT_SCHEDULE.values()}


def note_beat_run(task_name: str, task_id: str) -> None:
    """A worker started a task that the beat schedule sends (one upsert)."""
    BeatRun.objects.bulk_create(
        [BeatRun(task_name=task_name, last_started_at=timezone.now(), last_task_id=task_id)],
        update_conflicts=True,
        unique_fields=["task_name"],
        update_fields=["last_started_at", "last_task_id"],
    )


def beat_schedule() -> list[dict[str, Any]]:
    """Each beat entry with its interval and the last time a worker started its task."""
    runs = {run.task_name: run for run in BeatRun.objects.all()}
    rows = []
    for entry, spec in sorted(settings.CELERY_BEAT_SCHEDULE.items()):
        run = runs.get(str(spec["task"]))
        schedule = spec["schedule"]
        rows.append(
            {
                "entry": entry,
                "task": spec["task"],
                "every_s": float(schedule) if isinstance(schedule, int | float) else None,
                "last_run_at": run.last_started_at.isoformat() if run else None,
            }
        )
    return rows
