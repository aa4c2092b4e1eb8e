"""A real broker outage for tests: this process's Celery app publishes to a closed port
for the duration (no mock of publish), then to the test broker again."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from kombu import pools

from emoloop.celery import app


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def _point_broker_at(url: str | None) -> None:
    """Publish to `url` from now on. Celery 5.7 caches the connection pool (app._pool) and
    the producer pool (app.amqp._producer_pool); both are rebuilt from broker_write_url,
    which wins over broker_url (and over the CELERY_BROKER_URL environment variable)."""
    app.conf.broker_write_url = url
    # kombu keeps the pools in a registry keyed by connection: close and forget them all, so
    # that neither a closed nor a dead pool is handed out again.
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def broker_down() -> Iterator[None]:
    saved = app.conf.get("broker_write_url")
    _point_broker_at(f"redis://127.0.0.1:{_closed_port()}/0")
    try:
        yield
    finally:
        _point_broker_at(saved)
