"""Adjudication: recorded beside the annotators' labels (never over them), a later one
supersedes the earlier with history kept, `current_adjudications` is what the dataset
exporter reads, and the page's form does the same as the API."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEvent
from labelling.models import Annotation
from labelling.services import taxonomy
from review.models import Adjudication
from review.services.adjudication import current_adjudications
from tests.review_world import World, build

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(project) -> World:
    return build(project)


@pytest.fixture
def api(reviewer) -> APIClient:
    client = APIClient()
    client.force_authenticate(reviewer)
    return client


def labels_of(world: World) -> list[tuple]:
    return list(
        Annotation.objects.filter(clip__project=world.project)
        .order_by("pk")
        .values_list("pk", "annotator_id", "node_id", "is_current", "skip_reason")
    )


def test_the_reviewer_sees_every_label_side_by_side(world, api):
    clip = world.clips[4]
    body = api.get(f"/api/projects/callcentre/review/clips/{clip.pk}/").json()
    assert body["audio"] == f"/api/clips/{clip.pk}/audio/"
    assert body["gold"] == "Sad \u203a Guilty \u203a Remorseful"
    got = [(row["annotator"], row["key"], row["unsure"], row["gold"]) for row in body["labels"]]
    assert sorted(got) == [
        ("alma", "sad.guilty.remorseful", False, True),
        ("bodo", "sad.guilty", False, True),
        ("cleo", "sad.guilty.regretful", False, True),
    ]
    seven = api.get(f"/api/projects/callcentre/review/clips/{world.clips[7].pk}/").json()
    assert sorted((row["annotator"], row["gold"]) for row in seven["labels"]) == [
        ("bodo", True),  # joyful vs joyful.excited.thrilled: the core matches
        ("cleo", False),  # scared.confused
    ]
    plain = api.get(f"/api/projects/callcentre/review/clips/{world.clips[2].pk}/").json()
    assert plain["gold"] == ""
    assert {row["gold"] for row in plain["labels"]} == {None}
    assert api.get(body["audio"]).status_code == 200  # reviewers hear any clip of theirs


def test_adjudicating_keeps_the_labels_and_a_later_decision_supersedes(
    world, api, reviewer, django_assert_num_queries
):
    before = labels_of(world)
    clip = world.clips[2]
    url = f"/api/projects/callcentre/review/clips/{clip.pk}/"
    first = api.post(url, {"node": "scared.rejected", "note": "fearful voice"})
    assert first.status_code == 201
    assert first.json()["node"] == "scared.rejected"
    second = api.post(url, {"node": "mad.angry", "note": "listened again"})
    assert second.status_code == 201
    assert labels_of(world) == before  # the annotators' labels are untouched
    history = list(Adjudication.objects.filter(clip=clip).order_by("pk"))
    assert [(a.node.key, a.is_current, a.reviewer_id) for a in history] == [
        ("scared.rejected", False, reviewer.pk),
        ("mad.angry", True, reviewer.pk),
    ]
    with django_assert_num_queries(1):
        assert current_adjudications(world.project) == {clip.pk: "mad.angry"}
    events = list(AuditEvent.objects.filter(action="review.adjudicated").order_by("pk"))
    assert [(e.actor, e.project, e.target_id) for e in events] == [
        (reviewer, world.project, str(history[0].pk)),
        (reviewer, world.project, str(history[1].pk)),
    ]
    assert events[1].details == {
        "clip": clip.pk,
        "node": "mad.angry",
        "note": "listened again",
        "supersedes": [{"id": history[0].pk, "node": "scared.rejected"}],
    }
    body = api.get(url).json()
    assert [(a["node"], a["is_current"]) for a in body["adjudications"]] == [
        ("mad.angry", True),
        ("scared.rejected", False),
    ]
    listed = api.get("/api/projects/callcentre/review/adjudications/").json()
    assert [(a["clip"], a["node"], a["note"]) for a in listed["results"]] == [
        (clip.pk, "mad.angry", "listened again")
    ]
    queue = api.get("/api/projects/callcentre/review/").json()
    assert clip.pk not in [r["clip"] for r in queue["results"]]


def test_only_a_feeling_of_the_active_version_is_accepted(world, api):
    url = f"/api/projects/callcentre/review/clips/{world.clips[2].pk}/"
    assert api.post(url, {"node": "no.such"}).status_code == 400
    assert api.post(url, {"node": "mad", "note": "x" * 2001}).status_code == 400
    plutchik = taxonomy.install_preset("plutchik")
    other_key = plutchik.nodes.exclude(key__in=["mad", "sad"]).first().key
    refused = api.post(url, {"node": other_key})
    assert refused.status_code == 400
    assert "active taxonomy version" in str(refused.json())
    assert not Adjudication.objects.exists()


def test_the_page_form_records_and_the_clip_leaves_the_queue(world, reviewer):
    browser = Client()
    browser.force_login(reviewer)
    clip = world.clips[7]
    page = browser.get(f"/projects/callcentre/review/clips/{clip.pk}/").content.decode()
    assert f'src="/api/clips/{clip.pk}/audio/"' in page
    assert "Joyful \u203a Excited \u203a Thrilled" in page  # the gold answer
    assert 'value="joyful.excited.thrilled"' in page
    response = browser.post(
        f"/projects/callcentre/review/clips/{clip.pk}/",
        {"node": "joyful.excited", "note": "laughing"},
    )
    assert response.status_code == 302
    assert response["Location"] == f"/projects/callcentre/review/?done={clip.pk}"
    queue = browser.get(response["Location"]).content.decode()
    assert f'data-clip="{clip.pk}"' not in queue
    assert "2 clips to review" in queue
    assert current_adjudications(world.project) == {clip.pk: "joyful.excited"}
    bad = browser.post(f"/projects/callcentre/review/clips/{clip.pk}/", {"node": "nope"})
    assert bad.status_code == 400
    assert "not a feeling" in bad.content.decode()
