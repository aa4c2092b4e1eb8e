"""The admin's operations and audit pages in headless Chromium, against the live server, a
real Celery worker and PostgreSQL: a second worker started by the test is alive, is killed
(SIGKILL) and goes missing on the workers page; a failed task shows its error and is
retried; the audit log holds what the others did through the API as themselves (a project
setting, a learner setting, a training and a model activation, an adjudication, a
dataset). No console error, failed request or CSP violation; screenshots saved."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, expect

from emoloop.celery import app
from exports.models import DatasetVersion
from learner.models import ModelVersion
from ops.models import TaskFailure, WorkerHeartbeat
from ops.tasks import probe
from tests.conftest import REPO, wait_until
from tests.persona_world import ingest_labelled

pytestmark = [
    pytest.mark.browser,
    pytest.mark.celery,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

expect.set_options(timeout=10_000)

LISTEN_FOR_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""
# A heartbeat is written at most every 5 s (ops.services.celery_state): a worker whose last
# one is older than this is missing. Small, so the killed worker goes missing quickly.
FRESH_SECONDS = 12


def log_in(page: Page, live_server, user) -> None:
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def start_doomed_worker(log: Path) -> tuple[subprocess.Popen, str]:
    """A second worker, on the test database and broker like the session's (tests/conftest.py
    live_worker), on a queue of its own so that it takes none of the tests' tasks."""
    name = f"doomed-{uuid.uuid4().hex[:8]}"
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env["DATABASE_URL"] = (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "emoloop", "worker", "-n", f"{name}@%h",
         "-Q", name, "-P", "solo", "--without-gossip", "--without-mingle", "-l", "info"],
        cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    return process, name


def what_the_others_did(project, users, client_for, tmp_path) -> dict[str, object]:
    """The project's admin, ML engineer and reviewer at work through the API (each action
    is written to the audit log by the service that holds its rule); the worker trains and
    builds the dataset."""
    base = f"/api/projects/{project.slug}"
    ada, emil, rita = (client_for(users[k]) for k in ("admin", "engineer", "reviewer"))
    changed = ada.patch(f"{base}/", {"gold_rate": 0.2}, format="json")
    assert changed.status_code == 200, changed.content
    quick = {"epochs": 10, "augmentation": False, "min_labelled_clips": 10}
    changed = emil.patch(f"{base}/learner-settings", quick, format="json")
    assert changed.status_code == 200, changed.content

    clips = ingest_labelled(project, tmp_path, users["annotator"])
    started = emil.post(f"{base}/training-runs", {}, format="json")
    assert started.status_code == 202, started.content
    wait_until(
        lambda: ModelVersion.objects.filter(project=project, number=1, is_active=True).exists(),
        timeout=180,
        what="the worker to train and activate version 1",
    )
    activated = emil.post(f"{base}/models/1/activate")  # the engineer makes it active again
    assert activated.status_code == 200, activated.content

    clip = clips[0]
    decided = rita.post(
        f"{base}/review/clips/{clip.pk}/", {"node": "mad.angry", "note": "shouting"}, format="json"
    )
    assert decided.status_code == 201, decided.content
    made = emil.post(f"{base}/datasets/", {"seed": 3}, format="json")
    assert made.status_code == 201, made.content
    wait_until(
        lambda: DatasetVersion.objects.get(project=project, number=1).status == "ready",
        timeout=120,
        what="the worker to build dataset version 1",
    )
    return {"clip": clip}


def test_an_admin_sees_a_killed_worker_go_missing_a_failed_task_and_what_the_others_did(
    page: Page,
    live_server,
    worker,
    settings,
    superuser,
    project,
    project_admin,
    engineer,
    reviewer,
    annotator,
    client_for,
    artifacts,
    tmp_path,
):
    settings.OPS_HEARTBEAT_FRESH_SECONDS = FRESH_SECONDS  # the live server runs in this process
    doomed, name = start_doomed_worker(tmp_path / "doomed.log")
    try:
        run_the_admin_test(
            page, live_server, doomed, name, superuser, project, client_for, artifacts, tmp_path,
            {"admin": project_admin, "engineer": engineer, "reviewer": reviewer,
             "annotator": annotator},
        )  # fmt: skip
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(timeout=10)


def run_the_admin_test(
    page, live_server, doomed, name, superuser, project, client_for, artifacts, tmp_path, users
):
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    page.add_init_script(LISTEN_FOR_VIOLATIONS)

    # What others did, and a task that failed in the worker.
    done = what_the_others_did(project, users, client_for, tmp_path)
    key = f"browser-{uuid.uuid4().hex[:8]}"  # fails once per key, ever
    sent = probe.delay(fail_once=key)
    wait_until(lambda: TaskFailure.objects.filter(task_id=sent.id).exists(), timeout=30)

    # The second worker answers and has written its heartbeat.
    wait_until(
        lambda: (
            doomed.poll() is None
            and any(
                host.startswith(f"{name}@") for r in app.control.ping(timeout=0.5) for host in r
            )
            and WorkerHeartbeat.objects.filter(hostname__startswith=f"{name}@").exists()
        ),
        timeout=90,
        what=f"the second worker {name} to answer and beat",
    )
    log_in(page, live_server, superuser)
    page.goto(f"{live_server.url}/ops/", timeout=20_000)
    ops = page.locator("#ops")
    expect(ops).to_have_attribute("data-state", "live")
    workers = page.locator("#workers tbody")
    expect(workers.locator('tr[data-state="alive"]')).to_have_count(2)
    expect(workers.locator(f'tr[data-worker^="{name}@"]')).to_contain_text("alive")
    expect(page.locator('#checks tr[data-check="worker"]')).to_contain_text("ok")

    # Killed without a goodbye: it stops answering at once, then its heartbeat goes stale.
    doomed.kill()
    doomed.wait(timeout=10)
    gone = workers.locator(f'tr[data-silent-worker^="{name}@"]')
    expect(gone).to_have_attribute("data-state", "missing", timeout=60_000)
    expect(gone).to_contain_text("missing")
    expect(gone).to_contain_text("last heartbeat")
    expect(workers.locator(f'tr[data-worker^="{name}@"]')).to_have_count(0)
    expect(workers.locator('tr[data-state="alive"]')).to_have_count(1)  # the session's worker
    row = page.locator(f'#failures tr[data-task-id="{sent.id}"]')
    expect(row).to_contain_text(f"probe '{key}' failed on purpose")
    page.screenshot(path=str(artifacts / "ops-page.png"), full_page=True)

    row.get_by_role("button", name="Retry").click()
    expect(page.locator("#ops-alerts")).to_contain_text("Task sent again.")
    expect(row).to_contain_text(f"retried by {superuser.username}")

    # The audit log: each of the others' actions, under their names.
    page.goto(f"{live_server.url}/audit/")
    table = page.locator("#audit-events")

    def event(action: str, actor: str):
        return table.locator(f'tr[data-action="{action}"]').filter(
            has=page.locator("td:nth-child(2)", has_text=actor)
        )

    expect(event("project.settings_changed", "ada")).to_contain_text("gold_rate")
    expect(event("learner.settings_changed", "emil")).to_contain_text("min_labelled_clips")
    expect(event("model.activated", "system")).to_contain_text("'number': 1")  # the training
    expect(event("model.activated", "emil")).to_contain_text("'number': 1")
    expect(event("review.adjudicated", "rita")).to_contain_text("mad.angry")
    expect(event("review.adjudicated", "rita")).to_contain_text(f"'clip': {done['clip'].pk}")
    expect(event("dataset.created", "emil")).to_contain_text("'seed': 3")
    expect(event("task.retried", superuser.username)).to_have_count(1)
    page.screenshot(path=str(artifacts / "audit-page.png"), full_page=True)

    page.select_option("#f-action", "review.adjudicated")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tbody tr")).to_have_count(1)

    violations = page.evaluate("window.__cspViolations")
    assert not violations, violations
    assert not problems, problems
