"""With a real Celery worker: feature backfill, training, activation, prediction, and a
worker process killed mid-training."""

from __future__ import annotations

import os
import signal

import pytest

from labelling.models import Clip
from learner import tasks
from learner.models import EPOCHS_MAX, ClipFeatures, ModelVersion, TrainingRun
from tests.conftest import wait_until

pytestmark = [pytest.mark.celery, pytest.mark.slow]
Status = TrainingRun.Status
# In the whole corpus and in the demo subset; speaker 13 (in both) is never trained on.
SPEAKERS = ["03", "08", "09", "10", "11"]
UNSEEN = "13a01Wb.wav"


def _run(pk: int) -> TrainingRun:
    return TrainingRun.objects.get(pk=pk)


def _start(client) -> int:
    response = client.post("/api/projects/callcentre/training-runs")
    assert response.status_code == 202, response.content
    return response.json()["run"]["id"]


def _finished(pk: int) -> bool:
    return _run(pk).status not in TrainingRun.OPEN


def test_the_worker_backfills_features_trains_activates_and_the_model_predicts(
    worker, project, annotator, reviewer, engineer, client_for, kit, emodb
):
    clips = kit.clips(project, SPEAKERS, per_emotion=3)
    kit.label(clips, annotator)
    kit.fast(project)

    tasks.backfill_features.delay()
    wait_until(
        lambda: ClipFeatures.objects.count() == len(clips),
        timeout=120,
        what="the worker to compute every clip's features",
    )
    run_id = _start(client_for(engineer))
    wait_until(lambda: _finished(run_id), timeout=180, what="the worker to train")

    run = _run(run_id)
    assert run.status == Status.SUCCEEDED, run.reason
    version = ModelVersion.objects.get(project=project, is_active=True)
    assert version.run_id == run_id
    assert version.metrics["split"]["speaker_independent"]
    with (emodb / "wav" / UNSEEN).open("rb") as fh:  # a speaker never seen
        response = client_for(reviewer).post("/api/projects/callcentre/predict", {"file": fh})
    assert response.status_code == 200
    assert response.json()["model_version"] == version.number


def test_a_worker_killed_mid_training_leaves_the_run_failed_and_the_old_model_active(
    worker, project, annotator, engineer, client_for, kit
):
    clips = kit.clips(project, SPEAKERS, per_emotion=2)
    kit.label(clips, annotator)
    kit.cache(clips)
    settings_row = kit.fast(project)
    client = client_for(engineer)
    first = _start(client)
    wait_until(lambda: _finished(first), timeout=120, what="the first training")
    previous = ModelVersion.objects.get(project=project, is_active=True)

    # Long enough to be caught in the act (the most epochs the bounds allow, on the clips and
    # their augmented copies): project settings the worker reads from the row.
    settings_row.epochs = EPOCHS_MAX
    settings_row.augmentation = True
    settings_row.save()
    second = _start(client)
    wait_until(
        lambda: _run(second).progress.get("stage") == "training",
        timeout=120,
        what="the second training to be under way",
    )
    pid = int(_run(second).worker.rpartition(":")[2])
    assert pid != worker["process"].pid  # a pool process, not the worker's main process
    os.kill(pid, signal.SIGKILL)

    wait_until(lambda: _finished(second), timeout=120, what="the killed run to be marked failed")
    run = _run(second)
    assert run.status == Status.FAILED
    assert run.reason_code in {"worker_lost", "stale"}
    assert "previously active model stays active" in run.reason
    assert list(ModelVersion.objects.filter(project=project, is_active=True)) == [previous]
    assert worker["process"].poll() is None  # the worker itself lives on
    assert Clip.objects.filter(project=project).count() == len(clips)
