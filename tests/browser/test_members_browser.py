"""The project admin's Users and roles page in headless Chromium, on the live server and
PostgreSQL: change a member's role, deactivate an annotator who holds a lease (the count of
open leases drops to 0, the slot goes back to the queue), invite someone (the link is shown
once); no console error, failed request or CSP violation; a screenshot is saved."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, expect

from labelling.models import Invitation, Membership, QueueEntry, Role
from labelling.services import queue
from tests.conftest import wait_until
from tests.factories import ClipFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

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


def test_an_admin_changes_a_role_deactivates_an_annotator_and_invites_someone(
    page: Page, live_server, project, project_admin, annotator, engineer, artifacts
):
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    page.add_init_script(LISTEN_FOR_VIOLATIONS)
    clip = ClipFactory(project=project)
    queue.enqueue_clips(project, [clip])
    assert queue.next_clip(project, annotator) is not None
    assert QueueEntry.objects.get(clip=clip).open_slots == 1
    anna = Membership.objects.get(user=annotator)
    emil = Membership.objects.get(user=engineer)

    log_in(page, live_server, project_admin)
    page.goto(f"{live_server.url}/projects/{project.slug}/members/", timeout=20_000)
    anna_row = page.locator('#members tr[data-username="anna"]')
    expect(anna_row.locator(".member-leases")).to_have_text("1")
    expect(page.get_by_role("link", name="Users & roles")).to_have_attribute("aria-current", "page")

    page.select_option(f"#role-{emil.pk}", "reviewer")
    expect(page.locator("#status")).to_have_text("emil is now Reviewer.")
    wait_until(lambda: Membership.objects.get(pk=emil.pk).role == Role.REVIEWER, timeout=5)

    page.once("dialog", lambda dialog: dialog.accept())
    anna_row.get_by_role("button", name="Deactivate").click()
    page.wait_for_url(f"**/members/?changed={anna.pk}")
    expect(anna_row.locator(".member-leases")).to_have_text("0")
    expect(anna_row.locator(".member-status")).to_contain_text("Deactivated")
    expect(anna_row.locator(".member-status")).to_contain_text("by ada")
    expect(anna_row.get_by_role("button", name="Reactivate")).to_be_visible()
    assert QueueEntry.objects.get(clip=clip).open_slots == 2
    assert not Membership.objects.get(pk=anna.pk).is_active

    page.select_option("#invite-role", "annotator")
    page.fill("#invite-note", "for Nina")
    page.get_by_role("button", name="Create invitation").click()
    expect(page.locator("#invite-link")).to_contain_text(f"{live_server.url}/invitations/")
    expect(page.locator("#invitations tbody tr")).to_have_count(1)
    expect(page.locator("#invitations tbody")).to_contain_text("for Nina")
    invitation = Invitation.objects.get(project=project)
    assert (invitation.role, invitation.note, invitation.created_by) == (
        Role.ANNOTATOR,
        "for Nina",
        project_admin,
    )
    page.screenshot(path=str(artifacts / "members-page.png"), full_page=True)

    page.get_by_role("button", name="Revoke").click()
    expect(page.locator("#invitations tbody tr")).to_have_count(0)
    wait_until(lambda: Invitation.objects.get(pk=invitation.pk).revoked_at is not None, timeout=5)

    violations = page.evaluate("window.__cspViolations")
    assert not violations, violations
    assert not problems, problems
