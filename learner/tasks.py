"""Celery tasks of the learner: thin wrappers over learner.services (ids in, no heavy
results out). `train_*` tasks are routed to the `training` queue by CELERY_TASK_ROUTES."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.auth.models import AbstractBaseUser
from django.db import OperationalError, transaction

from labelling.models import Project
from learner import conf
from learner.models import TrainingRun
from learner.services import features, training

_TRAIN_LIMIT = conf.training_time_limit()


@shared_task(
    acks_late=True,
    # A killed worker requeues the message (reject_on_worker_lost); the next attempt finds
    # the run still "running" with its process gone and marks it failed.
    reject_on_worker_lost=True,
    time_limit=_TRAIN_LIMIT,
    soft_time_limit=_TRAIN_LIMIT - 60,
)
def train_model(run_id: int) -> str | None:
    run = training.run_training(run_id, timeouts=(SoftTimeLimitExceeded,))
    return run.status if run else None


def start_training(
    project: Project,
    *,
    trigger: str,
    user: AbstractBaseUser | None = None,
    feature_set: str | None = None,
) -> tuple[TrainingRun, bool]:
    """Open a run (or return the open one) and queue its task once the row is committed."""
    run, created = training.open_run(project, trigger=trigger, user=user, feature_set=feature_set)
    if created:
        transaction.on_commit(lambda: train_model.delay(run.pk))
    return run, created


@shared_task(acks_late=True)
def schedule_training() -> int:
    """Beat: start a training where enough new labels arrived or the interval passed."""
    started = 0
    for project in Project.objects.filter(is_active=True, taxonomy_version__isnull=False):
        trigger = training.due_trigger(project)
        if trigger is not None:
            _, created = start_training(project, trigger=trigger)
            started += int(created)
    return started


@shared_task(acks_late=True)
def reap_training_runs() -> dict[str, int]:
    """Beat: fail runs whose worker died; send again runs whose message was lost."""
    reaped = training.reap_stale_runs()
    stalled = training.stalled_queued_run_ids()
    for run_id in stalled:
        train_model.delay(run_id)
    return {"reaped": reaped, "redispatched": len(stalled)}


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError,),  # database restarts and lock time-outs are transient
    retry_backoff=True,
    max_retries=5,
    time_limit=1800,
    soft_time_limit=1700,
)
def compute_features(clip_ids: list[int], feature_set: str) -> int:
    return features.compute(clip_ids, feature_set)


@shared_task(acks_late=True)
def backfill_features() -> int:
    """Beat: queue feature extraction for clips that have none for their project's set
    (new clips, or all clips after an extractor's version changed)."""
    plan = features.backfill_plan(conf.feature_chunk_size(), max_chunks=10)
    for name, ids in plan:
        compute_features.delay(ids, name)
    return sum(len(ids) for _, ids in plan)


# --- Active learning: rescoring the pool (learner.services.rescoring) ---------------------


@shared_task(acks_late=True)
def rescore_project(project_id: int, version_id: int | None = None) -> int | None:
    """Open a ranking and fan its chunks out to the workers (a chord ending in finish)."""
    from celery import chord

    from labelling.models import Project
    from learner.models import ModelVersion
    from learner.services import rescoring

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    version = ModelVersion.objects.filter(pk=version_id).first() if version_id else None
    plan = rescoring.start(project, version)
    if not plan.chunks:
        rescoring.finish(plan.ranking.pk)
        return plan.ranking.pk
    chord(score_chunk.si(plan.ranking.pk, ids) for ids in plan.chunks)(
        finish_ranking.si(plan.ranking.pk)
    )
    return plan.ranking.pk


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
    time_limit=1800,
    soft_time_limit=1700,
)
def score_chunk(ranking_id: int, clip_ids: list[int]) -> int:
    from learner.services import rescoring

    return rescoring.score_chunk(ranking_id, clip_ids)


@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1700)
def finish_ranking(ranking_id: int) -> int:
    from learner.services import rescoring

    return rescoring.finish(ranking_id)
