"""Imported labels kept apart from the project's own annotators (issue 10, "Interop in"):
a corpus label takes no queue slot and plays no part in agreement routing; annotators never
read corpus labels through the API; the project page counts the project's own labels; the
learner's snapshot and label count include corpus labels (they are labels)."""

from __future__ import annotations

import uuid

import pytest

from labelling.models import Annotation, LabelSource, QueueEntry, TaxonomyNode
from labelling.services import loop, queue
from labelling.services.interop.corpus import annotate
from labelling.services.interop.raters import rater
from tests.conftest import make_user
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


def _corpus_label(clip, key: str, who: str = "corpus:emodb") -> None:
    node = TaxonomyNode.objects.get(version_id=clip.project.taxonomy_version_id, key=key)
    annotate(clip, rater(who), node.pk)


def _label(project, user, key: str) -> None:
    leased = queue.next_clip(project, user)
    assert leased is not None
    queue.submit(project, user, lease_id=leased.lease.id, client_id=uuid.uuid4(), node_key=key)


def test_a_corpus_label_takes_no_slot_and_does_not_route_on_disagreement(project):
    project.agreement_routing = True
    project.max_annotators_per_clip = 4
    project.save()
    clip = ClipFactory(project=project)
    queue.enqueue_clips(project, [clip], seed=1)
    _corpus_label(clip, "sad")
    _corpus_label(clip, "joyful", who="corpus:other")
    users = [make_user(f"u{i}") for i in range(3)]
    for user in users:
        project.memberships.create(user=user, role="annotator")

    _label(project, users[0], "mad")
    entry = QueueEntry.objects.get(clip=clip)
    assert (entry.target, entry.open_slots) == (2, 1)  # the corpus labels took no slot
    _label(project, users[1], "mad")
    entry.refresh_from_db()
    # Both annotators agree: no routing, although the corpus labels disagree with them.
    assert (entry.target, entry.open_slots) == (2, 0)
    assert queue.next_clip(project, users[2]) is None
    queue.retarget(project, old_overlap=2)
    entry.refresh_from_db()
    assert entry.open_slots == 0


def test_an_annotator_never_reads_corpus_labels_and_a_reviewer_sees_their_source(
    project, client_for, annotator, reviewer
):
    clip = ClipFactory(project=project)
    _corpus_label(clip, "sad")
    corpus = Annotation.objects.get(label_source=LabelSource.CORPUS)
    api = client_for(annotator)
    assert api.get("/api/annotations/").json()["count"] == 0
    assert api.get(f"/api/annotations/{corpus.pk}/").status_code == 403
    assert client_for(reviewer).get("/api/annotations/").json()["count"] == 1


def test_the_project_page_counts_only_the_projects_own_labels(project, client, reviewer):
    clips = [ClipFactory(project=project) for _ in range(2)]
    _corpus_label(clips[0], "sad")
    client.force_login(reviewer)
    page = client.get(f"/projects/{project.slug}/")
    assert page.status_code == 200
    assert page.context["labelled"] == 0
    sad = next(n for n in _flatten(page.context["tree"]) if n["node"].key == "sad")
    assert sad["node"].uses == 0


def _flatten(tree):
    for item in tree:
        yield item
        yield from _flatten(item.get("children", []))


def test_the_learner_snapshot_and_label_count_include_corpus_labels(project, annotator):
    clip, other = ClipFactory(project=project), ClipFactory(project=project)
    queue.enqueue_clips(project, [other], seed=1)
    _corpus_label(clip, "sad")
    _label(project, annotator, "mad")
    snapshot = loop.label_snapshot(project)
    assert sorted(label.node_key for label in snapshot.labels) == ["mad", "sad"]
    assert loop.count_labels(project) == 2
