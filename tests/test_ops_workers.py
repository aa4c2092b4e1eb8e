"""The operations page and API with a real worker: a failed task appears with its error and
can be retried once; a killed worker goes missing; only instance admins get in."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from django.conf import settings

from audit.models import AuditEvent
from emoloop.celery import app
from ops.models import BeatRun, StorageReport, TaskFailure
from ops.tasks import probe
from tests.conftest import REPO, make_user, wait_until


def test_only_instance_admins_see_operations(client, client_for, annotator, project_admin, db):
    assert client.get("/ops/").status_code == 302  # anonymous: to the login page
    assert client.get("/ops/")["Location"].startswith("/accounts/login/")
    client.force_login(project_admin)  # a project's admin is not an instance admin
    assert client.get("/ops/").status_code == 403
    for user in (annotator, project_admin):
        refused = client_for(user).get("/api/ops/overview/")
        assert refused.status_code == 403
        assert refused.json()["code"] == "permission_denied"
        assert client_for(user).post("/api/ops/failures/1/retry/").status_code == 403
    assert client_for(None).get("/api/ops/overview/").status_code in (401, 403)


def test_a_superuser_without_the_staff_flag_is_an_instance_admin(client, client_for, db):
    # The audit log's rule (audit.services.is_instance_admin): staff or superuser.
    root = make_user("root", is_superuser=True, is_staff=False)
    assert client_for(root).get("/api/ops/overview/").status_code == 200
    client.force_login(root)
    assert client.get("/ops/").status_code == 200


@pytest.mark.celery
def test_a_failed_task_shows_its_error_and_a_retry_runs_it_again_once(client_for, staff, worker):
    api = client_for(staff)
    key = f"retry-me-{uuid.uuid4().hex[:8]}"  # fails once per key, ever
    sent = probe.delay(fail_once=key)
    wait_until(lambda: TaskFailure.objects.filter(task_id=sent.id).exists(), timeout=30)

    failure = TaskFailure.objects.get(task_id=sent.id)
    assert failure.task_name == "ops.tasks.probe"
    assert failure.exception == f"ProbeFailed: probe '{key}' failed on purpose (first run)"
    assert "raise ProbeFailed" in failure.traceback
    assert failure.queue == "default"
    overview = api.get("/api/ops/overview/").json()
    shown = next(f for f in overview["failures"] if f["task_id"] == sent.id)
    assert shown["exception"] == failure.exception
    assert shown["retryable"] is True
    assert any(q["name"] == "default" and q["failed_24h"] >= 1 for q in overview["queues"])

    retried = api.post(f"/api/ops/failures/{failure.pk}/retry/")
    assert retried.status_code == 202, retried.content
    retry_id = retried.json()["retry_task_id"]
    assert app.AsyncResult(retry_id).get(timeout=30) == "ok"
    failure.refresh_from_db()
    assert (failure.retried_by, failure.retry_task_id) == (staff, retry_id)
    event = AuditEvent.objects.get(action="task.retried")
    assert (event.actor, event.details["retry_task_id"]) == (staff, retry_id)

    again = api.post(f"/api/ops/failures/{failure.pk}/retry/")
    assert again.status_code == 409
    assert again.json()["code"] == "already_retried"


@pytest.mark.celery
def test_a_task_that_is_not_ours_is_not_retried(client_for, staff, worker):
    failure = TaskFailure.objects.create(
        task_name="celery.chord_unlock", task_id="x", args=[], kwargs={}, exception="E: x"
    )
    refused = client_for(staff).post(f"/api/ops/failures/{failure.pk}/retry/")
    assert refused.status_code == 400
    assert refused.json()["code"] == "not_retryable"


def _test_database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _hosts(api) -> set[str]:
    return {w["hostname"] for w in api.get("/api/ops/overview/").json()["workers"]}


@pytest.mark.celery
@pytest.mark.slow
def test_a_killed_worker_goes_missing_from_the_page(client_for, client, staff, worker, tmp_path):
    api = client_for(staff)
    extra = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "emoloop", "worker", "-Q", "default",
         "-n", "extra@%h", "--concurrency", "1", "--without-gossip", "--without-mingle"],
        cwd=REPO,
        env=dict(os.environ, DATABASE_URL=_test_database_url()),
        stdout=(tmp_path / "extra.log").open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(lambda: any(h.startswith("extra@") for h in _hosts(api)), timeout=60,
                   what="the second worker to answer")  # fmt: skip
        hosts = _hosts(api)
        assert len(hosts) == 2
        client.force_login(staff)
        page = client.get("/ops/").content.decode()
        assert 'data-worker="extra@' in page

        extra.kill()  # SIGKILL: no goodbye
        extra.wait(timeout=10)
        wait_until(lambda: not any(h.startswith("extra@") for h in _hosts(api)), timeout=30,
                   what="the killed worker to go missing")  # fmt: skip
        assert 'data-worker="extra@' not in client.get("/ops/").content.decode()
        assert len(_hosts(api)) == 1, "the first worker is still there"
    finally:
        if extra.poll() is None:
            extra.kill()


@pytest.mark.celery
def test_storage_usage_is_measured_by_the_worker_per_top_folder(client_for, client, staff, worker):
    root = worker["media_root"]
    # The live worker's media folder is shared by the session's tests: our folders have
    # names of their own, and the top level is counted from the disk.
    tag = uuid.uuid4().hex[:8]
    audio, models = f"audio-{tag}", f"learner-{tag}"
    files = {f"{audio}/a.wav": 1000, f"{audio}/deep/b.wav": 24, f"{models}/m.bin": 5,
             f"loose-{tag}.txt": 3}  # fmt: skip
    for name, size in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x" * size)

    assert client_for(staff).post("/api/ops/storage/measure/").status_code == 202
    wait_until(lambda: StorageReport.objects.exists(), timeout=30, what="the measurement")

    storage = client_for(staff).get("/api/ops/overview/").json()["storage"]
    by_folder = {f["folder"]: (f["bytes"], f["files"]) for f in storage["folders"]}
    # Every other folder the worker wrote (if any) is listed too; ours are exact.
    assert by_folder[audio] == (1024, 2)
    assert by_folder[models] == (5, 1)
    top = [path for path in root.iterdir() if path.is_file()]
    assert by_folder["(top level)"] == (sum(p.stat().st_size for p in top), len(top))
    assert storage["total_bytes"] == sum(b for b, _ in by_folder.values())
    client.force_login(staff)
    assert "1.0\xa0KB" in client.get("/ops/").content.decode()


@pytest.mark.celery
def test_a_beat_task_run_by_the_worker_shows_as_its_entry_last_run(client_for, staff, worker):
    from labelling.tasks import reclaim_expired_leases

    reclaim_expired_leases.delay()
    wait_until(
        lambda: BeatRun.objects.filter(task_name="labelling.tasks.reclaim_expired_leases").exists(),
        timeout=30,
    )
    beat = client_for(staff).get("/api/ops/overview/").json()["beat"]
    entry = next(b for b in beat if b["entry"] == "reclaim-expired-leases")
    assert entry["last_run_at"] is not None
    assert entry["every_s"] == 30.0
    never = next(b for b in beat if b["entry"] == "learner-reap-training-runs")
    assert never["last_run_at"] is None
