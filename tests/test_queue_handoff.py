"""Submit and lease the next clip in one request (`"next": true`): the annotator's round
trip, idempotent as a pair by client_id, with every guarantee of the two-request flow.

Also run on SQLite by tests/test_queue_sqlite.py (the ORM lease path).
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from labelling.models import Annotation, GoldResult, Lease, QueueEntry, TaxonomyNode, WeakLabel
from labelling.services import queue
from tests.conftest import make_user
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


def _clips(project, n, **extra):
    clips = [ClipFactory(project=project, **extra) for _ in range(n)]
    queue.enqueue_clips(project, clips, seed=1)
    return clips


def _next(api, project):
    return api.post(f"/api/projects/{project.slug}/next/")


def _submit(api, project, lease_id, client_id=None, **body):
    payload = {"lease": lease_id, "client_id": str(client_id or uuid.uuid4()), **body}
    return api.post(f"/api/projects/{project.slug}/annotations/", payload, format="json")


def _active(user):
    return set(Lease.objects.filter(annotator=user, status="active").values_list("id", flat=True))


def test_submit_with_next_records_the_label_and_leases_the_next_clip(
    client_for, project, annotator
):
    clips = _clips(project, 3)
    api = client_for(annotator)
    first = _next(api, project).json()

    response = _submit(api, project, first["lease"]["id"], node="mad", next=True)

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"annotation", "next"}
    assert body["annotation"]["node"] == "mad"
    following = body["next"]
    # The same shape as next's own answer, for a clip not seen before, under a live lease.
    assert set(following) == set(first) == {"clip", "lease", "suggestion", "revising"}
    assert set(following["clip"]) == set(first["clip"])
    assert following["clip"]["id"] in {c.pk for c in clips} - {first["clip"]["id"]}
    assert _active(annotator) == {uuid.UUID(following["lease"]["id"])}
    assert Annotation.objects.get().node.key == "mad"
    # That lease takes the next label as any other.
    assert _submit(api, project, following["lease"]["id"], node="sad").status_code == 201


def test_the_two_request_flow_is_unchanged(client_for, project, annotator):
    _clips(project, 2)
    api = client_for(annotator)
    leased = _next(api, project).json()
    response = _submit(api, project, leased["lease"]["id"], node="mad")
    assert response.status_code == 201
    assert set(response.json()) == {"annotation"}
    assert _active(annotator) == set()


def test_a_retried_submit_returns_the_same_annotation_and_the_same_lease(
    client_for, project, annotator
):
    _clips(project, 4)
    api = client_for(annotator)
    leased = _next(api, project).json()
    client_id = uuid.uuid4()

    first = _submit(api, project, leased["lease"]["id"], client_id, node="mad", next=True)
    again = _submit(api, project, leased["lease"]["id"], client_id, node="sad", next=True)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["annotation"] == first.json()["annotation"]
    assert again.json()["annotation"]["node"] == "mad"
    assert again.json()["next"]["lease"] == first.json()["next"]["lease"]
    assert again.json()["next"]["clip"] == first.json()["next"]["clip"]
    assert Annotation.objects.count() == 1
    # One lease handed out, not two: the retry took no slot.
    assert _active(annotator) == {uuid.UUID(first.json()["next"]["lease"]["id"])}
    assert sum(QueueEntry.objects.values_list("open_slots", flat=True)) == 4 * 2 - 2


@pytest.mark.parametrize("spent", ["expired", "submitted"])
def test_a_late_retry_does_not_hand_back_a_lease_that_can_no_longer_be_used(
    client_for, project, annotator, spent
):
    _clips(project, 4)
    api = client_for(annotator)
    leased = _next(api, project).json()
    client_id = uuid.uuid4()
    first = _submit(api, project, leased["lease"]["id"], client_id, node="mad", next=True)
    handed = first.json()["next"]["lease"]["id"]
    if spent == "expired":
        Lease.objects.filter(pk=handed).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        assert _submit(api, project, handed, node="sad").status_code == 201

    again = _submit(api, project, leased["lease"]["id"], client_id, node="mad", next=True)

    assert again.status_code == 200
    assert again.json()["annotation"] == first.json()["annotation"]
    # Not the spent lease, and no second lease either: the page asks next for a clip.
    assert again.json()["next"] is None
    assert Lease.objects.filter(annotator=annotator).count() == 2


def test_a_retry_that_first_went_without_next_leases_once(client_for, project, annotator):
    _clips(project, 3)
    api = client_for(annotator)
    leased = _next(api, project).json()
    client_id = uuid.uuid4()
    assert _submit(api, project, leased["lease"]["id"], client_id, node="mad").status_code == 201

    retries = [
        _submit(api, project, leased["lease"]["id"], client_id, node="mad", next=True)
        for _ in range(2)
    ]

    assert [r.status_code for r in retries] == [200, 200]
    assert retries[0].json()["next"]["lease"] == retries[1].json()["next"]["lease"]
    assert len(_active(annotator)) == 1


def test_a_lease_id_is_taken_once_and_a_refused_one_takes_no_slot(project, annotator):
    _clips(project, 3)
    lease_id = queue.handoff_lease_id(uuid.uuid4())
    assert queue.next_clip(project, annotator, lease_id=lease_id).lease.id == lease_id
    slots = sum(QueueEntry.objects.values_list("open_slots", flat=True))

    with pytest.raises(IntegrityError), transaction.atomic():
        queue.next_clip(project, annotator, lease_id=lease_id)

    assert sum(QueueEntry.objects.values_list("open_slots", flat=True)) == slots
    assert Lease.objects.filter(annotator=annotator).count() == 1


def test_a_refused_submit_leases_nothing(client_for, project, annotator):
    _clips(project, 3)
    api = client_for(annotator)
    leased = _next(api, project).json()
    Lease.objects.filter(pk=leased["lease"]["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = _submit(api, project, leased["lease"]["id"], node="mad", next=True)
    assert response.status_code == 409
    assert response.json()["code"] == "lease_expired"
    assert "next" not in response.json()
    assert Lease.objects.filter(annotator=annotator).count() == 1
    invalid = _next(api, project).json()
    response = _submit(api, project, invalid["lease"]["id"], node="not-a-feeling", next=True)
    assert response.status_code == 400
    assert Lease.objects.filter(annotator=annotator).count() == 2


def test_nothing_left_or_paused_answers_next_null(client_for, project, annotator):
    _clips(project, 1)
    api = client_for(annotator)
    leased = _next(api, project).json()
    response = _submit(api, project, leased["lease"]["id"], node="mad", next=True)
    assert response.status_code == 201
    assert response.json()["next"] is None

    _clips(project, 1)
    project.is_active = False
    project.save()
    assert _next(api, project).status_code == 204


def test_overlap_holds_when_every_annotator_uses_one_request(client_for, project):
    clips = _clips(project, 3)
    users = [make_user(f"h{i}") for i in range(4)]
    for user in users:
        project.memberships.create(user=user, role="annotator")
    for user in users:
        api = client_for(user)
        first = _next(api, project)
        ticket = first.json() if first.status_code == 200 else None
        while ticket is not None:
            answer = _submit(api, project, ticket["lease"]["id"], node="mad", next=True)
            assert answer.status_code == 201
            ticket = answer.json()["next"]
    for clip in clips:
        labels = Annotation.objects.filter(clip=clip, is_current=True)
        assert labels.count() == 2
        assert labels.values("annotator").distinct().count() == 2
    assert not Lease.objects.filter(status="active").exists()


def test_a_skip_gives_the_slot_back_before_the_next_lease(client_for, project, annotator):
    (clip,) = _clips(project, 1)
    api = client_for(annotator)
    leased = _next(api, project).json()
    response = _submit(api, project, leased["lease"]["id"], skip_reason="noise", next=True)
    assert response.status_code == 201
    # Skipped clips are not offered again to the annotator who skipped them.
    assert response.json()["next"] is None
    assert QueueEntry.objects.get(clip=clip).open_slots == 2


def test_undo_after_a_one_request_submit_brings_the_clip_back(client_for, project, annotator):
    _clips(project, 3)
    api = client_for(annotator)
    leased = _next(api, project).json()
    body = _submit(api, project, leased["lease"]["id"], node="mad", next=True).json()

    undone = api.post(f"/api/projects/{project.slug}/undo/").json()

    assert undone["clip"]["id"] == leased["clip"]["id"]
    assert undone["revising"] == {"node": "mad", "skip_reason": ""}
    revised = _submit(api, project, undone["lease"]["id"], node="sad", next=True)
    assert revised.status_code == 201
    current = Annotation.objects.get(clip_id=leased["clip"]["id"], is_current=True)
    assert current.node.key == "sad"
    # The clip handed out with the first submit is still held; the revision's answer is a
    # further clip (two active leases, the limit).
    following = revised.json()["next"]
    assert following["clip"]["id"] not in {leased["clip"]["id"], body["next"]["clip"]["id"]}
    assert _active(annotator) == {
        uuid.UUID(body["next"]["lease"]["id"]),
        uuid.UUID(following["lease"]["id"]),
    }


def test_blind_mode_and_gold_clips_show_no_model_or_corpus_answer(
    client_for, project, annotator, reviewer
):
    regular = _clips(project, 3)
    (gold_clip,) = _clips(project, 1)
    assert (
        client_for(reviewer).post(f"/api/clips/{gold_clip.pk}/gold/", {"node": "sad"}).status_code
        == 201
    )
    mad = TaxonomyNode.objects.get(version=project.taxonomy_version, key="mad")
    for clip in [*regular, gold_clip]:
        WeakLabel.objects.create(
            clip=clip, model_name="acme-weak-model", model_version="1",
            taxonomy_version=project.taxonomy_version, probabilities={"mad": 0.9, "sad": 0.1},
            top_node=mad, top_probability=0.9, source_file="acme.csv",
        )  # fmt: skip
    project.gold_rate = 1.0  # the gold clip comes first (then the regular ones)
    project.save()
    api = client_for(annotator)

    seen, texts = [], []
    answer = _next(api, project).json()
    while answer is not None:
        ticket = answer.get("next", answer) if "annotation" in answer else answer
        if ticket is None:
            break
        seen.append(ticket["clip"]["id"])
        texts.append(json.dumps(ticket))
        assert ticket["suggestion"] is None
        answer = _submit(api, project, ticket["lease"]["id"], node="mad", next=True).json()
        texts.append(json.dumps(answer["annotation"]))

    assert gold_clip.pk in seen
    assert GoldResult.objects.count() == 1
    assert not any("acme" in text or "0.9" in text for text in texts)

    # Assisted mode shows the weak label on a regular clip only.
    project.assisted = True
    project.save()
    other = make_user("assisted")
    project.memberships.create(user=other, role="annotator")
    api = client_for(other)
    ticket = _next(api, project).json()
    while ticket is not None:
        is_gold = ticket["clip"]["id"] == gold_clip.pk
        assert (ticket["suggestion"] is None) == is_gold
        ticket = _submit(api, project, ticket["lease"]["id"], node="mad", next=True).json()["next"]
