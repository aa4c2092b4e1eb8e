"""Recording annotations: validation, replacement with history."""

from __future__ import annotations

import pytest

from labelling.models import Annotation
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


def test_a_label_at_any_ring_and_a_skip_are_recorded(client_for, project, annotator):
    clip, other = ClipFactory(project=project), ClipFactory(project=project)
    api = client_for(annotator)

    core = api.post(
        "/api/annotations/",
        {"clip": clip.pk, "node": "mad", "intensity": "high", "time_spent_ms": 3200},
    )
    skip = api.post("/api/annotations/", {"clip": other.pk, "skip_reason": "noise"})

    assert core.status_code == 201, core.content
    assert core.json()["node"] == "mad"
    assert skip.status_code == 201
    assert Annotation.objects.get(clip=other).skip_reason == "noise"


def test_a_new_judgement_replaces_the_old_one_and_keeps_history(client_for, project, annotator):
    clip = ClipFactory(project=project)
    api = client_for(annotator)
    tertiary = next(
        key for key in project.taxonomy_version.nodes.filter(level=2).values_list("key", flat=True)
    )

    api.post("/api/annotations/", {"clip": clip.pk, "node": "mad"})
    api.post("/api/annotations/", {"clip": clip.pk, "node": tertiary, "unsure": True})

    history = list(Annotation.objects.filter(clip=clip).order_by("pk"))
    assert [(a.node.key, a.is_current) for a in history] == [("mad", False), (tertiary, True)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"node": "not-a-feeling"}, "not a feeling"),
        ({"node": "mad", "skip_reason": "noise"}, "exactly one"),
        ({}, "exactly one"),
        ({"skip_reason": "bored"}, "not a valid choice"),
        ({"node": "mad", "intensity": "extreme"}, "not a valid choice"),
    ],
)
def test_invalid_annotations_are_refused_and_change_nothing(
    client_for, project, annotator, body, message
):
    clip = ClipFactory(project=project)

    response = client_for(annotator).post("/api/annotations/", {"clip": clip.pk, **body})

    assert response.status_code == 400
    assert message in str(response.json())
    assert not Annotation.objects.exists()


def test_a_node_of_another_taxonomy_is_refused(client_for, project, annotator):
    from labelling.services import taxonomy

    taxonomy.install_preset("plutchik")
    clip = ClipFactory(project=project)

    response = client_for(annotator).post("/api/annotations/", {"clip": clip.pk, "node": "joy"})

    assert response.status_code == 400
    assert not Annotation.objects.exists()
