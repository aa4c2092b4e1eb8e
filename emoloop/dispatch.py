"""Sending Celery tasks without losing work when the broker is down.

The rule (zulip's `queue_json_publish`, Celery's `delay_on_commit`): a task is published only
after the rows it works on are committed, and a publish that fails is never swallowed. The
row records whether its task was sent (`dispatched_at`), so a row whose publish failed is
picked up by the next beat tick or by a retried request, and the HTTP caller gets a clear
503 (`BrokerUnavailable`, mapped by `emoloop.api_errors`) instead of a 500 and a stuck row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from kombu.exceptions import OperationalError as KombuOperationalError

log = logging.getLogger(__name__)

# Fail fast when the broker does not answer: one quick retry, then report. Celery's default
# policy retries for several seconds, which holds a web worker while Redis is down.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0.1, "interval_step": 0.2,
                        "interval_max": 0.3}  # fmt: skip

# What a failed publish raises, whatever the transport (redis-py wraps its own errors in
# kombu's OperationalError; a refused socket can surface as a bare OSError).
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (KombuOperationalError, ConnectionError, OSError)


class BrokerUnavailable(Exception):
    """The task queue could not take a message. The work is saved and will be sent again."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def publish(task: Any, *args: Any, **kwargs: Any) -> None:
    """Send one task now; raise BrokerUnavailable if the broker refuses or is unreachable.

    Must not be called inside a transaction whose rows the task reads: use
    `publish_after_commit` there.
    """
    try:
        task.apply_async(args=args, kwargs=kwargs, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except PUBLISH_ERRORS as exc:
        log.warning("could not publish %s%r: %s", getattr(task, "name", task), args, exc)
        raise BrokerUnavailable(f"The task queue is unavailable ({exc}).") from exc


def publish_after_commit(send: Callable[[], None]) -> None:
    """Run `send` once the current transaction commits (at once outside a transaction).

    Outside a transaction a BrokerUnavailable raised by `send` reaches the caller, which is
    what an API view wants (a 503). Inside one, Django runs the callback after COMMIT and the
    exception propagates from the outermost `atomic` block's exit, after the rows are safe.
    """
    transaction.on_commit(send)
