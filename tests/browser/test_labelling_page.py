"""The labelling page in a real browser, against the real server, API and database."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from labelling.models import Annotation, Lease
from tests.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

expect.set_options(timeout=5000)


def wheel_path(*names: str) -> str:
    """How the page writes a node's path on the wheel ("Mad > Hurt", with a single guillemet)."""
    return " \u203a ".join(names)


def log_in(page: Page, live_server, user) -> None:
    # The live server's first request imports the URL conf (torch, crowd-kit): seconds on a
    # busy machine, past the 5 s budget of one navigation.
    page.goto(f"{live_server.url}/accounts/login/", timeout=30_000)
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("pw-" + user.username)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()


def open_labelling(page: Page, live_server, project) -> None:
    page.goto(f"{live_server.url}/projects/{project.slug}/label/")
    wait_playable(page)


def wait_playable(page: Page, not_clip: str | None = None) -> str:
    """Wait until a clip (other than `not_clip`) is on screen and playable; its id."""
    app = page.locator("#labeller")
    expect(app).to_have_attribute("data-state", "labelling")
    if not_clip is not None:
        expect(app).not_to_have_attribute("data-clip-id", not_clip)
    return app.get_attribute("data-clip-id")


def heard_to_end(page: Page) -> None:
    expect(page.locator("#listen")).to_have_attribute("data-heard", "true")


def current_annotation(clip_id: str, user) -> Annotation:
    return Annotation.objects.select_related("node").get(
        clip_id=int(clip_id), annotator=user, is_current=True
    )


def test_an_annotator_labels_skips_and_undoes_from_the_keyboard(
    page: Page, live_server, project, annotator, clips, artifacts
):
    log_in(page, live_server, annotator)
    open_labelling(page, live_server, project)

    # The clip starts by itself and its audio advances.
    first = wait_playable(page)
    page.wait_for_function("() => document.querySelector('#time').textContent !== '0.0 / 0.5 s'")
    heard_to_end(page)
    page.screenshot(path=str(artifacts / "labelling-page.png"))

    # Tertiary: Mad, Hurt, Jealous is 1, 1, 1, Enter.
    page.keyboard.press("1")
    expect(page.get_by_role("button", name="Hurt")).to_be_visible()
    page.keyboard.press("1")
    page.keyboard.press("1")
    expect(page.locator("#selection")).to_contain_text(wheel_path("Mad", "Hurt", "Jealous"))
    page.keyboard.press("q")  # intensity low
    page.keyboard.press("u")  # unsure
    page.keyboard.press("Enter")
    second = wait_playable(page, not_clip=first)

    # Core: Scared is 2, Enter - two keys. Submitted while the clip is still playing.
    expect(page.locator("#listen")).to_have_attribute("data-plays", "1")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    third = wait_playable(page, not_clip=second)

    # Skip with a reason: S, then the reason's number (3: noise).
    heard_to_end(page)
    page.keyboard.press("s")
    expect(page.locator("#skip-menu")).to_be_visible()
    page.keyboard.press("3")
    fourth = wait_playable(page, not_clip=third)

    # Undo brings the skipped clip back, revising; label it Joyful instead.
    page.keyboard.press("z")
    assert wait_playable(page, not_clip=fourth) == third
    expect(page.locator("#revising-badge")).to_contain_text("skipped")
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    # The clip that was on screen before the undo comes back.
    assert wait_playable(page, not_clip=third) == fourth
    expect(page.locator("#session-count")).to_have_text("3")
    # Submits travel in the background while the next clip is shown: wait for the revision
    # to be stored before reading it back.
    wait_until(
        lambda: Annotation.objects.filter(
            clip_id=int(third), annotator=annotator, is_current=True, node__isnull=False
        ).exists(),
        timeout=15,
        what="the revised label to reach the database",
    )

    a = current_annotation(first, annotator)
    assert (a.node.key, a.intensity, a.unsure, a.skip_reason) == (
        "mad.hurt.jealous",
        "low",
        True,
        "",
    )
    assert a.play_count == 1
    assert a.heard_to_end
    assert a.suggestion_shown is False
    assert a.time_spent_ms > 0
    b = current_annotation(second, annotator)
    assert b.node.key == "scared"
    assert b.play_count == 1
    c = current_annotation(third, annotator)
    assert c.node.key == "joyful"
    assert c.skip_reason == ""
    history = Annotation.objects.filter(clip_id=int(third), annotator=annotator).order_by("pk")
    assert [(h.skip_reason, h.is_current) for h in history] == [("noise", False), ("", True)]


def test_a_submit_lost_on_the_network_is_sent_again_with_the_same_client_id(
    page: Page, live_server, project, annotator, clips
):
    log_in(page, live_server, annotator)
    sent: list[dict] = []

    def flaky(route):
        sent.append(json.loads(route.request.post_data))
        if len(sent) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/projects/*/annotations/", flaky)
    open_labelling(page, live_server, project)
    first = wait_playable(page)
    # Chosen on the wheel this time: a click on the segment, then Enter.
    page.locator('.wheel-svg [data-key="mad.hurt.betrayed"] path').click()
    expect(page.locator("#selection")).to_contain_text(wheel_path("Mad", "Hurt", "Betrayed"))
    page.keyboard.press("Enter")
    wait_playable(page, not_clip=first)
    expect(page.locator("#session-count")).to_have_text("1")

    assert len(sent) == 2
    assert sent[0]["client_id"] == sent[1]["client_id"]
    assert current_annotation(first, annotator).node.key == "mad.hurt.betrayed"
    assert Annotation.objects.count() == 1


def test_a_stale_lease_is_reported_and_work_goes_on(
    page: Page, live_server, project, annotator, clips
):
    log_in(page, live_server, annotator)
    open_labelling(page, live_server, project)
    first = wait_playable(page)
    # Once the next clip is prefetched (two leases), the one on screen goes stale.
    wait_until(
        lambda: Lease.objects.filter(annotator=annotator, status="active").count() == 2,
        timeout=5,
        what="the prefetch",
    )
    Lease.objects.filter(clip_id=int(first)).update(status=Lease.Status.EXPIRED)

    page.keyboard.press("1")
    page.keyboard.press("Enter")

    expect(page.get_by_role("alert")).to_contain_text(f"Clip {first} was not saved")
    expect(page.get_by_role("alert")).to_contain_text("expired")
    wait_playable(page, not_clip=first)
    assert not Annotation.objects.exists()


def _with_suggestion(route):
    """Add a model suggestion to the server's answer (no model is trained in tests)."""
    response = route.fetch()
    if response.status != 200:
        route.fulfill(response=response)
        return
    body = response.json()
    body["suggestion"] = {
        "model_version": 3,
        "top": "sad.lonely",
        "probabilities": {"core": {"sad": 0.7, "mad": 0.2, "joyful": 0.1}, "fine": {}},
    }
    route.fulfill(response=response, json=body)


@pytest.mark.parametrize("assisted", [True, False], ids=["assisted", "blind"])
def test_the_suggestion_shows_only_in_assisted_mode_and_is_reported_truthfully(
    page: Page, live_server, project, annotator, clips, assisted, artifacts
):
    project.assisted = assisted
    project.dimensional_labels = True
    project.require_full_listen = True
    project.save()
    log_in(page, live_server, annotator)
    page.add_init_script("localStorage.setItem('emoloop:autoplay', '0')")
    page.route("**/api/projects/*/next/", _with_suggestion)
    open_labelling(page, live_server, project)
    first = wait_playable(page)

    card = page.locator("#suggestion-card")
    if assisted:
        expect(card).to_contain_text(wheel_path("Sad", "Lonely"))
    else:
        expect(card).to_be_hidden()

    # Full listening is required: the submit is refused until the clip was played through.
    page.keyboard.press("6")
    page.keyboard.press("Enter")
    expect(page.locator("#hint")).to_contain_text("hear the whole clip")
    page.keyboard.press(" ")
    heard_to_end(page)
    # Valence/arousal: V focuses the pad; arrows move the point from the centre.
    page.keyboard.press("v")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Shift+ArrowDown")
    expect(page.locator(".pad-readout")).to_have_text("V -0.10 · A -0.25")
    if assisted:
        page.screenshot(path=str(artifacts / "labelling-page-assisted.png"))
    page.keyboard.press("Enter")
    wait_playable(page, not_clip=first)
    expect(page.locator("#session-count")).to_have_text("1")  # saved (in the background)

    a = current_annotation(first, annotator)
    assert a.node.key == "sad"
    assert a.suggestion_shown is assisted
    assert a.heard_to_end
    assert a.play_count == 1
    assert (a.valence, a.arousal) == (-0.1, -0.25)


def test_the_controls_work_with_the_mouse(page: Page, live_server, project, annotator, clips):
    log_in(page, live_server, annotator)
    open_labelling(page, live_server, project)
    first = wait_playable(page)

    ring = page.locator("#ring")
    ring.locator('button[data-key="mad"]').click()
    ring.locator('button[data-key="mad.hurt"]').click()
    ring.locator('button[data-key="mad.hurt.jealous"]').click()
    page.locator("#btn-up").click()
    expect(page.locator("#selection")).to_contain_text(f"Chosen: {wheel_path('Mad', 'Hurt')}")
    medium = page.locator('#intensity button[data-intensity="medium"]')
    medium.click()
    expect(medium).to_have_attribute("aria-pressed", "true")
    page.locator("#btn-unsure").click()
    expect(page.locator("#btn-unsure")).to_have_attribute("aria-pressed", "true")
    page.locator("#btn-submit").click()
    second = wait_playable(page, not_clip=first)

    page.locator("#btn-skip").click()
    page.locator('#skip-menu button[data-reason="other_language"]').click()
    wait_playable(page, not_clip=second)
    expect(page.locator("#session-count")).to_have_text("2")

    wait_until(
        lambda: Annotation.objects.filter(annotator=annotator).count() == 2,
        timeout=15,
        what="both submits to reach the database",
    )
    a = current_annotation(first, annotator)
    assert (a.node.key, a.intensity, a.unsure) == ("mad.hurt", "medium", True)
    assert current_annotation(second, annotator).skip_reason == "other_language"


def test_the_player_choice_and_help_keys(page: Page, live_server, project, annotator, clips):
    log_in(page, live_server, annotator)
    open_labelling(page, live_server, project)
    wait_playable(page)
    expect(page.locator("#listen")).to_have_attribute("data-plays", "1")  # autoplay

    for key, speed in [(",", "0.75"), (".", "1"), (".", "1.25")]:
        page.keyboard.press(key)
        expect(page.locator("#speed")).to_have_text(f"{speed}\u00d7")  # times sign
    for key, zoom in [("=", "150 px/s"), ("+", "300 px/s"), ("-", "150 px/s")]:
        page.keyboard.press(key)
        expect(page.locator("#zoom")).to_have_text(zoom)
    page.keyboard.press("a")
    expect(page.locator("#autoplay")).not_to_be_checked()
    assert page.evaluate("localStorage.getItem('emoloop:autoplay')") == "0"
    heard_to_end(page)  # a replay while playing is the same listening
    page.keyboard.press("r")
    expect(page.locator("#listen")).to_have_attribute("data-plays", "2")
    page.keyboard.press("[")
    expect(page.locator("#hint")).to_have_text("There is no utterance before this one.")

    selection = page.locator("#selection")
    page.keyboard.press("1")
    page.keyboard.press("1")
    page.keyboard.press("Backspace")
    expect(selection).to_have_text("Chosen: Mad (core). Enter submits it.")
    page.keyboard.press("Escape")
    expect(selection).to_contain_text("Nothing chosen yet")

    high = page.locator('#intensity button[data-intensity="high"]')
    page.keyboard.press("e")
    expect(high).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("e")
    expect(high).to_have_attribute("aria-pressed", "false")

    page.keyboard.press("s")
    expect(page.locator("#skip-menu")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#skip-menu")).to_be_hidden()
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_hidden()
    assert not Annotation.objects.exists()
