"""gunicorn settings for the HTTP benchmarks (`-c bench/gunicorn_warm.py` with `--preload`):
the master loads the URL conf, and with it every view module (torch, crowd-kit), before it
forks its workers, so that no measured request pays for those imports in a worker. On a
busy shared machine they take tens of seconds, past a load client's timeout."""

from __future__ import annotations

from typing import Any


def when_ready(server: Any) -> None:
    from django.db import connections
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports every view module)
    connections.close_all()  # a forked worker must not share the master's connection
