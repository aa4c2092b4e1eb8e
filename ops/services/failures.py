"""Failed tasks: recorded from Celery's task_failure signal, listed for admins, retried.

A retry sends the task again by name with the arguments it failed with. Only EmoLoop's own
tasks are retried (`RETRYABLE_PREFIXES`): each is idempotent by the house rule (tasks take
ids, re-fetch the row and claim work with a compare-and-set update), so a second run of
work that half-happened is safe. Each failure is retried at most once; who retried it is
kept on the row and in the audit log.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from emoloop.celery import app
from emoloop.dispatch import PUBLISH_ERRORS, PUBLISH_RETRY_POLICY, BrokerUnavailable
from ops.models import TaskFailure

RETRYABLE_PREFIXES = ("labelling.", "learner.", "exports.", "ops.")
# Arguments larger than this (as JSON) are shown but not kept for a retry.
MAX_ARGS_BYTES = 64_000
MAX_TRACEBACK_CHARS = 20_000


class NotRetryable(ValueError):
    """This failure cannot be sent again; the message says why."""


class AlreadyRetried(ValueError):
    pass


def _json_or_none(value: Any) -> Any:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return None
    return json.loads(text) if len(text) <= MAX_ARGS_BYTES else None


def record_failure(
    *,
    task_name: str,
    task_id: str,
    args: Any,
    kwargs: Any,
    exception: BaseException,
    traceback_text: str,
    queue: str = "",
    worker: str = "",
) -> TaskFailure:
    args_list = list(args) if isinstance(args, list | tuple) else []
    kwargs_dict = dict(kwargs) if isinstance(kwargs, dict) else {}
    shown = ", ".join([repr(a) for a in args_list] + [f"{k}={v!r}" for k, v in kwargs_dict.items()])
    return TaskFailure.objects.create(
        task_name=task_name[:200],
        task_id=(task_id or "")[:64],
        queue=(queue or "")[:100],
        worker=(worker or "")[:200],
        args=_json_or_none(args_list),
        kwargs=_json_or_none(kwargs_dict),
        args_repr=shown[:500],
        exception=f"{type(exception).__name__}: {exception}"[:5000],
        # The end of a traceback is where the error is.
        traceback=traceback_text[-MAX_TRACEBACK_CHARS:],
    )


def retry_refusal(failure: TaskFailure) -> str | None:
    """Why this failure cannot be retried, or None if it can."""
    if failure.retried_at is not None:
        return "already retried"
    if not failure.task_name.startswith(RETRYABLE_PREFIXES):
        return "not an EmoLoop task"
    if failure.task_name not in app.tasks:
        return "no such task in this version"
    if failure.args is None or failure.kwargs is None:
        return "its arguments were not kept"
    return None


def retry(failure_id: int, user: User) -> TaskFailure:
    """Send the failed task again; raise NotRetryable, AlreadyRetried or BrokerUnavailable.

    The row is claimed first (compare-and-set on retried_at), so two admins clicking at once
    send one task; if the broker refuses, the claim is undone with the transaction.
    """
    with transaction.atomic():
        failure = TaskFailure.objects.select_for_update().get(pk=failure_id)
        reason = retry_refusal(failure)
        if reason == "already retried":
            raise AlreadyRetried(f"This failure was already retried ({failure.retry_task_id}).")
        if reason is not None:
            raise NotRetryable(f"{failure.task_name} cannot be retried: {reason}.")
        try:
            result = app.send_task(
                failure.task_name,
                args=failure.args,
                kwargs=failure.kwargs,
                retry=True,
                retry_policy=PUBLISH_RETRY_POLICY,
            )
        except PUBLISH_ERRORS as exc:
            raise BrokerUnavailable(f"The task queue is unavailable ({exc}).") from exc
        # Sent inside the transaction on purpose: the row only says "retried" if the message
        # was taken. A worker that picks the retry up does not read this row.
        failure.retried_at = timezone.now()
        failure.retried_by = user
        failure.retry_task_id = result.id
        failure.save(update_fields=["retried_at", "retried_by", "retry_task_id"])
        audit.record(
            user,
            "task.retried",
            target=("ops.taskfailure", failure.pk, failure.task_name),
            details={"task_id": failure.task_id, "retry_task_id": result.id},
        )
    return failure
