"""Training runs and the model registry.

A run goes queued -> running -> succeeded | failed | insufficient:
- `open_run` claims the project's single training slot: the partial unique constraint on
  TrainingRun (one queued or running run per project) makes two simultaneous triggers
  produce one run; the loser gets the open run back.
- `run_training` claims the run itself with a compare-and-set (queued -> running), so a
  redelivered or duplicated task message cannot train twice. It snapshots the labels,
  completes the feature cache, trains and evaluates (learner.pipeline), stores the artifact
  and plots, reads the artifact back through storage and checks that it predicts what the
  in-memory model predicts, and only then registers the new version and, if the quality
  gate lets it (learner.services.gate), activates it, in one transaction. The deployed
  model is refit on every label after the held-out evaluation (learner.pipeline).
- While training it beats a heartbeat on the run. A run whose worker died (SIGKILL, out of
  memory, a lost machine) is marked failed either when its task message is redelivered
  (acks_late) and the new attempt finds the old worker process gone, or by
  `reap_stale_runs` once its heartbeat is older than EMOLOOP_TRAINING_STALE_SECONDS. The
  previously active version stays active in every failure case.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit import services as audit
from labelling.models import Project
from labelling.services import loop
from learner import conf, plots
from learner.features import NAMES as FEATURE_SETS
from learner.features import ExtractorUnavailable
from learner.model import TrainConfig
from learner.models import (
    EPOCHS_MAX,
    RETRAIN_AFTER_LABELS_MAX,
    RETRAIN_INTERVAL_HOURS_MAX,
    GateDecision,
    LearnerSettings,
    ModelVersion,
    TrainingRun,
)
from learner.pipeline import Dataset, InsufficientData, PipelineConfig, Predictor, TrainResult
from learner.pipeline import train_and_evaluate as _train_and_evaluate
from learner.services import activation, datasets, gate, predict, project_settings, weak_labels

log = logging.getLogger(__name__)
Status = TrainingRun.Status

HEARTBEAT_EVERY_S = 1.0


class RunAbandoned(Exception):
    """The run was marked failed elsewhere (reaped as stale) while this process trained."""


class ArtifactError(RuntimeError):
    """The stored artifact does not load or does not predict like the trained model."""


def worker_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- Opening and claiming runs -----------------------------------------------------------


def open_run(
    project: Project,
    *,
    trigger: str,
    user: User | None = None,
    feature_set: str | None = None,
) -> tuple[TrainingRun, bool]:
    """Queue a training of the project, or return the one already queued or running.

    Returns (run, created). The caller dispatches the task when created is True (after
    commit: learner.tasks.start_training).
    """
    name = feature_set or project_settings.settings_for(project).feature_set
    if name not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {name!r}; known: {', '.join(FEATURE_SETS)}")
    try:
        # A savepoint, so that the constraint's refusal leaves an outer transaction usable.
        with transaction.atomic():
            run = TrainingRun.objects.create(
                project=project,
                trigger=trigger,
                requested_by=user if user is not None and user.is_authenticated else None,
                feature_set=name,
            )
        return run, True
    except IntegrityError:
        existing = TrainingRun.objects.filter(project=project, status__in=TrainingRun.OPEN).first()
        if existing is None:  # the open run finished between our insert and this read
            return open_run(project, trigger=trigger, user=user, feature_set=feature_set)
        return existing, False


def _finish(run_id: int, status: str, code: str = "", message: str = "", **extra: object) -> bool:
    """Close an open run (compare-and-set on its status); False if it was closed already."""
    return bool(
        TrainingRun.objects.filter(pk=run_id, status__in=TrainingRun.OPEN).update(
            status=status, finished_at=timezone.now(), reason_code=code, reason=message, **extra
        )
    )


def fail_run(run_id: int, code: str, message: str) -> bool:
    return _finish(run_id, Status.FAILED, code, message)


def _pid_alive(pid: int) -> bool:
    """Whether a process of this machine still runs (a zombie waiting to be reaped by its
    parent, as a SIGKILLed pool process briefly is, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: trust kill(0)
    return stat.rpartition(")")[2].split()[0] != "Z"


def _handle_unclaimed(run_id: int) -> None:
    """The task found its run not queued: a duplicate message, or a redelivery after the
    worker that ran it died (acks_late + reject_on_worker_lost requeue the message)."""
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None or run.status != Status.RUNNING:
        return
    host, _, pid = run.worker.rpartition(":")
    dead = (
        host == socket.gethostname()
        and pid.isdigit()
        and int(pid) != os.getpid()
        and not _pid_alive(int(pid))
    )
    stale = run.heartbeat_at is None or run.heartbeat_at < timezone.now() - timedelta(
        seconds=conf.training_stale_seconds()
    )
    if dead or stale:
        why = f"process {run.worker} is gone" if dead else "its heartbeat stopped"
        fail_run(
            run.pk,
            "worker_lost",
            f"The worker running this training died before it finished ({why}); the task was "
            "delivered again and found it dead. The previously active model stays active.",
        )


def reap_stale_runs(stale_seconds: int | None = None) -> int:
    """Mark running runs whose heartbeat stopped as failed; returns how many."""
    limit = timezone.now() - timedelta(seconds=stale_seconds or conf.training_stale_seconds())
    return TrainingRun.objects.filter(status=Status.RUNNING, heartbeat_at__lt=limit).update(
        status=Status.FAILED,
        finished_at=timezone.now(),
        reason_code="stale",
        reason="No heartbeat from the worker for too long: it was killed or lost mid-training. "
        "The previously active model stays active.",
    )


def undispatched_run_ids() -> list[int]:
    """Queued runs whose task was never published (the broker was down when they opened)."""
    return list(
        TrainingRun.objects.filter(status=Status.QUEUED, dispatched_at__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def stalled_queued_run_ids(seconds: int | None = None) -> list[int]:
    """Runs still queued long after their task was published (the message was lost)."""
    limit = timezone.now() - timedelta(seconds=seconds or conf.training_redispatch_seconds())
    return list(
        TrainingRun.objects.filter(status=Status.QUEUED, dispatched_at__lt=limit)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


SCHEDULE_ERROR = "schedule_error"
# A project whose scheduling keeps failing gets a new failed run at most this often (the log
# has every tick), and none while the same failure is the latest run.
SCHEDULE_ERROR_EVERY = timedelta(hours=1)


def record_schedule_error(project_id: int, exc: BaseException) -> TrainingRun | None:
    """Record that the beat could not schedule this project's training, as a failed run with
    reason code `schedule_error` (where the admin and the runs API show it).

    Does not read the project's settings (they may be what is broken). Returns None when the
    failure is recorded already: the latest run is a schedule_error with the same reason, or
    one younger than SCHEDULE_ERROR_EVERY.
    """
    reason = (
        f"The scheduler could not check or start this project's training: "
        f"{type(exc).__name__}: {exc}. Other projects are not affected; fix the learner "
        "settings (admin or API) and it retries on the next tick."
    )[:2000]
    latest = TrainingRun.objects.filter(project_id=project_id).order_by("-created_at").first()
    if (
        latest is not None
        and latest.reason_code == SCHEDULE_ERROR
        and (latest.reason == reason or latest.created_at > timezone.now() - SCHEDULE_ERROR_EVERY)
    ):
        return None
    now = timezone.now()
    return TrainingRun.objects.create(
        project_id=project_id,
        status=Status.FAILED,
        trigger=TrainingRun.Trigger.SCHEDULE,
        feature_set="",
        finished_at=now,
        reason_code=SCHEDULE_ERROR,
        reason=reason,
    )


# --- Triggers ----------------------------------------------------------------------------


def due_trigger(project: Project) -> str | None:
    """Why the project should train now (a TrainingRun.Trigger), or None.

    New labels are counted since the labels snapshot of the latest run, whatever its outcome,
    so that a run that found too few labels waits for N more rather than retrying each tick.
    """
    row = project_settings.settings_for(project)
    if project.taxonomy_version_id is None or not project.is_active:
        return None
    if TrainingRun.objects.filter(project=project, status__in=TrainingRun.OPEN).exists():
        return None
    last = (
        TrainingRun.objects.filter(project=project, labels_until__isnull=False)
        .order_by("-labels_until")
        .first()
    )
    since: datetime | None = last.labels_until if last is not None else None
    # Clamped: a row written past the validators and constraints (before migration 0003,
    # or by hand in SQL) must not overflow timedelta and stop the beat for every project.
    wanted = min(max(int(row.retrain_after_labels or 0), 0), RETRAIN_AFTER_LABELS_MAX)
    if wanted and loop.count_labels(project, since=since, limit=wanted) >= wanted:
        return TrainingRun.Trigger.LABELS
    hours = min(max(int(row.retrain_interval_hours or 0), 0), RETRAIN_INTERVAL_HOURS_MAX)
    if hours and since is not None:
        due = since + timedelta(hours=hours)
        if timezone.now() >= due and loop.count_labels(project, since=since, limit=1):
            return TrainingRun.Trigger.SCHEDULE
    return None


# --- Training ----------------------------------------------------------------------------


class _Heartbeat:
    """Beats the run's heartbeat and progress at most once a second; raises RunAbandoned
    when the run was closed under us (reaped as stale)."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.last = 0.0

    def __call__(self, stage: str, done: int = 0, total: int = 0, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < HEARTBEAT_EVERY_S:
            return
        self.last = now
        beat = TrainingRun.objects.filter(pk=self.run_id, status=Status.RUNNING).update(
            heartbeat_at=timezone.now(), progress={"stage": stage, "done": done, "total": total}
        )
        if not beat:
            raise RunAbandoned(f"training run {self.run_id} was closed while it trained")


def _train_config(row: LearnerSettings, params: dict) -> TrainConfig:
    epochs = params.get("epochs", row.epochs)
    return TrainConfig(
        # Clamped like due_trigger's values: a row past the bounds must not hold a worker.
        epochs=min(int(epochs), EPOCHS_MAX) if epochs else None,
        seed=row.seed,
        threads=conf.torch_threads(),
    )


def _check_artifact(name: str, predictor: Predictor, dataset: Dataset) -> None:
    """Read the stored artifact back and compare its predictions with the trained model's."""
    with default_storage.open(name, "rb") as fh:
        data = fh.read()
    try:
        loaded = Predictor.from_bytes(data)
    except Exception as exc:
        raise ArtifactError(f"the stored artifact {name} does not load: {exc}") from exc
    rows = dataset.features[:16]
    speakers = dataset.speakers[:16]
    expected, _ = predictor.probabilities(rows, speakers)
    got, _ = loaded.probabilities(rows, speakers)
    if not np.allclose(expected, got, atol=1e-5):
        raise ArtifactError(f"the stored artifact {name} predicts differently from the model")


def _store_version(
    project: Project, run: TrainingRun, result: TrainResult, dataset: Dataset, label_count: int
) -> ModelVersion:
    """Store the artifact and plots, check the artifact loads, then register and activate."""
    data = result.predictor.to_bytes()
    stamp = f"{project.pk}-run{run.pk}"
    images = plots.for_metrics(result.metrics)
    stored: list[str] = []
    try:
        artifact = default_storage.save(f"learner/models/{stamp}.pt", ContentFile(data))
        stored.append(artifact)
        _check_artifact(artifact, result.predictor, dataset)
        confusion = default_storage.save(
            f"learner/plots/{stamp}-confusion.png", ContentFile(images["confusion"])
        )
        stored.append(confusion)
        reliability = default_storage.save(
            f"learner/plots/{stamp}-calibration.png", ContentFile(images["calibration"])
        )
        stored.append(reliability)
        return _register(project, run, result, dataset, label_count, data, stored)
    except BaseException:
        # No version row points at these files: do not leave them behind.
        for name in stored:
            default_storage.delete(name)
        raise


def _register(
    project: Project,
    run: TrainingRun,
    result: TrainResult,
    dataset: Dataset,
    label_count: int,
    data: bytes,
    stored: list[str],
) -> ModelVersion:
    """Create the version row and, if the quality gate lets it, activate it, in one
    transaction."""
    artifact, confusion, reliability = stored
    with transaction.atomic():
        # Lock the project's settings row: version numbers and activation are serialised per
        # project (two finishing runs cannot take the same number or both be active).
        project_settings.lock_settings(project.pk)
        # Still ours? The reaper may have declared this run dead while it trained.
        if not TrainingRun.objects.filter(pk=run.pk, status=Status.RUNNING).exists():
            raise RunAbandoned(f"training run {run.pk} was closed before it could activate")
        number = (
            ModelVersion.objects.filter(project=project).aggregate(top=Max("number"))["top"] or 0
        ) + 1
        row = project_settings.settings_for(project)
        verdict = gate.judge(result.held_out, gate.active_version(project), row, seed=row.seed)
        version = ModelVersion.objects.create(
            project=project,
            number=number,
            run=run,
            taxonomy_version_id=project.taxonomy_version_id,
            extractor=dataset.extractor["name"],
            extractor_version=dataset.extractor["version"],
            artifact=artifact,
            artifact_sha256=hashlib.sha256(data).hexdigest(),
            metrics=result.metrics,
            label_count=label_count,
            train_seconds=result.train_seconds,
            confusion_image=confusion,
            calibration_image=reliability,
            gate_decision=verdict.decision,
            gate_reason=verdict.reason,
            gate_details=verdict.details,
            held_out=result.held_out,
        )
        if verdict.activate:
            _activate(version, {"gate": verdict.decision})
            _finish(run.pk, Status.SUCCEEDED, progress={"stage": "done"})
        else:
            _finish(
                run.pk, Status.SUCCEEDED, "gate_refused", verdict.reason, progress={"stage": "done"}
            )
    return version


def _activate(
    version: ModelVersion, details: dict[str, object] | None = None, user: User | None = None
) -> None:
    """Make `version` the project's active model (inside the caller's transaction); the
    audit event carries `details` beside the version's and the previous one's numbers."""
    previous = list(
        ModelVersion.objects.filter(project_id=version.project_id, is_active=True)
        .exclude(pk=version.pk)
        .values_list("number", flat=True)
    )
    ModelVersion.objects.filter(project_id=version.project_id, is_active=True).exclude(
        pk=version.pk
    ).update(is_active=False)
    version.is_active = True
    version.activated_at = timezone.now()
    version.save(update_fields=["is_active", "activated_at"])
    audit.record(
        user,
        "model.activated",
        project=version.project,
        target=version,
        details={
            "number": version.number,
            "previous": previous[0] if previous else None,
            **(details or {}),
        },
    )
    # The loop: a new active model rescores the unlabelled pool (after commit, so the
    # workers see the activation). The activation is committed by then: a broker that is
    # down must not turn it into an error (the task layer's hook, learner.tasks.
    # queue_rescoring, logs it, and the beat's dispatch_pending queues the rescoring of an
    # active version that has no ranking since its activation). robust: nothing raised
    # after COMMIT fails the caller.
    for hook in _ACTIVATION_HOOKS:
        transaction.on_commit(partial(hook, version.project_id, version.pk), robust=True)


# Called after commit with (project id, version id) whenever a version becomes active. The
# task layer registers the rescoring dispatch (learner.apps): services never import tasks.
# The list is learner.services.activation's, so the app registers without importing torch.
_ACTIVATION_HOOKS = activation.HOOKS


def on_activation(hook: Callable[[int, int], object]) -> None:
    """Register a hook run after commit when a model version becomes active (idempotent)."""
    if hook not in _ACTIVATION_HOOKS:
        _ACTIVATION_HOOKS.append(hook)


def activate(version: ModelVersion, user: User | None = None) -> ModelVersion:
    """Make an existing version active by hand (a rollback, or a candidate the quality gate
    refused), once its artifact loads. The audit event says it was by hand and whether it
    overrode the gate (`user` None: the request's user)."""
    with default_storage.open(predict.artifact_name(version), "rb") as fh:
        try:
            Predictor.from_bytes(fh.read())
        except Exception as exc:
            raise ArtifactError(
                f"version {version.number}'s artifact does not load: {exc}"
            ) from exc
    overridden = version.gate_decision == GateDecision.REFUSED
    with transaction.atomic():
        project_settings.lock_settings(version.project_id)
        _activate(
            version,
            {"manual": True, "gate_overridden": overridden}
            | ({"gate_reason": version.gate_reason} if overridden else {}),
            user,
        )
    return version


def run_training(
    run_id: int, *, timeouts: tuple[type[BaseException], ...] = ()
) -> TrainingRun | None:
    """Claim the run and train (see the module docstring). Returns the run as it ended, or
    None when this call did not own it (a duplicate or redelivered message).

    `timeouts` are the exceptions that mean "out of time" (Celery's soft time limit): the
    run is marked failed with reason code "timeout" and the exception goes on up.
    """
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=Status.QUEUED).update(
        status=Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker_label()
    )
    if not claimed:
        _handle_unclaimed(run_id)
        return None
    run = TrainingRun.objects.select_related("project").get(pk=run_id)
    project = run.project
    beat = _Heartbeat(run.pk)
    try:
        if project.taxonomy_version_id is None:
            raise InsufficientData("no_taxonomy", "The project has no taxonomy yet.")
        snapshot = loop.label_snapshot(project)
        name = default_storage.save(
            f"learner/snapshots/{project.pk}-run{run.pk}.json",
            ContentFile(
                json.dumps(
                    {
                        "run": run.pk,
                        "project": project.slug,
                        "taxonomy_version": project.taxonomy_version_id,
                        "taken_at": snapshot.taken_at.isoformat(),
                        "columns": list(loop.SNAPSHOT_COLUMNS),
                        "rows": [label.as_row() for label in snapshot.labels],
                    }
                ).encode()
            ),
        )
        labelled = snapshot.labelled_count
        TrainingRun.objects.filter(pk=run.pk).update(
            labels_snapshot=name, labels_until=snapshot.taken_at, label_count=labelled
        )
        gathering = (time.perf_counter(), time.process_time())
        dataset, row = datasets.build_dataset(project, run.feature_set, snapshot, beat)
        dataset = weak_labels.add_weak_rows(project, dataset)
        gathered = (time.perf_counter() - gathering[0], time.process_time() - gathering[1])
        config = PipelineConfig(
            normalisation=datasets.normalisation(project, row),
            train=_train_config(row, run.params),
            min_examples=row.min_labelled_clips,
            seed=row.seed,
            test_groups=gate.pinned_test_groups(project, row),
            refit_all=True,
        )
        TrainingRun.objects.filter(pk=run.pk).update(
            params={
                **run.params,
                "normalisation": config.normalisation,
                "augmentation": bool(dataset.augmented),
                "train": config.train.as_dict(),
            }
        )
        result = _train_and_evaluate(
            dataset,
            config,
            on_epoch=lambda epoch, total, loss: beat("training", epoch, total),
        )
        beat("saving", force=True)
        result.metrics.setdefault("timings", {}).update(
            dataset_s=round(gathered[0], 3), dataset_cpu_s=round(gathered[1], 3)
        )
        _store_version(project, run, result, dataset, labelled)
    except InsufficientData as exc:
        _finish(run.pk, Status.INSUFFICIENT, exc.code, exc.message)
    except RunAbandoned:
        log.warning("training run %s was closed while it trained; its result is dropped", run.pk)
    except timeouts:
        fail_run(
            run.pk,
            "timeout",
            "Training took longer than its time limit; the previous model stays active. "
            "Raise EMOLOOP_TRAINING_TIME_LIMIT or set fewer epochs.",
        )
        raise
    except Exception as exc:
        code = "features_unavailable" if isinstance(exc, ExtractorUnavailable) else "error"
        fail_run(run.pk, code, f"{type(exc).__name__}: {exc}")
        raise
    run.refresh_from_db()
    return run
