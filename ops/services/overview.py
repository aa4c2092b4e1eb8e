"""Everything the operations page shows, in one dictionary (the page and the API share it).

Each part is gathered on its own: a broker that is down leaves the workers and queues
empty with the error named, and the rest of the page still renders.
"""

from __future__ import annotations

import time
from typing import Any

from ops.models import TaskFailure
from ops.services import celery_state, health, storage

RECENT_FAILURES = 20


def _attempt(part: str, errors: dict[str, str], fn: Any, default: Any) -> Any:
    try:
        return fn()
    except Exception as exc:
        errors[part] = f"{type(exc).__name__}: {exc}"[:300]
        return default


def gather() -> dict[str, Any]:
    errors: dict[str, str] = {}
    checks = {c.name: {"ok": c.ok, "error": c.error, "ms": c.ms} for c in health.run_checks()}
    active = _attempt("workers", errors, celery_state.workers, {})
    lengths = _attempt("queues", errors, celery_state.queue_lengths, None)
    running = celery_state.running_per_queue(active)
    failed = celery_state.failed_per_queue()
    names = sorted(set(celery_state.queue_names()) | set(running) | set(failed))
    heartbeat = celery_state.last_heartbeat()
    failures = list(TaskFailure.objects.select_related("retried_by")[:RECENT_FAILURES])
    return {
        "generated_at": time.time(),
        "checks": checks,
        "workers": [
            {
                "hostname": host,
                "running": [
                    {
                        "id": t.get("id"),
                        "name": t.get("name"),
                        "queue": (t.get("delivery_info") or {}).get("routing_key"),
                        "started": t.get("time_start"),
                    }
                    for t in tasks
                ],
            }
            for host, tasks in active.items()
        ],
        "silent_workers": _attempt(
            "silent_workers", errors, lambda: celery_state.silent_workers(active), []
        ),
        "last_heartbeat": heartbeat,
        "queues": [
            {
                "name": name,
                "queued": None if lengths is None else lengths.get(name, 0),
                "running": running.get(name, 0),
                "failed_24h": failed.get(name, 0),
            }
            for name in names
        ],
        "failures": failures,
        "beat": celery_state.beat_schedule(),
        "storage": storage.last_measurement(),
        "errors": errors,
    }
