"""The admin's operations and audit pages in headless Chromium, against the live server, a
real Celery worker and PostgreSQL: the worker alive, a failed task with its error, a retry,
the audit log; no console error, failed request or CSP violation; screenshots saved."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, expect

from audit import services as audit
from labelling.services import projects
from ops.models import TaskFailure
from ops.tasks import probe
from tests.conftest import wait_until

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


def log_in(page: Page, live_server, user) -> None:
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def test_an_admin_sees_the_worker_a_failed_task_retries_it_and_reads_the_audit_log(
    page: Page, live_server, worker, superuser, project, project_admin, artifacts
):
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    page.add_init_script(LISTEN_FOR_VIOLATIONS)

    # What others did: a project admin changed a setting; a task failed in the worker.
    projects.update_project(project, {"gold_rate": 0.2})
    audit.record(project_admin, "membership.role_changed", project=project, target=project)
    key = f"browser-{uuid.uuid4().hex[:8]}"  # fails once per key, ever
    sent = probe.delay(fail_once=key)
    wait_until(lambda: TaskFailure.objects.filter(task_id=sent.id).exists(), timeout=30)

    log_in(page, live_server, superuser)
    page.goto(f"{live_server.url}/ops/", timeout=20_000)
    expect(page.locator("#ops")).to_have_attribute("data-state", "live")
    expect(page.locator("#workers tbody tr[data-worker]")).to_have_count(1)
    expect(page.locator("#workers tbody")).to_contain_text("alive")
    row = page.locator(f'#failures tr[data-task-id="{sent.id}"]')
    expect(row).to_contain_text(f"probe '{key}' failed on purpose")
    expect(page.locator('#checks tr[data-check="worker"]')).to_contain_text("ok")
    page.screenshot(path=str(artifacts / "ops-page.png"), full_page=True)

    row.get_by_role("button", name="Retry").click()
    expect(page.locator("#ops-alerts")).to_contain_text("Task sent again.")
    expect(row).to_contain_text(f"retried by {superuser.username}")

    page.goto(f"{live_server.url}/audit/")
    table = page.locator("#audit-events")
    expect(table.locator('tr[data-action="project.settings_changed"]')).to_contain_text("gold_rate")
    expect(table.locator('tr[data-action="membership.role_changed"]')).to_contain_text("ada")
    expect(table.locator('tr[data-action="task.retried"]')).to_contain_text(superuser.username)
    page.screenshot(path=str(artifacts / "audit-page.png"), full_page=True)

    page.select_option("#f-action", "task.retried")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tbody tr")).to_have_count(1)

    violations = page.evaluate("window.__cspViolations")
    assert not violations, violations
    assert not problems, problems
