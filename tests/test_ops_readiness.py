"""/readyz for load balancers: ready with a real worker; 503 naming what failed, each check
failing on its own (a broker on a closed port, an object store that was stopped, no or a
stale worker heartbeat, a media folder that cannot be written); a body that shows check
names and reason codes only; answers reused for a few seconds; a 503 logged as a warning.
/healthz stays a liveness probe."""

from __future__ import annotations

import logging
import re
import threading

import pytest

from ops.models import WorkerHeartbeat
from ops.services import celery_state, health
from tests.broker import broker_down
from tests.conftest import wait_until
from tests.s3server import S3Bucket, start_s3_server, use_bucket

CHECK_NAMES = ("database", "cache", "broker", "storage", "worker")
REASONS = {"unreachable", "timeout", "refused", "missing", "stale", "error"}


def _ready(client) -> tuple[int, dict]:
    response = client.get("/readyz")
    return response.status_code, response.json()


def _assert_reveals_nothing(raw: str, body: dict) -> None:
    """Only the documented shape: names, ok, a reason code; no address, URL or error text."""
    assert set(body) == {"status", "failed", "checks"}
    assert set(body["checks"]) == set(CHECK_NAMES)
    for name, check in body["checks"].items():
        assert set(check) <= {"ok", "reason"}, (name, check)
        assert check["ok"] or check["reason"] in REASONS, (name, check)
    assert not re.search(r"\d+\.\d+\.\d+\.\d+|localhost|://|:\d{2,5}\b|Error|Exception", raw), raw


@pytest.fixture(autouse=True)
def _patient_checks(settings) -> None:
    """Checks that should pass are given time to on a loaded machine (2 s in production; the
    hung-check test sets its own)."""
    settings.OPS_READYZ_TIMEOUT_SECONDS = 30


@pytest.fixture
def no_heartbeat(db) -> None:
    """No worker heartbeat, in this test's transaction (the suite's live worker, when it
    runs, writes its own, committed)."""
    WorkerHeartbeat.objects.all().delete()


@pytest.fixture
def heartbeat(db) -> None:
    celery_state.note_heartbeat(f"w-{id(object())}@host")


def test_without_a_worker_heartbeat_readyz_answers_503_naming_the_worker(client, no_heartbeat):
    status, body = _ready(client)
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["failed"] == ["worker"], body
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["worker"] == {"ok": False, "reason": "missing"}
    assert client.get("/healthz").status_code == 200, "liveness does not depend on workers"


def test_a_stale_heartbeat_is_not_ready(client, heartbeat, settings):
    settings.OPS_HEARTBEAT_FRESH_SECONDS = 0
    status, body = _ready(client)
    assert (status, body["failed"]) == (503, ["worker"])
    assert body["checks"]["worker"]["reason"] == "stale"


def test_a_storage_folder_that_cannot_be_written_is_not_ready(
    client, heartbeat, settings, tmp_path
):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings.MEDIA_ROOT = str(blocker / "media")  # under a file: cannot be created
    status, body = _ready(client)
    assert (status, body["failed"]) == (503, ["storage"])
    assert body["checks"]["storage"]["reason"] == "unreachable"  # FileExistsError, an OSError


def test_an_answer_is_reused_for_a_few_seconds_then_asked_again(client, no_heartbeat, settings):
    settings.OPS_READYZ_CACHE_SECONDS = 3600
    assert _ready(client)[1]["failed"] == ["worker"]
    celery_state.note_heartbeat("late@host")
    assert _ready(client)[1]["failed"] == ["worker"], "within the interval: the same answer"
    health.forget_cached()
    assert _ready(client) == (
        200,
        {"status": "ready", "failed": [], "checks": {n: {"ok": True} for n in CHECK_NAMES}},
    )


def test_a_503_is_logged_as_a_warning_not_an_error(client, no_heartbeat, caplog):
    with caplog.at_level(logging.INFO, logger="django.request"):
        assert client.get("/readyz").status_code == 503
    records = [r for r in caplog.records if r.name == "django.request"]
    assert [r.levelname for r in records] == ["WARNING"], records
    assert "worker" in records[0].getMessage()


def test_an_object_store_that_stops_answering_fails_the_storage_check_alone(
    client, heartbeat, settings
):
    server = start_s3_server()  # this test's own: the suite's shared server keeps running
    try:
        bucket = S3Bucket(server, server.create_bucket())
        use_bucket(settings, bucket)
        status, body = _ready(client)
        assert (status, body["failed"]) == (200, []), body

        server.stop()
        health.forget_cached()
        response = client.get("/readyz")
    finally:
        server.stop()
    body = response.json()
    assert (response.status_code, body["failed"]) == (503, ["storage"])
    assert body["checks"]["storage"]["reason"] in {"unreachable", "timeout"}
    _assert_reveals_nothing(response.content.decode(), body)


def test_a_missing_bucket_fails_the_storage_check(client, heartbeat, settings, s3_storage):
    use_bucket(settings, S3Bucket(s3_storage.server, "emoloop-no-such-bucket"))
    status, body = _ready(client)
    assert (status, body["failed"]) == (503, ["storage"])
    assert body["checks"]["storage"]["reason"] == "refused"  # the store answered: 404


def test_a_check_that_hangs_is_cut_off_and_reported_as_a_timeout(
    client, heartbeat, settings, monkeypatch
):
    settings.OPS_READYZ_TIMEOUT_SECONDS = 0.2
    release = threading.Event()
    monkeypatch.setitem(health.CHECKS, "cache", lambda: release.wait(30))
    try:
        status, body = _ready(client)
    finally:
        release.set()
    assert (status, body["failed"]) == (503, ["cache"])
    assert body["checks"]["cache"]["reason"] == "timeout"


def test_a_probe_does_not_queue_forever_behind_a_round_stuck_on_the_database(
    heartbeat, settings, monkeypatch
):
    # The database check runs in the caller's thread without a time box of its own.
    settings.OPS_READYZ_TIMEOUT_SECONDS = 0.1
    health.forget_cached()
    release, entered = threading.Event(), threading.Event()

    def hung_database() -> None:
        entered.set()
        release.wait(30)

    monkeypatch.setitem(health.CHECKS, "database", hung_database)
    stuck = threading.Thread(target=health.readiness)
    stuck.start()
    try:
        assert entered.wait(10)
        results = health.readiness()  # waits 1.2 s at most, then answers
    finally:
        release.set()
        stuck.join(10)
    assert {check.reason for check in results} == {"timeout"}
    assert [check.name for check in results] == list(health.CHECKS)


@pytest.mark.celery
def test_with_a_real_worker_readyz_is_200_and_503_naming_the_broker_when_it_is_down(client, worker):
    def ready() -> bool:
        health.forget_cached()
        return _ready(client)[0] == 200

    wait_until(ready, timeout=30, what="a worker heartbeat")
    status, body = _ready(client)
    assert status == 200
    assert body == {
        "status": "ready",
        "failed": [],
        "checks": {name: {"ok": True} for name in CHECK_NAMES},
    }

    with broker_down():
        health.forget_cached()
        response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["failed"] == ["broker"]
    assert body["checks"]["broker"] == {"ok": False, "reason": "unreachable"}
    _assert_reveals_nothing(response.content.decode(), body)
    health.forget_cached()
    assert _ready(client)[0] == 200, "ready again once the broker is back"
