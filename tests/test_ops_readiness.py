"""/readyz for load balancers: ready with a real worker, 503 naming what failed (a broker on
a closed port, no worker heartbeat); /healthz stays a liveness probe."""

from __future__ import annotations

import pytest

from tests.broker import broker_down
from tests.conftest import wait_until


def _ready(client) -> tuple[int, dict]:
    response = client.get("/readyz")
    return response.status_code, response.json()


def test_without_a_worker_heartbeat_readyz_answers_503_naming_the_worker(client, db):
    status, body = _ready(client)
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["failed"] == ["worker"], body
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["worker"]["error"] == "RuntimeError"
    assert client.get("/healthz").status_code == 200, "liveness does not depend on workers"


def test_a_stale_heartbeat_is_not_ready(client, db, settings):
    from ops.services import celery_state

    celery_state.note_heartbeat("old@host")
    settings.OPS_HEARTBEAT_FRESH_SECONDS = 0
    assert _ready(client)[1]["failed"] == ["worker"]


def test_a_storage_folder_that_cannot_be_written_is_not_ready(client, db, settings, tmp_path):
    from ops.services import celery_state

    celery_state.note_heartbeat("w@host")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings.MEDIA_ROOT = str(blocker / "media")  # under a file: cannot be created
    assert _ready(client)[1]["failed"] == ["storage"]


@pytest.mark.celery
def test_with_a_real_worker_readyz_is_200_and_503_naming_the_broker_when_it_is_down(client, worker):
    wait_until(lambda: _ready(client)[0] == 200, timeout=30, what="a worker heartbeat")
    status, body = _ready(client)
    assert body == {
        "status": "ready",
        "failed": [],
        "checks": {
            name: {"ok": True, "ms": body["checks"][name]["ms"]}
            for name in ("database", "cache", "broker", "storage", "worker")
        },
    }

    with broker_down():
        status, body = _ready(client)
    assert status == 503
    assert body["failed"] == ["broker"]
    assert body["checks"]["broker"]["ok"] is False
    assert _ready(client)[0] == 200, "ready again once the broker is back"
