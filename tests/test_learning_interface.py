"""labelling's public interface to the learner (labelling.services.loop): the pool is the
queue's own definition of "still wants labels", the snapshot maps old labels onto the active
wheel, and a ranking orders the queue only on the active-learning policy."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from labelling.models import Annotation, QueueEntry
from labelling.services import loop, queue, taxonomy
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def clips(project):
    made = ClipFactory.create_batch(6, project=project)
    queue.enqueue_clips(project, made, seed=1)
    return made


def _label(project, user, node_key: str = "", skip_reason: str = ""):
    leased = queue.next_clip(project, user)
    assert leased is not None
    queue.submit(
        project,
        user,
        lease_id=leased.lease.pk,
        client_id=uuid.uuid4(),
        node_key=node_key,
        skip_reason=skip_reason,
    )
    return leased.clip


def test_the_pool_is_what_the_queue_still_wants_labelled(project, clips, annotator):
    project.annotators_per_clip = 1
    project.save()
    queue.retarget(project, old_overlap=2)
    queue.mark_gold(clips[0], "mad")
    labelled = _label(project, annotator, node_key="joyful")

    pool = loop.unlabelled_pool(project)

    wanted = list(queue.wanting_labels(project).values_list("clip_id", flat=True))
    assert pool == sorted(wanted)
    assert clips[0].pk not in pool  # gold
    assert labelled.pk not in pool  # its one slot is taken
    assert len(pool) == 4


def test_the_snapshot_maps_old_labels_and_leaves_out_dropped_feelings(project, clips, annotator):
    _label(project, annotator, node_key="mad.angry")
    _label(project, annotator, node_key="sad.bored")
    _label(project, annotator, skip_reason="noise")
    old = project.taxonomy_version
    document = taxonomy.parse_document(taxonomy.export_version(old))
    mapping = {key: key for key in old.nodes.values_list("key", flat=True)}
    mapping["mad.angry"] = None  # dropped in the new version
    new = taxonomy.create_next_version(old, document, mapping)
    taxonomy.assign_to_project(project, new)
    project.refresh_from_db()

    snapshot = loop.label_snapshot(project)

    keys = [label.node_key for label in snapshot.labels]
    assert keys == ["sad.bored", None]  # the angry label is gone, the skip stays
    assert snapshot.labelled_count == 1
    assert snapshot.taxonomy_version_id == new.pk
    bored = Annotation.objects.get(node__key="sad.bored")
    assert bored.node.version_id == old.pk  # labelled on the old wheel, mapped to the new
    assert snapshot.labels[0].as_row() == [
        bored.pk, bored.clip_id, annotator.pk, "sad.bored", "", False
    ]  # fmt: skip
    assert len(loop.SNAPSHOT_COLUMNS) == len(snapshot.labels[0].as_row())


def test_taxonomy_nodes_come_ring_by_ring_with_their_parents(project):
    nodes = loop.taxonomy_nodes(project)

    assert [n.level for n in nodes] == sorted(n.level for n in nodes)
    keys = {n.key for n in nodes}
    assert all(n.parent_key in keys for n in nodes if n.level > 0)
    assert all(n.parent_key is None for n in nodes if n.level == 0)
    assert len(nodes) == project.taxonomy_version.nodes.count()


def test_labels_are_counted_since_a_moment_and_skips_do_not_count(project, clips, annotator):
    before = timezone.now() - timedelta(seconds=1)
    _label(project, annotator, node_key="joyful")
    _label(project, annotator, node_key="mad")
    _label(project, annotator, skip_reason="noise")

    assert loop.count_labels(project) == 2
    assert loop.count_labels(project, since=before) == 2
    assert loop.count_labels(project, since=timezone.now()) == 0
    assert loop.count_labels(project, limit=1) == 1


@pytest.mark.parametrize(("policy", "applied"), [("active", True), ("random", False)])
def test_a_ranking_orders_the_queue_only_on_the_active_learning_policy(
    project, clips, policy, applied
):
    project.queue_policy = policy
    project.save()
    before = dict(QueueEntry.objects.values_list("clip_id", "priority"))
    ids = [c.pk for c in clips]

    updated = loop.apply_ranking(project, ids, [float(-i) for i in range(len(ids))])

    after = dict(QueueEntry.objects.values_list("clip_id", "priority"))
    if applied:
        assert updated == len(ids)
        assert after == {cid: float(-i) for i, cid in enumerate(ids)}
    else:
        assert updated == 0
        assert after == before
