"""A real broker outage: this process's Celery app points at a closed port for the duration
(no mock of publish), then back at Redis.

While it is down a training request answers 503 naming the saved run, which stays queued and
unsent (dispatched_at null); a retried request does not open a second run; once the broker is
back the beat sends it at once and a real worker trains it. An activation whose rescoring
cannot be queued still succeeds, and the beat queues the rescoring later.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from emoloop.dispatch import BrokerUnavailable
from labelling import audio
from labelling.models import Annotation, Clip, Project
from labelling.services import queue
from learner import tasks
from learner.models import ModelVersion, Ranking, TrainingRun
from learner.services import project_settings, rescoring, training
from tests.broker import broker_down
from tests.conftest import wait_until
from tests.factories import ClipFactory

Status = TrainingRun.Status
URL = "/api/projects/callcentre/training-runs"


def _tone(freq: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(8000) / 16000
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    return audio.wav_bytes(wave.astype(np.float32), 16000)


def _labelled_tones(project: Project, annotator, n: int = 24) -> list[Clip]:
    """n half-second clips of synthesised speech-like tones by four speakers: low ones
    labelled "sad", high ones "joyful" (a model learns that from pitch in a few epochs)."""
    nodes = {key: project.taxonomy_version.nodes.get(key=key) for key in ("sad", "joyful")}
    clips, labels = [], []
    for i in range(n):
        key, freq = ("sad", 110 + 3 * i) if i % 2 else ("joyful", 330 + 5 * i)
        wav = _tone(freq, i)
        clip = ClipFactory(
            project=project,
            speaker_id=f"spk{i // 2 % 4}",
            canonical=ContentFile(wav, name=f"tone-{i}.wav"),
            original=ContentFile(wav, name=f"tone-{i}.wav"),
        )
        clips.append(clip)
        labels.append(Annotation(clip=clip, annotator=annotator, node=nodes[key]))
    Annotation.objects.bulk_create(labels)
    project_settings.update_settings(
        project, {"epochs": 20, "augmentation": False, "min_labelled_clips": 10}
    )
    return clips


def _run(project: Project) -> TrainingRun:
    return TrainingRun.objects.get(project=project)


# --- Training requests ---------------------------------------------------------------------


def test_while_the_broker_is_down_a_training_request_is_a_503_and_its_run_waits(
    transactional_db, project, engineer, client_for
):
    client = client_for(engineer)

    with broker_down():
        first = client.post(URL, {}, format="json")
        retried = client.post(URL, {}, format="json")

    run = _run(project)  # one run, saved, for both requests
    assert first.status_code == retried.status_code == 503, first.content
    assert first.json()["code"] == "broker_unavailable"
    assert (
        f"Training run #{run.pk} is saved and will start as soon as the task queue is back"
        in first.json()["detail"]
    )
    assert (run.status, run.dispatched_at) == (Status.QUEUED, None)

    counts = tasks.dispatch_pending()  # the beat, 30 s later, with the broker back

    assert counts["sent"] == 1
    run.refresh_from_db()
    assert run.dispatched_at is not None
    again = client.post(URL, {}, format="json")
    assert again.status_code == 202
    assert (again.json()["created"], again.json()["run"]["id"]) == (False, run.pk)
    assert tasks.dispatch_pending()["sent"] == 0  # nothing is sent twice


def test_start_training_raises_naming_the_saved_run_and_a_retry_sends_it(transactional_db, project):
    with broker_down(), pytest.raises(BrokerUnavailable) as caught:
        tasks.start_training(project, trigger=TrainingRun.Trigger.MANUAL)

    run = _run(project)
    assert caught.value.message.startswith(f"Training run #{run.pk} is saved")
    assert run.dispatched_at is None

    again, created = tasks.start_training(project, trigger=TrainingRun.Trigger.MANUAL)

    assert (again.pk, created) == (run.pk, False)
    assert again.dispatched_at is not None
    assert TrainingRun.objects.count() == 1


def test_the_train_command_says_the_run_is_saved(transactional_db, project):
    from django.core.management import CommandError, call_command

    with broker_down(), pytest.raises(CommandError, match=r"Training run #\d+ is saved"):
        call_command("train", project.slug, queue=True)

    assert _run(project).status == Status.QUEUED


def test_a_run_sent_long_ago_and_still_queued_is_sent_again(transactional_db, project, settings):
    settings.EMOLOOP_TRAINING_REDISPATCH_SECONDS = 600
    run, _ = tasks.start_training(project, trigger=TrainingRun.Trigger.MANUAL)
    assert run.dispatched_at is not None

    assert tasks.dispatch_pending()["resent"] == 0  # sent a moment ago: left alone
    long_ago = timezone.now() - timedelta(minutes=11)
    TrainingRun.objects.filter(pk=run.pk).update(dispatched_at=long_ago)

    assert tasks.dispatch_pending()["resent"] == 1
    run.refresh_from_db()
    assert run.dispatched_at > long_ago


def test_the_beat_saves_what_it_cannot_send_and_sends_it_later(
    transactional_db, project, annotator
):
    Annotation.objects.bulk_create(
        Annotation(clip=clip, annotator=annotator, node=project.taxonomy_version.nodes.first())
        for clip in [ClipFactory(project=project) for _ in range(3)]
    )
    project_settings.update_settings(project, {"retrain_after_labels": 3})

    with broker_down():
        started = tasks.schedule_training()
        stuck = tasks.dispatch_pending()

    assert started == 1
    assert stuck["sent"] == 0
    assert _run(project).dispatched_at is None
    assert tasks.dispatch_pending()["sent"] == 1


# --- Rescoring after an activation --------------------------------------------------------


def test_an_activation_whose_rescoring_cannot_be_queued_succeeds_and_the_beat_queues_it(
    transactional_db, project, annotator, caplog
):
    _labelled_tones(project, annotator)
    run, _ = training.open_run(project, trigger=TrainingRun.Trigger.COMMAND)

    with broker_down(), caplog.at_level(logging.WARNING, logger="learner.tasks"):
        ended = training.run_training(run.pk)  # no exception escapes after the commit

    assert ended.status == Status.SUCCEEDED, ended.reason
    version = ModelVersion.objects.get(project=project, is_active=True)
    assert f"rescoring of model version {version.pk}" in caplog.text
    assert rescoring.unranked_active_versions(grace_seconds=0) == [version]
    assert tasks.dispatch_pending()["rescorings"] == 0  # within the grace period

    ModelVersion.objects.filter(pk=version.pk).update(
        activated_at=timezone.now() - timedelta(minutes=2)
    )
    assert tasks.dispatch_pending()["rescorings"] == 1
    # What the worker then does with that message:
    ranking_id = tasks.rescore_project(project.pk, version.pk)

    assert Ranking.objects.get(pk=ranking_id).model_version == version
    assert rescoring.unranked_active_versions(grace_seconds=0) == []
    assert tasks.rescore_project(project.pk, version.pk) is None  # a duplicate does nothing


def test_a_rescoring_whose_chunks_cannot_be_sent_leaves_the_version_unranked(
    transactional_db, project, annotator
):
    clips = _labelled_tones(project, annotator, n=16)
    queue.enqueue_clips(project, clips)
    run, _ = training.open_run(project, trigger=TrainingRun.Trigger.COMMAND)
    with broker_down():
        assert training.run_training(run.pk).status == Status.SUCCEEDED
        version = ModelVersion.objects.get(project=project, is_active=True)

        with pytest.raises(BrokerUnavailable, match="rescoring of project callcentre"):
            tasks.rescore_project(project.pk, version.pk)

    assert not Ranking.objects.exists()
    assert rescoring.unranked_active_versions(grace_seconds=0) == [version]


# --- With a real worker ---------------------------------------------------------------------


@pytest.mark.celery
def test_after_an_outage_the_beat_sends_the_run_and_the_worker_trains_it(
    worker, project, annotator, engineer, client_for
):
    _labelled_tones(project, annotator)

    with broker_down():
        response = client_for(engineer).post(URL, {}, format="json")
    assert response.status_code == 503
    run = _run(project)
    assert (run.status, run.dispatched_at) == (Status.QUEUED, None)

    assert tasks.dispatch_pending()["sent"] == 1
    wait_until(
        lambda: _run(project).status not in TrainingRun.OPEN,
        timeout=120,
        what="the worker to train the run sent after the outage",
    )

    run = _run(project)
    assert run.status == Status.SUCCEEDED, run.reason
    assert ModelVersion.objects.get(project=project, is_active=True).run_id == run.pk
