"""Rescoring the pool with the active model and refilling the queue (in-process)."""

from __future__ import annotations

import pytest

from labelling.models import QueueEntry
from labelling.services import queue
from learner.models import ClipScore, LearnerSettings, Ranking, TrainingRun
from learner.services import rescoring, training

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

SPEAKERS = ["03", "08", "09", "10", "11", "13"]  # in the whole corpus and the demo subset


@pytest.fixture
def active_project(project, annotator, kit):
    """A project on the active-learning policy: 6 speakers, half labelled, a trained model."""
    project.queue_policy = "active"
    project.annotators_per_clip = 1
    project.save()
    clips = kit.clips(project, SPEAKERS, per_emotion=4)
    kit.cache(clips)
    kit.label(clips[::2], annotator)
    for clip in clips[::2]:
        queue.recount_clip(clip)
    kit.fast(project, query_batch_size=8)
    run, _ = training.open_run(project, trigger=TrainingRun.Trigger.COMMAND)
    assert training.run_training(run.pk).status == TrainingRun.Status.SUCCEEDED
    return project


def _run_ranking(project) -> Ranking:
    plan = rescoring.start(project)
    for chunk in plan.chunks:
        rescoring.score_chunk(plan.ranking.pk, chunk)
    rescoring.finish(plan.ranking.pk)
    return Ranking.objects.get(pk=plan.ranking.pk)


def test_the_pool_is_scored_and_the_batch_heads_the_queue(active_project, second_annotator):
    ranking = _run_ranking(active_project)

    assert ranking.status == Ranking.Status.COMPLETE
    assert ranking.model_version.is_active
    open_ids = set(
        QueueEntry.objects.filter(project=active_project, open_slots__gt=0).values_list(
            "clip_id", flat=True)
    )  # fmt: skip
    scored = set(ClipScore.objects.filter(ranking=ranking).values_list("clip_id", flat=True))
    assert scored == open_ids, "every clip still wanting labels is scored, nothing else"
    batch = list(
        ClipScore.objects.filter(ranking=ranking, selected=True).values_list("clip_id", flat=True)
    )
    assert len(batch) == 8
    served = []
    for _ in range(8):
        leased = queue.next_clip(active_project, second_annotator)
        served.append(leased.clip.pk)
        reason = QueueEntry.objects.get(clip_id=leased.clip.pk).reason
        assert (
            reason["strategy"] == LearnerSettings.objects.get(project=active_project).query_strategy
        )
        assert reason["batch"] is True
        assert reason["model_version"] == ranking.model_version.number
        queue.submit(active_project, second_annotator, lease_id=leased.lease.id,
                     client_id=__import__("uuid").uuid4(), node_key="mad")  # fmt: skip
    assert set(served) == set(batch)
    ranks = [QueueEntry.objects.get(clip_id=cid).reason["rank"] for cid in served]
    assert ranks == sorted(ranks), "served in pick order"


def test_rescoring_again_is_idempotent(active_project):
    plan = rescoring.start(active_project)
    for chunk in plan.chunks:
        rescoring.score_chunk(plan.ranking.pk, chunk)
        rescoring.score_chunk(plan.ranking.pk, chunk)  # a redelivered chunk
    first = rescoring.finish(plan.ranking.pk)
    again = rescoring.finish(plan.ranking.pk)  # a redelivered callback

    assert (first, again) == (8, 0)
    assert ClipScore.objects.filter(ranking=plan.ranking).count() == plan.ranking.pool_size


def test_a_project_on_another_policy_keeps_its_order(active_project):
    active_project.queue_policy = "stratified"
    active_project.save()
    before = dict(QueueEntry.objects.values_list("clip_id", "priority"))

    ranking = _run_ranking(active_project)

    assert ranking.status == Ranking.Status.COMPLETE
    assert dict(QueueEntry.objects.values_list("clip_id", "priority")) == before


def test_a_newer_ranking_supersedes_the_older_one(active_project):
    old = _run_ranking(active_project)
    new = _run_ranking(active_project)

    old.refresh_from_db()
    assert (old.status, new.status) == (Ranking.Status.SUPERSEDED, Ranking.Status.COMPLETE)
    assert not ClipScore.objects.filter(ranking=old, selected=False).exists()


def test_cold_start_ranks_by_coverage_without_a_model(project, annotator, kit):
    project.queue_policy = "active"
    project.save()
    clips = kit.clips(project, SPEAKERS[:3], per_emotion=3)
    kit.cache(clips)
    kit.fast(project, query_batch_size=6)

    ranking = _run_ranking(project)

    assert ranking.model_version is None
    assert ranking.strategy == "coverage"
    assert ranking.selected == 6
