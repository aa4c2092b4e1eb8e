"""The dataset versions page in a real browser: an ML engineer creates a version, the real
Celery worker builds it while the page shows its progress, then the page shows the files and
the datasheet and downloads the zip, all under the site's Content-Security-Policy."""

from __future__ import annotations

import json
import urllib.request
import uuid
import zipfile
from typing import cast

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Page, expect

from exports.models import DatasetVersion
from labelling.models import Clip
from labelling.services import queue
from tests.factories import ClipFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.celery,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

# What the page's progress line said at any moment (a build of four clips can take less
# than a poll), and every Content-Security-Policy violation, kept for the test to read.
WATCH_PAGE = """
window.__stages = [];
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
new MutationObserver(() => {
  for (const stage of document.querySelectorAll(".ds-stage")) {
    if (!window.__stages.includes(stage.textContent)) window.__stages.push(stage.textContent);
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def log_in(page: Page, live_server, user) -> None:
    """A session for the user, as the login page would have made (the page is not under test).

    First one plain request: the live server imports the URL conf on its first request
    (with exports' crowd-kit and the learner's torch, about 9 s on a busy machine), which
    is past the page fixture's 5 s budget for one navigation.
    """
    with urllib.request.urlopen(f"{live_server.url}/healthz", timeout=60) as response:  # noqa: S310
        assert response.status == 200
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


@pytest.fixture
def labelled(worker, project, annotator, second_annotator):
    """Four clips of four speakers, each labelled by two annotators. Made after `worker`, so
    their audio lies in the media folder the worker reads."""
    return label_clips(project, [annotator, second_annotator], speakers=range(4))


def label_clips(project, annotators, *, speakers) -> list[Clip]:
    clips = [cast(Clip, ClipFactory(project=project, speaker_id=f"s{n}")) for n in speakers]
    queue.enqueue_clips(project, clips, seed=1)
    for user, key in zip(annotators, ("mad.angry", "sad"), strict=True):
        while (leased := queue.next_clip(project, user)) is not None:
            queue.submit(project, user, lease_id=leased.lease.pk, client_id=uuid.uuid4(),
                         node_key=key)  # fmt: skip
    return clips


def test_an_engineer_creates_watches_opens_and_downloads_a_version(
    page: Page,
    live_server,
    project,
    engineer,
    annotator,
    second_annotator,
    labelled,
    artifacts,
    tmp_path,
):
    problems: list[str] = []
    polls: list[dict] = []

    def on_console(message) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    def on_response(response) -> None:
        if response.status >= 400:
            problems.append(f"{response.status}: {response.url}")
        if response.url.endswith("/datasets/1/") and response.request.method == "GET":
            polls.append(response.json())

    page.on("console", on_console)
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
    page.on("response", on_response)
    page.add_init_script(WATCH_PAGE)
    log_in(page, live_server, engineer)

    # From the project page, by its link.
    page.goto(f"{live_server.url}/projects/{project.slug}/")
    page.get_by_role("link", name="Dataset versions").click()
    expect(page.get_by_role("heading", name="Dataset versions")).to_be_visible()
    expect(page.locator("#datasets")).to_have_attribute("data-state", "ready")
    expect(page.locator("#versions-empty")).to_be_visible()

    page.get_by_label("Split seed").fill("7")
    page.get_by_role("button", name="Create version").click()
    row = page.locator('#versions tr[data-number="1"]')
    expect(row).to_be_visible()
    # The real worker builds it; the page polls until it is ready (the build takes a few
    # seconds on the first task a worker runs).
    expect(row).to_have_attribute("data-status", "ready", timeout=60_000)
    version = DatasetVersion.objects.get(project=project, number=1)
    assert version.status == "ready"
    assert version.split_seed == 7
    assert version.created_by == engineer
    expect(row).to_contain_text("emil")
    # The clips column reads the ready version's progress total (the build's own count).
    expect(row.locator("td").nth(4)).to_have_text("4")
    expect(row.locator("code")).to_have_text(version.manifest_sha256[:12])

    # The page showed the build's progress and polled the detail until it was ready.
    stages = page.evaluate("window.__stages")
    assert stages, "no progress line was ever shown"
    assert polls, "the page never polled the version's detail"
    assert polls[-1]["status"] == "ready"

    # The version opens by itself once built: files, datasheet, plots when there are any.
    detail = page.locator("#detail")
    expect(detail).to_have_attribute("data-loaded", "true", timeout=10_000)
    expect(page.locator("#detail-heading")).to_have_text("Version 1")
    files = page.locator("#files")
    for name in ("SHA256SUMS", "clips.csv", "datasheet.json", "version.json"):
        expect(files.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(page.locator("#datasheet-tables")).to_contain_text("Composition")
    expect(page.locator("#datasheet-tables table").first).to_be_visible()
    # The composition's clip count, in the first row headed exactly "Clips".
    clips = page.locator("#datasheet-tables tr").filter(
        has=page.get_by_role("rowheader", name="Clips", exact=True)
    )
    expect(clips.first.locator("td")).to_have_text("4")
    listed = page.evaluate("[...document.querySelectorAll('#files a')].map(a => a.textContent)")
    plots = [name for name in listed if name.startswith("plots/") and name.endswith(".png")]
    if plots:
        images = page.locator("#plots img")
        expect(images).to_have_count(len(plots))
        page.wait_for_function(
            "() => [...document.querySelectorAll('#plots img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
    else:
        expect(page.locator("#plots")).to_be_hidden()
    page.screenshot(path=str(artifacts / "datasets-page.png"), full_page=True)

    # Download the zip: the native layout is the default; another format is asked by name.
    zip_url = f"/api/projects/{project.slug}/datasets/1/download.zip"
    page.get_by_label("Format").select_option("hf")
    expect(page.locator("#download")).to_have_attribute(
        "href", f"/api/projects/{project.slug}/datasets/1/download/hf.zip"
    )
    page.get_by_label("Format").select_option("native")
    expect(page.locator("#download")).to_have_attribute("href", zip_url)
    with page.expect_download() as download:
        page.locator("#download").click()
    saved = tmp_path / "version.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert "SHA256SUMS" in names
        sums = archive.read("SHA256SUMS").decode()
    assert sorted(line.split("  ", 1)[1] for line in sums.splitlines()) == sorted(
        n for n in names if n != "SHA256SUMS"
    )

    # A second version with one more speaker opens by itself; compared with the first, the
    # diff API says one clip was added and no old speaker moved split.
    label_clips(project, [annotator, second_annotator], speakers=[4])
    page.get_by_role("button", name="Create version").click()
    second = page.locator('#versions tr[data-number="2"]')
    expect(second).to_have_attribute("data-status", "ready", timeout=60_000)
    expect(page.locator("#detail-heading")).to_have_text("Version 2")
    expect(detail).to_have_attribute("data-loaded", "true", timeout=10_000)
    page.get_by_label("Compare with").select_option("1")
    diff = page.locator("#diff")
    expect(diff).to_contain_text("From v1 to v2")
    summary = page.locator("#diff-summary")
    expect(summary.locator("tr", has_text="Clips added").locator("td")).to_have_text("1")
    expect(summary.locator("tr", has_text="Clips removed").locator("td")).to_have_text("0")
    expect(summary.locator("tr", has_text="Split moves").locator("td")).to_have_text("0")
    diff.get_by_text("Clips added (1)").click()
    expect(diff.locator("details[open]")).to_be_visible()
    page.screenshot(path=str(artifacts / "datasets-diff.png"), full_page=True)

    assert json.loads(page.evaluate("JSON.stringify(window.__cspViolations)")) == []
    assert not problems, "\n".join(problems)


def test_the_page_follows_a_build_until_it_fails_and_shows_why(
    page: Page, live_server, project, engineer
):
    """Polling without a worker: the test moves the row on as a build would, and the page
    follows it (the bar, its stage and counts) until the version fails and shows why."""
    version = DatasetVersion.objects.create(
        project=project,
        number=1,
        status=DatasetVersion.Status.BUILDING,
        progress={"stage": "clips", "done": 2, "total": 4},
        created_by=engineer,
        created_at=timezone.now(),
    )
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.url.endswith("/datasets/1/") else None)
    log_in(page, live_server, engineer)
    page.goto(f"{live_server.url}/projects/{project.slug}/datasets/")

    row = page.locator('#versions tr[data-number="1"]')
    expect(row).to_have_attribute("data-status", "building")
    expect(row.locator(".ds-stage")).to_have_text("clips: 2 / 4")
    expect(row.locator("progress")).to_have_attribute("value", "2")
    expect(row.get_by_role("button", name="Open")).to_be_hidden()

    DatasetVersion.objects.filter(pk=version.pk).update(
        progress={"stage": "splits", "done": 3, "total": 4}
    )
    expect(row.locator(".ds-stage")).to_have_text("splits: 3 / 4")
    DatasetVersion.objects.filter(pk=version.pk).update(
        status=DatasetVersion.Status.FAILED, error="<b>disk full</b>"
    )
    expect(row).to_have_attribute("data-status", "failed")
    # The error is text, never markup.
    expect(row.locator(".ds-error")).to_have_text("<b>disk full</b>")
    expect(row.locator("progress")).to_have_count(0)
    expect(page.locator("#detail")).to_be_hidden()
    assert polls, "the page never polled the building version"
