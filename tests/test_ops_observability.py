"""Request ids, JSON logs and Prometheus metrics (emoloop.logs, emoloop.middleware,
ops.services.metrics, /metrics).

The task tests run a Celery worker of their own, started with EMOLOOP_LOG_FORMAT=json on
queues of its own (tests/s3server.py's prefixed-queue worker, local storage), so that its
log can be read line by line and no other worker takes its tasks.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from emoloop import logs
from emoloop.celery import app
from ops.models import TaskOutcome, WorkerHeartbeat
from ops.services import celery_state
from ops.tasks import probe
from tests.conftest import REPO, make_user, wait_until
from tests.s3server import database_url, free_port, prefixed_queues

TOKEN = "metrics-test-token"


# --- Request ids ----------------------------------------------------------------------------


def test_an_incoming_request_id_is_sent_back(client, db):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="lb-7f3a.42:req_1")
    assert response["X-Request-ID"] == "lb-7f3a.42:req_1"


def test_without_a_request_id_one_is_made_per_request(client, db):
    first, second = client.get("/healthz"), client.get("/healthz")
    assert len(first["X-Request-ID"]) == 32
    assert first["X-Request-ID"] != second["X-Request-ID"]


@pytest.mark.parametrize(
    "hostile",
    ["x" * 65, "a b", "id\r\nSet-Cookie: a=b", "<script>", "ü", "id;rm", ""],
    ids=["too-long", "space", "header-injection", "markup", "non-ascii", "semicolon", "empty"],
)
def test_a_hostile_request_id_is_replaced_not_cleaned(client, db, hostile):
    sent = client.get("/healthz", HTTP_X_REQUEST_ID=hostile)["X-Request-ID"]
    assert sent != hostile
    assert len(sent) == 32
    assert all(c in "0123456789abcdef" for c in sent)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Records written the way settings.LOGGING writes them in json mode, into a buffer."""
    config = logs.logging_config("json", "INFO")["handlers"]["console"]
    assert config["filters"] == ["context"]
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler.stream
    finally:
        root.removeHandler(handler)


def _records(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_every_log_line_of_a_request_carries_its_id(client, db, json_lines):
    WorkerHeartbeat.objects.all().delete()  # (the live worker's, if it runs): /readyz is 503
    logging.getLogger("before").warning("outside any request")
    client.get("/readyz", HTTP_X_REQUEST_ID="req-one")  # 503 without a worker: a warning
    client.get("/no-such-page", HTTP_X_REQUEST_ID="req-two")  # 404: a warning
    logging.getLogger("after").warning("outside again")

    records = _records(json_lines)
    by_logger = [(r["logger"], r.get("request_id")) for r in records]
    assert ("before", None) in by_logger
    assert ("after", None) in by_logger
    requests = [r for r in records if r["logger"] == "django.request"]
    assert [r["request_id"] for r in requests] == ["req-one", "req-two"], requests
    assert requests[0]["level"] == "WARNING"
    assert "worker" in requests[0]["message"]
    assert requests[0]["status_code"] == 503  # Django's extra={...} fields are kept
    assert "request" not in requests[0]  # the request object is not dumped


def test_the_json_formatter_keeps_extras_and_exceptions(json_lines):
    log = logging.getLogger("emoloop.test")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed", extra={"clip": 7, "path": Path("/x")})
    (record,) = _records(json_lines)
    assert (record["message"], record["clip"], record["path"]) == ("failed", 7, "/x")
    assert "ValueError: boom" in record["exc_info"]
    assert record["time"].endswith("+00:00")


def _django_stderr(**env: str) -> subprocess.CompletedProcess[str]:
    script = (
        "import django, logging; django.setup(); from emoloop import logs; "
        "logs.current_request_id.set('sub-1'); logging.getLogger('probe').warning('hello')"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "emoloop.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_log_format_setting_picks_json_or_text_and_refuses_others():
    as_json = _django_stderr(EMOLOOP_LOG_FORMAT="json")
    assert as_json.returncode == 0, as_json.stderr
    line = json.loads(as_json.stderr.strip().splitlines()[-1])
    assert (line["logger"], line["message"], line["request_id"]) == ("probe", "hello", "sub-1")

    as_text = _django_stderr(EMOLOOP_LOG_FORMAT="text")
    assert as_text.stderr.strip().splitlines()[-1].endswith(" WARNING probe: hello")

    wrong = _django_stderr(EMOLOOP_LOG_FORMAT="xml")
    assert wrong.returncode != 0
    assert "EMOLOOP_LOG_FORMAT must be json or text" in wrong.stderr


# --- A worker that logs JSON ----------------------------------------------------------------


@pytest.fixture(scope="module")
def json_worker_process(django_db_setup, tmp_path_factory) -> Iterator[dict]:
    prefix = f"obs{uuid.uuid4().hex[:6]}-"
    hostname = f"jsonworker-{uuid.uuid4().hex[:6]}@localhost"
    log_path = tmp_path_factory.mktemp("json-worker") / "worker.log"
    queues = ",".join(prefix + q for q in celery_state.queue_names())
    env = {
        **os.environ,
        "EMOLOOP_LOG_FORMAT": "json",
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(tmp_path_factory.mktemp("json-worker-media")),
    }
    command = [sys.executable, "tests/s3server.py", "worker", prefix, "--", "-Q", queues,
               "-n", hostname, "--concurrency", "1", "--pool", "solo", "--without-gossip",
               "--without-mingle", "-l", "info"]  # fmt: skip
    with log_path.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 90
        while not app.control.ping(destination=[hostname], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JSON worker did not start: {log_path.read_text()[-3000:]}")
        yield {"prefix": prefix, "log": log_path}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def json_worker(json_worker_process, transactional_db) -> Iterator[dict]:
    """Per test: this process sends its tasks to the JSON worker's queues."""
    with prefixed_queues(app, json_worker_process["prefix"]):
        yield json_worker_process


def _worker_records(worker: dict) -> list[dict]:
    records = []
    for line in worker["log"].read_text(errors="replace").splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


@pytest.mark.celery
def test_a_task_logs_with_its_id_and_the_id_of_the_request_that_sent_it(client, json_worker):
    staff = make_user("ops-staff", is_staff=True)
    client.force_login(staff)
    response = client.post("/api/ops/storage/measure/", HTTP_X_REQUEST_ID="sent-by-req-9")
    assert response.status_code == 202

    def task_lines() -> list[dict]:
        return [
            r
            for r in _worker_records(json_worker)
            if r.get("task_name") == "ops.tasks.measure_storage"
        ]

    wait_until(lambda: any("succeeded" in r["message"] for r in task_lines()), timeout=60)
    lines = task_lines()
    assert {r["request_id"] for r in lines} == {"sent-by-req-9"}
    (task_id,) = {r["task_id"] for r in lines}
    assert any(task_id in r["message"] for r in lines)
    # Records outside any task (worker start-up) carry no task or request id.
    assert any("task_id" not in r and "request_id" not in r for r in _worker_records(json_worker))


# --- Metrics ----------------------------------------------------------------------------------


def _scrape(client) -> dict[str, dict[tuple, float]]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def test_metrics_are_off_without_a_token_and_want_the_right_bearer(client, db, settings):
    settings.EMOLOOP_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.EMOLOOP_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    answer = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert answer.status_code == 200
    assert b"emoloop_http_request_duration_seconds" in answer.content


def test_request_latency_is_labelled_by_route_pattern_not_by_path(client, db, settings):
    settings.EMOLOOP_METRICS_TOKEN = TOKEN
    name = "emoloop_http_request_duration_seconds_count"
    before = _scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    slug = f"no-such-{uuid.uuid4().hex[:6]}"
    client.get(f"/projects/{slug}/")
    client.get(f"/nothing/here/{slug}")
    after = _scrape(client)

    def moved(**labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved(route="healthz", method="GET", status="2xx") == 3
    assert moved(route="projects/<slug:slug>/", method="GET", status="3xx") == 1  # to login
    assert moved(route="unmatched", method="GET", status="4xx") == 1
    assert not any(slug in str(key) for series in after.values() for key in series)


def test_queue_lengths_are_read_from_the_broker_on_each_scrape(client, db, settings):
    settings.EMOLOOP_METRICS_TOKEN = TOKEN
    queue = f"ops-metrics-{uuid.uuid4().hex[:8]}"  # a queue no worker consumes
    settings.CELERY_TASK_ROUTES = {**settings.CELERY_TASK_ROUTES, "nothing.*": {"queue": queue}}
    try:
        assert _value(_scrape(client), "emoloop_celery_queue_length", queue=queue) == 0
        for _ in range(2):
            probe.apply_async(queue=queue)
        samples = _scrape(client)
        assert _value(samples, "emoloop_celery_queue_length", queue=queue) == 2
        assert _value(samples, "emoloop_metrics_source_up", source="queues") == 1
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.client.delete(queue)


def test_a_scrape_survives_a_broker_outage_and_says_so(client, db, settings):
    from tests.broker import broker_down

    settings.EMOLOOP_METRICS_TOKEN = TOKEN
    with broker_down():
        samples = _scrape(client)
    assert _value(samples, "emoloop_metrics_source_up", source="queues") == 0
    assert _value(samples, "emoloop_metrics_source_up", source="tasks") == 1
    assert "emoloop_celery_queue_length" not in samples


def test_the_filesystem_broker_counts_its_spool_files(tmp_path):
    for queue in ("default", "default", "training", "elsewhere"):
        (tmp_path / f"{time.monotonic_ns()}_{uuid.uuid4()}.{queue}.msg").write_bytes(b"{}")
    (tmp_path / "notes.txt").write_text("not a message")
    assert celery_state.spool_lengths(tmp_path, ["default", "training", "ingest"]) == {
        "default": 2,
        "training": 1,
        "ingest": 0,
    }
    assert celery_state.spool_lengths(tmp_path / "absent", ["default"]) == {"default": 0}


@pytest.mark.celery
def test_a_scrape_counts_real_task_outcomes_from_every_worker(client, json_worker, settings):
    settings.EMOLOOP_METRICS_TOKEN = TOKEN
    name = "emoloop_celery_tasks_total"
    before = _scrape(client)
    ok, failed = probe.delay(), probe.delay(fail=True)
    wait_until(
        lambda: TaskOutcome.objects.filter(task_name="ops.tasks.probe").count() == 2,
        timeout=60,
        what="both probe outcomes counted",
    )
    assert ok.get(timeout=30) == "ok"
    after = _scrape(client)

    def moved(outcome: str) -> float:
        labels = {"task": "ops.tasks.probe", "outcome": outcome}
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert (moved("succeeded"), moved("failed"), moved("retried")) == (1, 1, 0)
    assert failed.state == "FAILURE"
    assert 0 <= _value(after, "emoloop_celery_worker_heartbeat_age_seconds") < 60


def test_outcomes_add_up_across_writers(db):
    for _ in range(3):
        celery_state.note_outcome("x.task", "retried")
    celery_state.note_outcome("x.task", "succeeded")
    counts = dict(TaskOutcome.objects.filter(task_name="x.task").values_list("outcome", "count"))
    assert counts == {"retried": 3, "succeeded": 1}


# --- gunicorn: several processes, one scrape ---------------------------------------------------


def _get(url: str, token: str = "") -> bytes:
    request = urllib.request.Request(url)  # noqa: S310 (a loopback URL)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        return answer.read()


def test_a_scrape_sums_every_gunicorn_process_with_a_multiprocess_dir(db, tmp_path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "EMOLOOP_METRICS_TOKEN": TOKEN,
        "LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "emoloop.wsgi", "--bind", f"127.0.0.1:{port}",
             "--no-control-socket", "--workers", "2", "--timeout", "60"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            if server.poll() is not None:
                pytest.fail(f"gunicorn exited: {log_path.read_text()[-3000:]}")
            try:
                _get(base + "/metrics", TOKEN)  # not /healthz: those are counted below
            except OSError:
                return False
            return True

        wait_until(answers, timeout=120, what="gunicorn")
        sent = 0

        def both_served() -> bool:
            """Until both processes have served (each writes its own file), and 20 at least."""
            nonlocal sent
            _get(base + "/healthz")
            sent += 1
            return len(list(folder.glob("histogram_*.db"))) >= 2 and sent >= 20

        wait_until(both_served, timeout=120, what="both gunicorn processes serving")
        for _ in range(3):  # whichever process answers the scrape, it sums them all
            samples = {
                tuple(sorted(s.labels.items())): s.value
                for f in text_string_to_metric_families(_get(base + "/metrics", TOKEN).decode())
                for s in f.samples
                if s.name == "emoloop_http_request_duration_seconds_count"
            }
            key = (("method", "GET"), ("route", "healthz"), ("status", "2xx"))
            assert samples[key] == sent
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
