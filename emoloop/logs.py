"""Log context (request id, task id) and the two log formats, `json` and `text`.

The ids live in context variables: emoloop.middleware.RequestIdMiddleware sets the request
id for the duration of a request; emoloop.celery's signal handlers set the task's id and
name, and the id of the request that sent the task (carried in the message's headers), for
the duration of a task. `ContextFilter` (on the console handler, settings.LOGGING) copies
them onto every record that handler writes, whichever library logged it.

`EMOLOOP_LOG_FORMAT` picks the formatter: `json` (one object per line, with the ids; the
default outside development) or `text` (one line per record, without the ids; the default
under `make run` and the tests).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

current_request_id: ContextVar[str] = ContextVar("request_id", default="")
current_task_id: ContextVar[str] = ContextVar("task_id", default="")
current_task_name: ContextVar[str] = ContextVar("task_name", default="")

# What an incoming X-Request-ID may be (a proxy's id, a UUID, a client's trace id): letters,
# digits and . _ : - only, at most 64 characters. Anything else is replaced, never cleaned.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# The message header that carries the request id to a Celery task.
TASK_HEADER = "emoloop_request_id"


def safe_request_id(candidate: str | None) -> str:
    """`candidate` when it is a safe id, else a fresh one (32 hex digits)."""
    if candidate and _SAFE_ID.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex


class ContextFilter(logging.Filter):
    """Puts `request_id`, `task_id` and `task_name` on every record ("" when none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = {
            "request_id": current_request_id.get(),
            "task_id": current_task_id.get(),
            "task_name": current_task_name.get(),
        }
        for key, value in ids.items():
            ids[key] = getattr(record, key, "") or value  # an explicit extra={...} wins
            setattr(record, key, ids[key])
        return True


# Attributes every LogRecord has (not "extra" fields), plus ours and Django's `request`
# (an object; its method and path are in the message already).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "request",
    "request_id",
    "task_id",
    "task_name",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the ids
    when set, `exc_info` as text, and any `extra={...}` fields (non-JSON values as str)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "task_id", "task_name"):
            value = getattr(record, key, "")
            if value:
                entry[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


# Unchanged from before the ids existed: tools (and tests/test_schema_fuzz.py) read it.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def logging_config(fmt: str, level: str) -> dict[str, Any]:
    """settings.LOGGING for `fmt` ("json" or "text") at `level`."""
    formatter: dict[str, Any] = (
        {"()": "emoloop.logs.JsonFormatter"} if fmt == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "emoloop.logs.ContextFilter"}},
        "formatters": {"main": formatter},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "main",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
    }


# --- Celery: the ids of a task's log records (connected in emoloop.celery) ------------------

_task_tokens: dict[str, tuple[Token[str], Token[str], Token[str]]] = {}


def on_before_task_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Sending a task: the current request's id goes along in the message's headers."""
    rid = current_request_id.get()
    if rid and headers is not None and TASK_HEADER not in headers:
        headers[TASK_HEADER] = rid


def on_task_prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    """A task starts: its id and name, and its sender's request id, go on its records."""
    sent_by = getattr(getattr(task, "request", None), TASK_HEADER, None)
    _task_tokens[task_id] = (
        current_request_id.set(
            sent_by if isinstance(sent_by, str) and _SAFE_ID.fullmatch(sent_by) else ""
        ),
        current_task_id.set(task_id or ""),
        current_task_name.set(str(getattr(task, "name", "") or "")),
    )


def on_task_postrun(task_id: str = "", **_: Any) -> None:
    tokens = _task_tokens.pop(task_id, None)
    if tokens is None:
        return
    rid, tid, tname = tokens
    current_task_name.reset(tname)
    current_task_id.reset(tid)
    current_request_id.reset(rid)
