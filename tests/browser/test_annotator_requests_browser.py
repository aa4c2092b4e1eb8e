"""The labelling page makes one API request per label: the submit's answer carries the next
clip's lease (`next: true`), so the page never asks next on its own while clips remain."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from labelling.models import Annotation, Lease
from tests.browser.test_labelling_page import log_in, open_labelling, wait_playable
from tests.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

expect.set_options(timeout=5000)


def test_each_label_is_one_request(page: Page, live_server, project, annotator, clips):
    log_in(page, live_server, annotator)
    calls: list[tuple[str, str]] = []

    def record(request) -> None:
        if "/api/projects/" in request.url and request.method == "POST":
            calls.append((request.url.rsplit("/", 2)[-2], request.post_data or ""))

    page.on("request", record)
    open_labelling(page, live_server, project)
    shown = [wait_playable(page)]
    # The page starts with the clip on screen and one prepared behind it: two leases.
    wait_until(
        lambda: Lease.objects.filter(annotator=annotator, status="active").count() == 2,
        timeout=5,
        what="the first prefetch",
    )
    assert [name for name, _ in calls] == ["next", "next"]
    calls.clear()

    labels = 4
    for _ in range(labels):
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        shown.append(wait_playable(page, not_clip=shown[-1]))
    # The last submit's answer (and the clip it brought) has arrived.
    wait_until(
        lambda: (
            Annotation.objects.filter(annotator=annotator).count() == labels
            and Lease.objects.filter(annotator=annotator, status="active").count() == 2
        ),
        timeout=20,
        what="the last submit and its lease",
    )

    assert [name for name, _ in calls] == ["annotations"] * labels
    assert all(json.loads(body)["next"] is True for _, body in calls)
    assert len(set(shown)) == labels + 1
    # Every clip shown was labelled once, and the server holds exactly the two leases the
    # page holds: the clip on screen and the prepared one.
    labelled = set(Annotation.objects.filter(annotator=annotator).values_list("clip_id", flat=True))
    assert labelled == {int(clip) for clip in shown[:labels]}


def test_the_page_finishes_the_queue_with_one_request_per_label(
    page: Page, live_server, project, annotator, clips
):
    log_in(page, live_server, annotator)
    calls: list[str] = []
    page.on(
        "request",
        lambda r: calls.append(r.url.rsplit("/", 2)[-2]) if "/api/projects/" in r.url else None,
    )
    open_labelling(page, live_server, project)
    shown = wait_playable(page)
    for _ in range(len(clips)):
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        page.wait_for_function(
            """(previous) => {
                const app = document.querySelector('#labeller');
                return app.dataset.state === 'done'
                    || (app.dataset.state === 'labelling' && app.dataset.clipId !== previous);
            }""",
            arg=shown,
        )
        shown = page.locator("#labeller").get_attribute("data-clip-id")
    expect(page.locator("#done")).to_be_visible()
    assert Annotation.objects.filter(annotator=annotator).count() == len(clips)
    # Two leases to start, one submit per clip, and at most one last next that finds the
    # queue empty.
    assert calls.count("annotations") == len(clips)
    assert calls.count("next") <= 3
