"""The whole loop with a real Celery worker on Redis and PostgreSQL: ingest, label a seed set
through the queue, train, rescore (a chord of chunk tasks), the queue serves the top-ranked
clips, more labels, retrain, rescore again."""

from __future__ import annotations

import uuid

import pytest

from labelling.models import Clip, QueueEntry
from labelling.services import queue
from learner.models import ModelVersion, Ranking, TrainingRun
from tests.conftest import wait_until

pytestmark = [pytest.mark.celery, pytest.mark.slow]
SPEAKERS = ["03", "08", "09", "10", "11", "13"]  # in the whole corpus and the demo subset
NODES = {"anger": "mad.angry", "disgust": "mad.critical", "fear": "scared",
         "happiness": "joyful.excited", "boredom": "sad.bored", "sadness": "sad.depressed",
         "neutral": "peaceful.content"}  # fmt: skip


def _label_through_queue(project, user, n: int) -> list[int]:
    """The oracle annotator: pulls clips from the queue and labels them with the corpus'
    emotion, as a person would through the page."""
    done = []
    for _ in range(n):
        leased = queue.next_clip(project, user)
        if leased is None:
            break
        emotion = Clip.objects.get(pk=leased.clip.pk).metadata["emotion"]
        queue.submit(project, user, lease_id=leased.lease.id, client_id=uuid.uuid4(),
                     node_key=NODES[emotion])  # fmt: skip
        done.append(leased.clip.pk)
    return done


def _train(client) -> int:
    response = client.post("/api/projects/callcentre/training-runs")
    assert response.status_code == 202, response.content
    run_id = response.json()["run"]["id"]
    wait_until(
        lambda: TrainingRun.objects.get(pk=run_id).status not in TrainingRun.OPEN,
        timeout=240, what="the worker to train",
    )  # fmt: skip
    run = TrainingRun.objects.get(pk=run_id)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.reason
    return run_id


def _ranking_for(version: ModelVersion) -> Ranking:
    wait_until(
        lambda: Ranking.objects.filter(model_version=version, status="complete").exists(),
        timeout=180, what="the rescoring chord to finish",
    )  # fmt: skip
    return Ranking.objects.get(model_version=version)


def test_label_train_rescore_serve_label_retrain(
    worker, project, annotator, second_annotator, engineer, client_for, kit
):
    project.queue_policy = "active"
    project.annotators_per_clip = 1
    project.save()
    clips = kit.clips(project, SPEAKERS, per_emotion=4)
    # About 160 clips from the whole corpus, 41 from the demo subset: seed with half of
    # them (at most 40), take batches of a sixth (at most 10), and leave some in the pool.
    seed_size = min(40, len(clips) // 2)
    batch_size = min(10, len(clips) // 6)
    more = min(20, len(clips) - seed_size - batch_size - 1)
    kit.cache(clips)
    kit.fast(project, query_batch_size=batch_size)

    seed = _label_through_queue(project, annotator, seed_size)
    assert len(seed) == seed_size
    _train(client_for(engineer))
    first = ModelVersion.objects.get(project=project, is_active=True)
    ranking = _ranking_for(first)

    assert ranking.chunks_total >= 1
    assert ranking.selected == batch_size
    batch = set(ranking.scores.filter(selected=True).values_list("clip_id", flat=True))
    served = _label_through_queue(project, second_annotator, batch_size)
    assert set(served) == batch, "the queue serves the top-ranked clips first"
    reason = QueueEntry.objects.get(clip_id=served[0]).reason
    assert (reason["ranking"], reason["model_version"], reason["rank"]) == (ranking.pk, 1, 0)

    assert len(_label_through_queue(project, annotator, more)) == more
    _train(client_for(engineer))
    second = ModelVersion.objects.get(project=project, is_active=True)
    assert second.number == 2
    newer = _ranking_for(second)
    ranking.refresh_from_db()
    assert ranking.status == Ranking.Status.SUPERSEDED
    assert newer.pool_size < ranking.pool_size, "labelled clips left the pool"
