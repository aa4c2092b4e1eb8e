"""Celery signal handlers that feed the operations page (connected in OpsConfig.ready, so
the worker has them before its consumer starts).

- task_failure: a TaskFailure row, with its arguments, error and traceback.
- task_prerun: the last run of each task the beat schedule sends.
- heartbeat_sent: the worker's heartbeat (every 2 s), which /readyz reads.
- task_success / task_failure / task_retry: one more in the task's outcome counter
  (ops.models.TaskOutcome), which /metrics reads.

A handler that fails is logged by Celery and never fails the task; recording is best effort
by design, but its own errors are not swallowed silently.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import heartbeat_sent, task_failure, task_prerun, task_retry, task_success

from ops.services import celery_state, failures

log = logging.getLogger(__name__)


def _on_task_failure(
    sender: Any = None,
    task_id: str = "",
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    request = getattr(sender, "request", None)
    delivery = getattr(request, "delivery_info", None) or {}
    _count(sender, "failed")
    failures.record_failure(
        task_name=getattr(sender, "name", str(sender)),
        task_id=task_id or "",
        args=args,
        kwargs=kwargs,
        exception=exception or RuntimeError("unknown"),
        traceback_text=str(getattr(einfo, "traceback", "") or ""),
        queue=str(delivery.get("routing_key") or ""),
        worker=str(getattr(request, "hostname", "") or ""),
    )


def _on_task_prerun(sender: Any = None, task_id: str = "", **_: Any) -> None:
    name = getattr(sender, "name", "")
    if name in celery_state.beat_task_names():
        celery_state.note_beat_run(name, task_id or "")


def _count(task: Any, outcome: str) -> None:
    name = getattr(task, "name", None)
    if name:
        celery_state.note_outcome(str(name), outcome)


def _on_task_success(sender: Any = None, **_: Any) -> None:
    _count(sender, "succeeded")


def _on_task_retry(sender: Any = None, **_: Any) -> None:
    _count(sender, "retried")


def _on_heartbeat(sender: Any = None, **_: Any) -> None:
    eventer = getattr(sender, "eventer", None)
    celery_state.note_heartbeat(str(getattr(eventer, "hostname", "") or "worker"))


def connect() -> None:
    task_failure.connect(_on_task_failure, weak=False, dispatch_uid="ops.task_failure")
    task_prerun.connect(_on_task_prerun, weak=False, dispatch_uid="ops.task_prerun")
    task_success.connect(_on_task_success, weak=False, dispatch_uid="ops.task_success")
    task_retry.connect(_on_task_retry, weak=False, dispatch_uid="ops.task_retry")
    heartbeat_sent.connect(_on_heartbeat, weak=False, dispatch_uid="ops.heartbeat")
