"""Celery tasks of the learner: thin wrappers over learner.services (ids in, no heavy
results out). CELERY_TASK_ROUTES sends `train_*` to the `training` queue, `compute_features`
to `ingest`, and the rescoring chord (rescore_project, score_chunk, finish_ranking,
ranking_failed) to `rescoring`; the beat tasks stay on `default`.

Hosts die: every task here is acks_late, so a message taken by a worker whose host was
killed is never acknowledged and the broker hands it to another worker after the visibility
timeout (CELERY_VISIBILITY_TIMEOUT). A chunk delivered again keeps its task id, so the
chord still counts it once it succeeds, and it only scores the clips that have no score yet.

Dispatch (emoloop.dispatch): a task is published after the rows it works on are committed,
and a publish that fails is never lost. A training run records when its task was sent
(`TrainingRun.dispatched_at`); `dispatch_pending` (beat, every 30 s) sends runs never sent,
sends again runs whose message was lost, and queues the rescoring of an active model
version whose rescoring never started.

The beat tasks handle projects one at a time: one project's broken row or failing query is
logged with its slug (and, for scheduling, recorded as a failed run) and the others go on.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import Task, chord, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.auth.models import User
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from emoloop.dispatch import PUBLISH_ERRORS, BrokerUnavailable, publish, publish_after_commit
from labelling.models import Clip, Project
from learner import conf
from learner.features import ExtractorUnavailable
from learner.models import ModelVersion, Ranking, TrainingRun
from learner.services import features, project_settings, rescoring, training

log = logging.getLogger(__name__)

_TRAIN_LIMIT = conf.training_time_limit()
# Feature chunks one backfill tick may queue (a chunk still waiting at the next tick would
# be queued again: harmless, computing skips cached vectors, but wasted).
BACKFILL_MAX_CHUNKS = 10


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


# --- Sending training runs --------------------------------------------------------------


def send_run(run_id: int, *, stale_before: datetime | None = None) -> bool:
    """Publish the task of a queued run and record when; False when there was nothing to send.

    Without `stale_before`: only a run never sent (dispatched_at null). With it: only a run
    sent before that instant and still queued (its message was lost).

    The row is locked while it is sent (FOR UPDATE SKIP LOCKED): a retried request and the
    beat sweeping at the same moment publish it once, and the worker's claim (queued ->
    running) waits the few milliseconds until dispatched_at is committed. The run itself is
    committed before this is called, so the task finds it. Raises BrokerUnavailable (nothing
    is written; the sweep tries again).
    """
    wanted = (
        Q(dispatched_at__isnull=True) if stale_before is None else Q(dispatched_at__lt=stale_before)
    )
    with transaction.atomic():
        run = (
            TrainingRun.objects.select_for_update(skip_locked=True)
            .filter(wanted, pk=run_id, status=TrainingRun.Status.QUEUED)
            .first()
        )
        if run is None:  # sent already, claimed, closed, or being sent by someone else now
            return False
        publish(train_model, run_id)
        TrainingRun.objects.filter(pk=run_id).update(dispatched_at=timezone.now())
    return True


def start_training(
    project: Project,
    *,
    trigger: str,
    user: User | None = None,
    feature_set: str | None = None,
) -> tuple[TrainingRun, bool]:
    """Open a run (or return the open one) and send its task once the row is committed.

    A run that was never sent (the broker was down when it opened) is sent again here, so a
    retried request gets it going. When the broker is down this raises BrokerUnavailable
    naming the run, after the run is saved: the API answers 503, and the beat
    (`dispatch_pending`) sends the run as soon as the broker is back.
    """
    run, created = training.open_run(project, trigger=trigger, user=user, feature_set=feature_set)
    if run.status == TrainingRun.Status.QUEUED and run.dispatched_at is None:

        def send() -> None:
            try:
                send_run(run.pk)
            except BrokerUnavailable as exc:
                raise BrokerUnavailable(
                    f"Training run #{run.pk} is saved and will start as soon as the task "
                    f"queue is back. {exc.message}"
                ) from exc
            run.refresh_from_db(fields=["dispatched_at", "status"])

        publish_after_commit(send)
    return run, created


# --- Beat ---------------------------------------------------------------------------------


def _beat_projects() -> QuerySet[Project]:
    """Projects the beat looks at, in a stable order (so a broken one is met at the same
    point of each tick, and the others before and after it still run)."""
    return Project.objects.filter(is_active=True, taxonomy_version__isnull=False).order_by("pk")


@shared_task(acks_late=True)
def schedule_training() -> int:
    """Beat: start a training where enough new labels arrived or the interval passed.

    One project at a time: a project whose check fails is logged and recorded as a failed
    run with reason code `schedule_error` (at most once an hour while it keeps failing), and
    the other projects are still scheduled. A broker outage is not the project's fault: the
    run is saved and `dispatch_pending` sends it later.
    """
    started = 0
    for project in _beat_projects():
        try:
            trigger = training.due_trigger(project)
            if trigger is not None:
                _, created = start_training(project, trigger=trigger)
                started += int(created)
        except BrokerUnavailable as exc:
            started += 1  # due_trigger saw no open run: this one was opened, just not sent
            log.warning("training of project %s saved but not sent: %s", project.slug, exc)
        except Exception as exc:
            log.exception("scheduling the training of project %s failed", project.slug)
            try:
                training.record_schedule_error(project.pk, exc)
            except Exception:
                log.exception("could not record the scheduling error of project %s", project.slug)
    return started


@shared_task(acks_late=True)
def dispatch_pending() -> dict[str, int]:
    """Beat (every 30 s): send what was saved but never reached the broker.

    - queued training runs never sent (the broker was down when they were opened), at once;
    - queued runs sent longer ago than EMOLOOP_TRAINING_REDISPATCH_SECONDS (a lost message;
      a duplicate is harmless, the task claims its run with a compare-and-set);
    - rescorings of active model versions that have no ranking since their activation;
    - rankings still open long after they started are failed (rescoring.fail_stalled), and
      an active version whose newest ranking failed is ranked again, a bounded number of
      times with backoff (rescoring.versions_to_retry).

    Stops at the first BrokerUnavailable (the rest waits for the next tick); any other
    failure is logged with the project and the others go on.
    """
    counts = {"sent": 0, "resent": 0, "rescorings": 0, "ranking_retries": 0, "stalled_rankings": 0}
    try:
        counts["stalled_rankings"] = rescoring.fail_stalled()
    except Exception:
        log.exception("failing stalled rankings failed")
    stale = timezone.now() - timedelta(seconds=conf.training_redispatch_seconds())
    jobs: list[tuple[int, datetime | None, str]] = [
        (run_id, None, "sent") for run_id in training.undispatched_run_ids()
    ]
    jobs += [(run_id, stale, "resent") for run_id in training.stalled_queued_run_ids()]
    try:
        for run_id, before, key in jobs:
            try:
                counts[key] += int(send_run(run_id, stale_before=before))
            except BrokerUnavailable:
                raise
            except Exception:
                log.exception("could not send training run #%s", run_id)
        retries = rescoring.versions_to_retry()
        rescorings = [(v, False) for v in rescoring.unranked_active_versions()]
        for version, retry in rescorings + [(v, True) for v in retries]:
            try:
                publish(rescore_project, version.project_id, version.pk, retry)
                counts["rescorings" if not retry else "ranking_retries"] += 1
            except BrokerUnavailable:
                raise
            except Exception:
                log.exception(
                    "could not queue the rescoring of %s (project %s)",
                    version,
                    version.project.slug,
                )
    except BrokerUnavailable as exc:
        log.warning("dispatch_pending stopped, the task queue is unavailable: %s", exc)
    return counts


@shared_task(acks_late=True)
def reap_training_runs() -> dict[str, int]:
    """Beat: fail runs whose worker died, then send what is pending (as dispatch_pending,
    so that pending runs go out even where only this task is scheduled)."""
    try:
        reaped = training.reap_stale_runs()
    except Exception:
        log.exception("reaping stale training runs failed")
        reaped = 0
    pending = dispatch_pending()
    return {"reaped": reaped, "redispatched": pending["sent"] + pending["resent"], **pending}


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
    (new clips, or all clips after an extractor's version changed), oldest first, at most
    BACKFILL_MAX_CHUNKS chunks per tick.

    Project by project: a project whose feature set cannot run here is skipped with a
    warning (a training that asks for it fails loudly); any other failure is logged with the
    project's slug and the next project goes on. Returns the number of clips queued.
    """
    chunk = conf.feature_chunk_size()
    room = BACKFILL_MAX_CHUNKS * chunk
    queued = 0
    for project in Project.objects.order_by("pk"):
        if queued >= room:
            break
        try:
            name = project_settings.settings_for(project).feature_set
            ex = features.extractor(name)
            ids = list(
                features.missing(Clip.objects.filter(project=project), ex)
                .order_by("pk")
                .values_list("pk", flat=True)[: room - queued]
            )
            for start in range(0, len(ids), chunk):
                publish(compute_features, ids[start : start + chunk], ex.name)
                queued += len(ids[start : start + chunk])
        except ExtractorUnavailable as exc:
            log.warning("feature backfill skips project %s: %s", project.slug, exc)
        except BrokerUnavailable as exc:
            log.warning("feature backfill stopped, the task queue is unavailable: %s", exc)
            break
        except Exception:
            log.exception("feature backfill of project %s failed", project.slug)
    return queued


# --- Active learning: rescoring the pool (learner.services.rescoring) ---------------------


def queue_rescoring(project_id: int, version_id: int) -> bool:
    """Queue the rescoring of a freshly activated version (after its activation committed).

    A broker outage here must not fail the training or the rollback that activated it (the
    activation is committed and correct): it is logged, and `dispatch_pending` queues the
    rescoring of an active version without a ranking since its activation within a minute
    of the broker's return. Returns whether it was queued.
    """
    try:
        publish(rescore_project, project_id, version_id)
    except BrokerUnavailable as exc:
        log.warning(
            "rescoring of model version %s (project %s) not queued, the beat will: %s",
            version_id,
            project_id,
            exc,
        )
        return False
    return True


@shared_task(acks_late=True)
def rescore_project(
    project_id: int, version_id: int | None = None, retry: bool = False
) -> int | None:
    """Open a ranking and fan its chunks out to the workers (a chord ending in finish).

    With a version: does nothing when that version is no longer active (a newer activation
    queued its own rescoring) or does not want a ranking (rescoring.wants_ranking: ranked
    since its activation already, or, for a `retry`, its newest ranking did not fail or its
    attempts are spent). The check and the new ranking are made under the version's row
    lock, so two messages for the same activation (a beat resend racing the first) open one
    ranking. If the chord cannot be sent, the ranking is deleted again (no chunk scored it),
    so that the version counts as never ranked and the beat retries it.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    version = None
    try:
        with transaction.atomic():
            if version_id is not None:
                version = (
                    ModelVersion.objects.select_for_update()
                    .filter(pk=version_id, is_active=True)
                    .first()
                )
                if version is None or not rescoring.wants_ranking(version, retry=retry):
                    return None
            plan = rescoring.start(project, version)
    except Exception as exc:
        # Recorded as a failed ranking of this activation, so that the beat does not resend
        # it every tick (it retries it with backoff); the error is on the row and in the log.
        rescoring.record_failed_start(project, version, exc)
        raise
    if not plan.chunks:
        rescoring.finish(plan.ranking.pk)
        return plan.ranking.pk
    try:
        # A chunk that raises records its error itself (score_chunk); the error callback
        # covers what it cannot (its worker killed at the hard time limit), since the chord
        # then never calls finish_ranking.
        chord(score_chunk.si(plan.ranking.pk, ids) for ids in plan.chunks)(
            finish_ranking.si(plan.ranking.pk).on_error(ranking_failed.s(plan.ranking.pk))
        )
    except PUBLISH_ERRORS as exc:
        # Chunks already sent find no ranking and do nothing (score_chunk, finish).
        Ranking.objects.filter(pk=plan.ranking.pk).delete()
        raise BrokerUnavailable(
            f"The rescoring of project {project.slug} could not be sent ({exc}); the beat "
            "queues it again."
        ) from exc
    return plan.ranking.pk


# Errors worth trying a chunk again for: the database restarted or a lock timed out.
CHUNK_TRANSIENT = (OperationalError, InterfaceError)
CHUNK_RETRIES = 4


@shared_task(bind=True, acks_late=True, max_retries=CHUNK_RETRIES, time_limit=1800,
             soft_time_limit=1700)  # fmt: skip
def score_chunk(self: Task, ranking_id: int, clip_ids: list[int]) -> int:
    """Score one chunk. A transient error is retried with backoff (1, 2, 4, 8 s); any other
    error, or the last retry's, marks the ranking failed with its text and is raised (the
    chord then skips finish_ranking and calls ranking_failed, which finds it failed)."""
    try:
        return rescoring.score_chunk(ranking_id, clip_ids)
    except CHUNK_TRANSIENT as exc:
        if self.request.retries < CHUNK_RETRIES:
            raise self.retry(exc=exc, countdown=2**self.request.retries) from exc
        _record_chunk_failure(ranking_id, exc)
        raise
    except Exception as exc:
        _record_chunk_failure(ranking_id, exc)
        raise


def _record_chunk_failure(ranking_id: int, exc: BaseException) -> None:
    try:
        rescoring.fail(ranking_id, f"A chunk failed: {rescoring.error_text(exc)}")
    except Exception:  # the database is gone: the beat's fail_stalled marks it later
        log.exception("could not record the failure of ranking #%s", ranking_id)


@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1700)
def finish_ranking(ranking_id: int) -> int:
    return rescoring.finish(ranking_id)


@shared_task
def ranking_failed(request: object, exc: BaseException, traceback: object, ranking_id: int) -> None:
    """The chord's error callback (called in the worker where a chunk or the finishing step
    failed, with that task's request and exception): the ranking is failed with the error,
    unless it was recorded already."""
    rescoring.fail(ranking_id, exc)
