"""20 annotators pulling and submitting at once over one project with overlap 2 (PostgreSQL)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
from django.db import connection, connections

from labelling.models import Annotation, Lease, Membership, QueueEntry
from labelling.services import queue
from tests.conftest import make_user
from tests.factories import ClipFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ANNOTATORS = 20
CLIPS = 60


def test_every_clip_ends_with_exactly_k_annotations_from_distinct_annotators(project):
    assert connection.vendor == "postgresql", "this test is about PostgreSQL's row locking"
    clips = [ClipFactory(project=project) for _ in range(CLIPS)]
    queue.enqueue_clips(project, clips, seed=0)
    users = [make_user(f"t{i:02d}") for i in range(ANNOTATORS)]
    Membership.objects.bulk_create(
        Membership(user=user, project=project, role="annotator") for user in users
    )
    start = threading.Barrier(ANNOTATORS)
    errors: list[BaseException] = []
    submitted = Counter()

    def annotate(user) -> None:
        try:
            start.wait()
            while True:
                leased = queue.next_clip(project, user)
                if leased is None:
                    return
                queue.submit(
                    project, user, lease_id=leased.lease.id, client_id=uuid.uuid4(), node_key="mad"
                )
                submitted[user.pk] += 1
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=annotate, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors[:3]
    per_clip = Counter(Annotation.objects.values_list("clip_id", flat=True))
    assert per_clip == {clip.pk: 2 for clip in clips}, "exactly k annotations on every clip"
    pairs = Annotation.objects.values_list("clip_id", "annotator_id")
    assert len(set(pairs)) == len(pairs) == 2 * CLIPS, "from distinct annotators, none doubled"
    assert sum(submitted.values()) == 2 * CLIPS, "none lost"
    assert not QueueEntry.objects.filter(open_slots__gt=0).exists()
    assert not Lease.objects.filter(status="active").exists()
    assert len(submitted) > 1, "the work was shared between threads"
