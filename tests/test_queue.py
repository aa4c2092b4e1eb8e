"""The labelling queue: leases, overlap, submit, undo, gold clips, routing, ordering."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from labelling.models import Annotation, GoldResult, Lease, QueueEntry
from labelling.queue_api import leased_payload
from labelling.services import queue
from labelling.services.queue import lease
from tests.conftest import make_user
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


def _clips(project, n, **extra):
    clips = [ClipFactory(project=project, **extra) for _ in range(n)]
    queue.enqueue_clips(project, clips, seed=1)
    return clips


def _submit(api, project, leased, **body):
    payload = {"lease": leased["lease"]["id"], "client_id": str(uuid.uuid4()), **body}
    return api.post(f"/api/projects/{project.slug}/annotations/", payload, format="json")


def test_next_then_submit_records_the_label_and_fills_the_slot(client_for, project, annotator):
    (clip,) = _clips(project, 1)
    api = client_for(annotator)

    leased = api.post(f"/api/projects/{project.slug}/next/").json()
    response = _submit(
        api,
        project,
        leased,
        node="mad",
        intensity="high",
        play_count=2,
        heard_to_end=True,
        time_spent_ms=2100,
    )

    assert leased["clip"]["id"] == clip.pk
    assert leased["clip"]["audio_url"] == f"/api/clips/{clip.pk}/audio/"
    assert leased["suggestion"] is None
    assert response.status_code == 201, response.content
    annotation = Annotation.objects.get()
    assert (annotation.node.key, annotation.play_count, annotation.heard_to_end) == ("mad", 2, True)
    entry = QueueEntry.objects.get(clip=clip)
    assert (entry.target, entry.open_slots) == (2, 1)
    # The same annotator never gets the clip again; a second annotator does.
    assert api.post(f"/api/projects/{project.slug}/next/").status_code == 204


def test_a_clip_goes_to_k_distinct_annotators_and_no_more(client_for, project):
    (clip,) = _clips(project, 1)
    users = [make_user(f"u{i}") for i in range(4)]
    for user in users:
        project.memberships.create(user=user, role="annotator")
    got = []
    for user in users:
        response = client_for(user).post(f"/api/projects/{project.slug}/next/")
        got.append(response.status_code)
    assert got == [200, 200, 204, 204]
    assert QueueEntry.objects.get(clip=clip).open_slots == 0


def test_a_retried_submit_records_one_annotation(client_for, project, annotator):
    _clips(project, 2)
    api = client_for(annotator)
    leased = api.post(f"/api/projects/{project.slug}/next/").json()
    body = {"lease": leased["lease"]["id"], "client_id": str(uuid.uuid4()), "node": "sad"}

    first = api.post(f"/api/projects/{project.slug}/annotations/", body, format="json")
    again = api.post(f"/api/projects/{project.slug}/annotations/", body, format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["annotation"]["id"] == again.json()["annotation"]["id"]
    assert Annotation.objects.count() == 1


def test_stale_used_and_foreign_leases_are_refused_clearly(
    client_for, project, annotator, second_annotator
):
    _clips(project, 2)
    api = client_for(annotator)
    leased = api.post(f"/api/projects/{project.slug}/next/").json()

    foreign = _submit(client_for(second_annotator), project, leased, node="mad")
    assert (foreign.status_code, foreign.json()["code"]) == (409, "lease_foreign")

    assert _submit(api, project, leased, node="mad").status_code == 201
    used = _submit(api, project, leased, node="sad")
    assert (used.status_code, used.json()["code"]) == (409, "lease_used")

    other = api.post(f"/api/projects/{project.slug}/next/").json()
    Lease.objects.filter(pk=other["lease"]["id"]).update(expires_at=timezone.now() - timedelta(1))
    stale = _submit(api, project, other, node="mad")
    assert (stale.status_code, stale.json()["code"]) == (409, "lease_expired")
    assert Annotation.objects.count() == 1


def test_an_abandoned_lease_expires_and_the_clip_goes_back(client_for, project, monkeypatch):
    # Read where the lease uses it (the package does not re-export it): no throttling.
    monkeypatch.setattr(lease, "RECLAIM_EVERY_S", 0.0)
    project.annotators_per_clip = 1
    project.save()
    (clip,) = _clips(project, 1)
    first, second = make_user("f1"), make_user("f2")
    for user in (first, second):
        project.memberships.create(user=user, role="annotator")

    assert client_for(first).post(f"/api/projects/{project.slug}/next/").status_code == 200
    assert client_for(second).post(f"/api/projects/{project.slug}/next/").status_code == 204
    Lease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = client_for(second).post(f"/api/projects/{project.slug}/next/")

    assert response.status_code == 200
    assert response.json()["clip"]["id"] == clip.pk
    assert Lease.objects.get(annotator=first).status == "expired"


def test_the_periodic_task_reclaims_leases_of_idle_projects(project, annotator):
    from labelling.tasks import reclaim_expired_leases

    (clip,) = _clips(project, 1)
    queue.next_clip(project, annotator)
    Lease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert reclaim_expired_leases() == 1
    assert QueueEntry.objects.get(clip=clip).open_slots == 2


def test_an_invalid_label_is_refused_and_keeps_the_lease(client_for, project, annotator):
    _clips(project, 1)
    api = client_for(annotator)
    leased = api.post(f"/api/projects/{project.slug}/next/").json()

    bad = _submit(api, project, leased, node="plutchik-joy")
    good = _submit(api, project, leased, node="joyful")

    assert bad.status_code == 400
    assert good.status_code == 201


def test_undo_leases_the_last_clip_back_and_a_resubmit_replaces_the_label(
    client_for, project, annotator
):
    _clips(project, 3)
    api = client_for(annotator)
    leased = api.post(f"/api/projects/{project.slug}/next/").json()
    _submit(api, project, leased, node="mad")

    undone = api.post(f"/api/projects/{project.slug}/undo/").json()
    assert undone["clip"]["id"] == leased["clip"]["id"]
    assert undone["revising"] == {"node": "mad", "skip_reason": ""}
    assert _submit(api, project, undone, node="scared").status_code == 201

    history = Annotation.objects.filter(clip_id=leased["clip"]["id"]).order_by("pk")
    assert [(a.node.key, a.is_current) for a in history] == [("mad", False), ("scared", True)]
    entry = QueueEntry.objects.get(clip_id=leased["clip"]["id"])
    assert entry.open_slots == 1, "a revision takes no second slot"
    assert (
        api.post(f"/api/projects/{project.slug}/undo/").json()["clip"]["id"] == leased["clip"]["id"]
    )


def test_a_skip_frees_the_slot_for_someone_else(client_for, project, annotator):
    (clip,) = _clips(project, 1)
    api = client_for(annotator)
    leased = api.post(f"/api/projects/{project.slug}/next/").json()

    assert _submit(api, project, leased, skip_reason="noise").status_code == 201

    assert QueueEntry.objects.get(clip=clip).open_slots == 2
    assert api.post(f"/api/projects/{project.slug}/next/").status_code == 204


def test_an_annotator_holds_at_most_two_leases(client_for, project, annotator):
    _clips(project, 5)
    api = client_for(annotator)
    ids = [api.post(f"/api/projects/{project.slug}/next/").json()["clip"]["id"] for _ in range(3)]
    assert ids[2] == ids[0], "a third ask hands back the oldest lease (page reload)"
    assert Lease.objects.filter(status="active").count() == 2


def test_gold_clips_are_interleaved_scored_and_indistinguishable(
    client_for, project, annotator, reviewer
):
    regular = _clips(project, 3)
    (gold_clip,) = _clips(project, 1)
    assert (
        client_for(reviewer)
        .post(f"/api/clips/{gold_clip.pk}/gold/", {"node": "mad.hurt"})
        .status_code
        == 201
    )
    assert (
        client_for(annotator).post(f"/api/clips/{gold_clip.pk}/gold/", {"node": "mad"}).status_code
        == 403
    )
    project.gold_rate = 0.5
    project.save()
    project.refresh_from_db()

    served, payload_keys = [], set()
    rng = random.Random(3)
    for _ in range(4):
        leased = queue.next_clip(project, annotator, rng=rng)
        if leased is None:
            break
        served.append(leased.clip.pk)
        payload = leased_payload(project, leased)
        payload_keys.add((tuple(sorted(payload)), tuple(sorted(payload["clip"]))))
        queue.submit(
            project, annotator, lease_id=leased.lease.id, client_id=uuid.uuid4(), node_key="mad"
        )
    assert gold_clip.pk in served
    assert set(served) <= {gold_clip.pk, *(c.pk for c in regular)}
    result = GoldResult.objects.get()
    assert (result.correct_core, result.correct_exact) == (True, False)
    # A gold clip's payload has exactly the shape of any other.
    assert len(payload_keys) == 1


def test_disagreement_routes_the_clip_to_more_annotators(project):
    project.agreement_routing = True
    project.max_annotators_per_clip = 3
    project.save()
    (clip,) = _clips(project, 1)
    users = [make_user(f"r{i}") for i in range(4)]
    for user in users:
        project.memberships.create(user=user, role="annotator")

    for user, label in zip(users[:2], ["mad", "joyful"], strict=True):
        leased = queue.next_clip(project, user)
        queue.submit(
            project, user, lease_id=leased.lease.id, client_id=uuid.uuid4(), node_key=label
        )

    entry = QueueEntry.objects.get(clip=clip)
    assert (entry.target, entry.open_slots) == (3, 1)
    leased = queue.next_clip(project, users[2])
    queue.submit(
        project, users[2], lease_id=leased.lease.id, client_id=uuid.uuid4(), node_key="mad.hurt"
    )
    entry.refresh_from_db()
    assert (entry.target, entry.open_slots) == (3, 0), "the maximum caps the routing"
    assert queue.next_clip(project, users[3]) is None


def test_stratified_order_covers_every_speaker_first(project, annotator):
    clips = []
    for speaker in ("a", "b", "c"):
        clips += [ClipFactory(project=project, speaker_id=speaker) for _ in range(4)]
    queue.enqueue_clips(project, clips, seed=7)

    first_three = []
    for _ in range(3):
        leased = queue.next_clip(project, annotator)
        first_three.append(leased.clip.speaker_id)
        queue.submit(
            project, annotator, lease_id=leased.lease.id, client_id=uuid.uuid4(), node_key="mad"
        )
    assert sorted(first_three) == ["a", "b", "c"]


def test_a_paused_project_hands_out_nothing(client_for, project, annotator):
    _clips(project, 2)
    project.is_active = False
    project.save()
    assert client_for(annotator).post(f"/api/projects/{project.slug}/next/").status_code == 204


def test_outsiders_cannot_use_the_queue(client_for, project, outsider):
    _clips(project, 1)
    api = client_for(outsider)
    assert api.post(f"/api/projects/{project.slug}/next/").status_code == 404
    assert api.post(f"/api/projects/{project.slug}/undo/").status_code == 404


def test_next_and_submit_use_a_bounded_number_of_queries(
    client_for, project, annotator, django_assert_max_num_queries
):
    _clips(project, 5)
    api = client_for(annotator)
    with django_assert_max_num_queries(14):
        leased = api.post(f"/api/projects/{project.slug}/next/").json()
    with django_assert_max_num_queries(22):
        assert _submit(api, project, leased, node="mad").status_code == 201


def test_ingested_clips_join_the_queue(project, tmp_path):
    import numpy as np
    import soundfile

    from labelling.services import ingest

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        soundfile.write(folder / f"{i}.wav", np.full(8000, 0.01 * (i + 1), dtype=np.float32), 16000)
    batch = ingest.stage_folder(project, folder)
    for item_id in ingest.pending_item_ids(batch):
        ingest.process_item(item_id)

    assert QueueEntry.objects.filter(project=project).count() == 3
    assert all(e.open_slots == 2 for e in QueueEntry.objects.all())


def test_a_new_ranking_reorders_the_queue_in_one_swap(project, annotator):
    clips = _clips(project, 6)
    ranked = [clips[4].pk, clips[1].pk]
    unranked = dict(
        QueueEntry.objects.exclude(clip_id__in=ranked).values_list("clip_id", "priority")
    )

    updated = queue.apply_priorities(
        project, ranked, [-2.0, -1.0],
        [{"strategy": "margin", "score": 0.9}, {"strategy": "margin", "score": 0.5}],
    )  # fmt: skip

    assert updated == 2
    served = []
    for _ in range(3):
        leased = queue.next_clip(project, annotator)
        served.append(leased.clip.pk)
        queue.submit(project, annotator, lease_id=leased.lease.id, client_id=uuid.uuid4(),
                     node_key="mad")  # fmt: skip
    assert served[:2] == ranked
    assert QueueEntry.objects.get(clip=clips[4]).reason == {"strategy": "margin", "score": 0.9}
    assert (
        dict(QueueEntry.objects.exclude(clip_id__in=ranked).values_list("clip_id", "priority"))
        == unranked
    ), "the clips the ranking does not name keep their place"


def test_a_ranking_longer_than_one_statement_is_applied_whole(project, monkeypatch):
    clips = _clips(project, 5)
    # Room for two rows a statement (three parameters each, and the project's id).
    monkeypatch.setattr(connection.features, "max_query_params", 7)
    ids = [clip.pk for clip in clips]

    updated = queue.apply_priorities(project, ids, [5.0, 4.0, 3.0, 2.0, 1.0])

    assert updated == 5
    order = QueueEntry.objects.order_by("priority").values_list("clip_id", "reason")
    assert list(order) == [(clip_id, {}) for clip_id in reversed(ids)]
