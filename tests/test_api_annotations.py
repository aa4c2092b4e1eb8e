"""Recording annotations: only through the queue, validated, replaced with history."""

from __future__ import annotations

import uuid

import pytest

from labelling.models import Annotation, QueueEntry
from labelling.services import queue
from tests.factories import ClipFactory as _ClipFactory

pytestmark = pytest.mark.django_db


def ClipFactory(**fields):
    """A clip in the project's queue (the factory alone does not enqueue)."""
    clip = _ClipFactory(**fields)
    queue.enqueue_clips(clip.project, [clip])
    return clip


def _lease(api, project) -> dict:
    response = api.post(f"/api/projects/{project.slug}/next/")
    assert response.status_code == 200, response.content
    return response.json()


def _submit(api, project, leased, **body):
    payload = {"lease": leased["lease"]["id"], "client_id": str(uuid.uuid4()), **body}
    return api.post(f"/api/projects/{project.slug}/annotations/", payload, format="json")


def test_a_label_at_any_ring_and_a_skip_are_recorded(client_for, project, annotator):
    ClipFactory(project=project), ClipFactory(project=project)
    api = client_for(annotator)

    first, second = _lease(api, project), _lease(api, project)
    core = _submit(api, project, first, node="mad", intensity="high", time_spent_ms=3200)
    skip = _submit(api, project, second, skip_reason="noise")

    assert core.status_code == 201, core.content
    assert core.json()["annotation"]["node"] == "mad"
    assert skip.status_code == 201
    assert Annotation.objects.get(clip_id=second["clip"]["id"]).skip_reason == "noise"
    mine = api.get("/api/annotations/").json()
    assert {row["node"] for row in mine["results"]} == {"mad", None}


def test_a_new_judgement_replaces_the_old_one_and_keeps_history(client_for, project, annotator):
    ClipFactory(project=project)
    api = client_for(annotator)
    tertiary = next(
        key for key in project.taxonomy_version.nodes.filter(level=2).values_list("key", flat=True)
    )

    leased = _lease(api, project)
    _submit(api, project, leased, node="mad")
    revised = api.post(f"/api/projects/{project.slug}/undo/").json()
    _submit(api, project, revised, node=tertiary, unsure=True)

    history = list(Annotation.objects.filter(clip_id=leased["clip"]["id"]).order_by("pk"))
    assert [(a.node.key, a.is_current) for a in history] == [("mad", False), (tertiary, True)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"node": "not-a-feeling"}, "not a feeling"),
        ({"node": "mad", "skip_reason": "noise"}, "exactly one"),
        ({}, "exactly one"),
        ({"skip_reason": "bored"}, "not a valid choice"),
        ({"node": "mad", "intensity": "extreme"}, "not a valid choice"),
        ({"node": "mad", "annotator": "someone-else"}, "Unknown field"),
    ],
)
def test_invalid_annotations_are_refused_and_change_nothing(
    client_for, project, annotator, body, message
):
    ClipFactory(project=project)
    api = client_for(annotator)
    leased = _lease(api, project)

    response = _submit(api, project, leased, **body)

    assert response.status_code == 400
    payload = response.json()
    assert payload["code"] == "invalid"
    assert payload["detail"]
    assert message in str(payload)
    assert not Annotation.objects.exists()


def test_a_node_of_another_taxonomy_is_refused(client_for, project, annotator):
    from labelling.services import taxonomy

    taxonomy.install_preset("plutchik")
    ClipFactory(project=project)
    api = client_for(annotator)

    response = _submit(api, project, _lease(api, project), node="joy")

    assert response.status_code == 400
    assert not Annotation.objects.exists()


def test_labels_cannot_be_written_outside_the_queue(client_for, project, annotator, reviewer):
    """The plain annotations API is read-only: no label without a lease, beyond the
    overlap, or on a gold clip, whoever asks."""
    clip = ClipFactory(project=project)
    QueueEntry.objects.filter(clip=clip).update(target=2, open_slots=2)

    for user in (annotator, reviewer):
        response = client_for(user).post(
            "/api/annotations/", {"clip": clip.pk, "node": "mad"}, format="json"
        )
        assert response.status_code == 405, response.content
        assert response.json()["code"] == "method_not_allowed"
    assert not Annotation.objects.exists()
    assert QueueEntry.objects.get(clip=clip).open_slots == 2
