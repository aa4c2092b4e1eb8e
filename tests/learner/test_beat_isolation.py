"""The beat handles projects one at a time: a project whose settings row is poisoned (written
past the validators, as rows from before the bounds were) never stops the others."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from labelling.models import Annotation, Clip, Project
from learner import tasks
from learner.models import ClipFeatures, LearnerSettings, TrainingRun
from learner.services import project_settings, training
from tests.factories import ClipFactory

pytestmark = [pytest.mark.django_db]


def _labelled(project: Project, annotator, n: int = 6) -> list[Clip]:
    """n clips of synthesised audio, each labelled once."""
    clips = [ClipFactory(project=project) for _ in range(n)]
    mad = project.taxonomy_version.nodes.get(key="mad")
    Annotation.objects.bulk_create(Annotation(clip=c, annotator=annotator, node=mad) for c in clips)
    return clips


def _drop_bounds() -> None:
    """Remove the learner settings' check constraints for this test only (the test's
    transaction rolls the DDL back), to write a row as it could be before migration 0003."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE wants no pending checks
        for constraint in LearnerSettings._meta.constraints:
            cursor.execute(f"ALTER TABLE learner_learnersettings DROP CONSTRAINT {constraint.name}")


def _poison(project: Project, **values: object) -> None:
    project_settings.settings_for(project)
    _drop_bounds()
    LearnerSettings.objects.filter(project=project).update(**values)


@pytest.fixture
def poisoned_first(willcox):
    """A project created before the healthy one (`project`), so the beat meets it first."""
    return Project.objects.create(name="Old", slug="old", taxonomy_version=willcox)


def test_a_retrain_interval_that_overflowed_the_beat_no_longer_does(
    poisoned_first, project, annotator
):
    _labelled(poisoned_first, annotator, 4)
    TrainingRun.objects.create(
        project=poisoned_first,
        trigger="labels",
        status=TrainingRun.Status.SUCCEEDED,
        feature_set="acoustic",
        labels_until=timezone.now() - timedelta(days=2),
    )
    Annotation.objects.filter(clip__project=poisoned_first).update(created_at=timezone.now())
    _poison(poisoned_first, retrain_interval_hours=134_377_414, retrain_after_labels=0)
    _labelled(project, annotator, 6)
    project_settings.update_settings(project, {"retrain_after_labels": 5})
    assert poisoned_first.pk < project.pk

    assert training.due_trigger(poisoned_first) is None  # clamped to a year, not an overflow
    started = tasks.schedule_training()

    assert started == 1
    run = TrainingRun.objects.get(project=project)
    assert (run.status, run.trigger) == (TrainingRun.Status.QUEUED, "labels")
    assert not TrainingRun.objects.filter(project=poisoned_first, reason_code="schedule_error")


def test_a_project_whose_scheduling_fails_is_recorded_and_the_others_still_train(
    poisoned_first, project, annotator, caplog
):
    _labelled(poisoned_first, annotator, 6)
    _poison(poisoned_first, feature_set="nonsense", retrain_after_labels=5)
    _labelled(project, annotator, 6)
    project_settings.update_settings(project, {"retrain_after_labels": 5})
    assert poisoned_first.pk < project.pk

    with caplog.at_level(logging.ERROR, logger="learner.tasks"):
        started = tasks.schedule_training()

    assert started == 1
    assert TrainingRun.objects.get(project=project).status == TrainingRun.Status.QUEUED
    failed = TrainingRun.objects.get(project=poisoned_first)
    assert (failed.status, failed.reason_code) == (TrainingRun.Status.FAILED, "schedule_error")
    assert "unknown feature set 'nonsense'" in failed.reason
    assert failed.labels_until is None  # counts for nothing in due_trigger
    assert "scheduling the training of project old failed" in caplog.text
    assert "unknown feature set" in caplog.text  # with the traceback

    # The next tick fails the same way: logged again, not recorded a second time.
    TrainingRun.objects.filter(project=project).update(status=TrainingRun.Status.SUCCEEDED)
    tasks.schedule_training()
    assert TrainingRun.objects.filter(project=poisoned_first).count() == 1


def test_the_feature_backfill_goes_on_past_a_project_it_cannot_serve(
    poisoned_first, project, annotator, caplog
):
    _labelled(poisoned_first, annotator, 3)
    _poison(poisoned_first, feature_set="nonsense")
    healthy = _labelled(project, annotator, 4)
    assert poisoned_first.pk < project.pk

    with caplog.at_level(logging.ERROR, logger="learner.tasks"):
        queued = tasks.backfill_features()

    assert queued == len(healthy)
    assert "feature backfill of project old failed" in caplog.text
    assert not ClipFeatures.objects.exists()  # queued for a worker, not computed here


def test_a_broken_project_does_not_stop_the_reaper_sending_the_others_runs(
    poisoned_first, project, monkeypatch
):
    first, _ = training.open_run(poisoned_first, trigger="manual")
    second, _ = training.open_run(project, trigger="manual")
    sent: list[int] = []

    def send(run_id: int, *, stale_before=None) -> bool:
        if run_id == first.pk:
            raise RuntimeError("a row the sender cannot handle")
        sent.append(run_id)
        return True

    monkeypatch.setattr(tasks, "send_run", send)

    result = tasks.reap_training_runs()

    assert sent == [second.pk]
    assert result["sent"] == 1
