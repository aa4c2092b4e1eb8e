"""The quality and review pages in a real browser: a reviewer reads the annotators table
(sorting it), one annotator's page and the agreement page, then opens the review queue,
hears a clip whose labels disagree and records an adjudication; then an ML engineer, in a
browser of their own, creates the next dataset version on the datasets page, the real
Celery worker builds it, and its labels_<ring>.csv carry the reviewer's label for that clip
at every ring. No console error, failed request or CSP violation on the way. Screenshots
go to test-artifacts/."""

from __future__ import annotations

import csv
import io
import urllib.request

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, expect

from exports.models import DatasetVersion
from review.services.adjudication import current_adjudications
from tests.review_world import build

pytestmark = [
    pytest.mark.browser,
    pytest.mark.celery,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]
RINGS = ("core", "secondary", "tertiary")

WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


def log_in(page: Page, live_server, user) -> None:
    """A session cookie for the user (the login page is not under test); one plain request
    first, so the live server's first-request imports do not count against a navigation."""
    with urllib.request.urlopen(f"{live_server.url}/healthz", timeout=60) as response:  # noqa: S310
        assert response.status == 200
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def watch(page: Page, problems: list[str]) -> None:
    """Console errors, failed requests and answers >= 400 go to `problems`; CSP violations
    to window.__cspViolations."""
    page.on(
        "console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None
    )
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
    page.on(
        "response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None
    )
    page.add_init_script(WATCH_CSP)


def test_a_reviewer_adjudicates_a_disagreement_and_it_is_in_the_next_dataset(
    page: Page, live_server, worker, project, reviewer, engineer, artifacts, browser,
    browser_context_args,
):  # fmt: skip
    world = build(project)  # after `worker`: the clips' audio lies where the worker reads
    problems: list[str] = []
    watch(page, problems)
    log_in(page, live_server, reviewer)
    base = f"{live_server.url}/projects/{project.slug}"

    # The way in: the projects list, then the project's page.
    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()
    page.screenshot(path=str(artifacts / "home-page.png"), full_page=True)
    page.get_by_role("link", name=project.name, exact=True).click()
    expect(page.get_by_role("heading", name=project.name)).to_be_visible()
    page.screenshot(path=str(artifacts / "project-page.png"), full_page=True)

    # The annotators table, sorted in the page by a click on a heading.
    page.goto(f"{base}/quality/")
    expect(page.get_by_role("heading", name="Annotators")).to_be_visible()
    expect(page.locator("#freshness")).to_contain_text("Up to date")
    names = page.locator("#annotators tbody tr td:first-child")
    expect(names).to_have_text(["alma", "bodo", "cleo"])
    median = page.get_by_role("columnheader", name="Median time")
    median.click()  # ascending: cleo 2.8 s, bodo 4.0 s, alma 3.5 s -> cleo, alma, bodo
    expect(names).to_have_text(["cleo", "alma", "bodo"])
    expect(median).to_have_attribute("aria-sort", "ascending")
    median.click()
    expect(names).to_have_text(["bodo", "alma", "cleo"])
    expect(page.locator("#annotators tr[data-annotator] svg.spark").first).to_be_visible()
    page.screenshot(path=str(artifacts / "review-annotators.png"), full_page=True)

    # One annotator's page.
    page.get_by_role("link", name="alma", exact=True).click()
    expect(page.get_by_role("heading", name="Annotator alma")).to_be_visible()
    expect(page.locator("#weeks")).to_contain_text("2026-W45")
    expect(page.locator("#co-raters")).to_contain_text("bodo")
    page.screenshot(path=str(artifacts / "review-annotator.png"), full_page=True)

    # Agreement.
    page.get_by_role("link", name="Agreement").click()
    expect(page.get_by_role("heading", name="Agreement", exact=True)).to_be_visible()
    expect(page.locator("#alpha tbody tr")).to_have_count(3)
    expect(page.locator("#matrix tbody tr")).to_have_count(3)
    expect(page.locator("#confused-core")).to_contain_text("scared")
    page.screenshot(path=str(artifacts / "review-agreement.png"), full_page=True)

    # The review queue: three clips; the failed-gold one is reviewed.
    page.get_by_role("link", name="Review", exact=True).click()
    expect(page.locator("#pending-count")).to_have_text("3 clips to review.")
    page.screenshot(path=str(artifacts / "review-queue.png"), full_page=True)
    clip = world.clips[7]
    row = page.locator(f'#queue tr[data-clip="{clip.pk}"]')
    expect(row).to_contain_text("failed gold")
    with page.expect_response(f"**/api/clips/{clip.pk}/audio/") as audio:
        row.get_by_role("link", name="Review").click()
    assert audio.value.status in (200, 206)
    expect(page.get_by_role("heading", name=f"Clip {clip.pk}")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#clip-audio').readyState >= 1")
    expect(page.locator("#labels tbody tr")).to_have_count(2)
    expect(page.locator("#gold-answer")).to_contain_text("Thrilled")
    page.get_by_label("Label").select_option("joyful.excited.thrilled")
    page.get_by_label("Note").fill("laughter, clearly thrilled")
    page.screenshot(path=str(artifacts / "review-clip.png"), full_page=True)
    page.get_by_role("button", name="Record adjudication").click()

    expect(page.locator("#done")).to_contain_text(f"clip {clip.pk} recorded")
    expect(page.locator("#pending-count")).to_have_text("2 clips to review.")
    expect(page.locator(f'#queue tr[data-clip="{clip.pk}"]')).to_have_count(0)
    assert current_adjudications(project) == {clip.pk: "joyful.excited.thrilled"}
    assert page.evaluate("window.__cspViolations") == []

    # The next dataset: an ML engineer creates it on the datasets page; the worker builds it.
    context = browser.new_context(**browser_context_args)
    try:
        built = engineer_builds_a_version(context, live_server, project, engineer, problems)
    finally:
        context.close()
    for ring, key in zip(
        RINGS, ("joyful", "joyful.excited", "joyful.excited.thrilled"), strict=True
    ):
        rows = {int(r["clip_id"]): r for r in csv.DictReader(io.StringIO(built[ring]))}
        assert clip.pk in rows, f"clip {clip.pk} is missing from labels_{ring}.csv"
        assert (rows[clip.pk]["label"], rows[clip.pk]["adjudicated"]) == (key, key), ring
        others = [r for pk, r in rows.items() if pk != clip.pk]
        assert others, f"labels_{ring}.csv has no other clip"
        assert all(r["adjudicated"] == "" for r in others), ring  # only that clip was decided
    assert problems == []


def engineer_builds_a_version(context, live_server, project, engineer, problems) -> dict:
    """In the engineer's own browser: create version 1 on the datasets page, wait for the
    worker to build it, and fetch labels_<ring>.csv (ring -> text) through the files API."""
    page = context.new_page()
    page.set_default_timeout(5000)
    watch(page, problems)
    log_in(page, live_server, engineer)
    page.goto(f"{live_server.url}/projects/{project.slug}/datasets/")
    expect(page.locator("#datasets")).to_have_attribute("data-state", "ready")
    page.get_by_role("button", name="Create version").click()
    row = page.locator('#versions tr[data-number="1"]')
    expect(row).to_have_attribute("data-status", "ready", timeout=90_000)
    assert DatasetVersion.objects.get(project=project, number=1).created_by == engineer
    expect(page.locator("#detail")).to_have_attribute("data-loaded", "true", timeout=10_000)
    files = page.locator("#files")
    texts = {}
    for ring in RINGS:
        name = f"labels_{ring}.csv"
        expect(files.get_by_role("link", name=name, exact=True)).to_be_visible()
        got = page.request.get(
            f"{live_server.url}/api/projects/{project.slug}/datasets/1/files/{name}"
        )
        assert got.status == 200, (name, got.status)
        texts[ring] = got.text()
    assert page.evaluate("window.__cspViolations") == []
    return texts
