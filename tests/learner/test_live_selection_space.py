"""The live loop selects through the simulator's path: the model's input space, and the
clips already labelled passed to the diversity step (learner.ranking.space)."""

from __future__ import annotations

import numpy as np
import pytest

from labelling.services import queue
from learner.models import ModelVersion, TrainingRun
from learner.ranking import space
from learner.services import predict, rescoring, training

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_the_live_batch_is_chosen_knowing_the_labelled_clips(project, annotator, kit, monkeypatch):
    project.queue_policy = "active"
    project.annotators_per_clip = 1
    project.save()
    clips = kit.clips(project, ["03", "08", "09", "10"], per_emotion=3)
    kit.cache(clips)
    labelled = clips[::2]
    kit.label(labelled, annotator)
    for clip in labelled:
        queue.recount_clip(clip)
    kit.fast(project, query_batch_size=5)
    run, _ = training.open_run(project, trigger=TrainingRun.Trigger.COMMAND)
    assert training.run_training(run.pk).status == TrainingRun.Status.SUCCEEDED
    version = ModelVersion.objects.get(project=project, is_active=True)
    seen: list[dict] = []
    real = space.selection_pool

    def spy(**kwargs):
        seen.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(space, "selection_pool", spy)
    plan = rescoring.start(project)
    for chunk in plan.chunks:
        rescoring.score_chunk(plan.ranking.pk, chunk)
    assert rescoring.finish(plan.ranking.pk) == 5

    (call,) = seen
    assert call["normaliser"] is predict.load_predictor(version).normaliser
    assert len(call["labelled_x"]) == len(labelled)
    assert sorted(call["labelled_speakers"]) == sorted(c.speaker_id for c in labelled)
    pool = real(**call)
    assert pool.labelled_embeddings is not None
    np.testing.assert_allclose(
        pool.labelled_embeddings,
        call["normaliser"].transform(call["labelled_x"], call["labelled_speakers"]),
        rtol=1e-5,
    )
