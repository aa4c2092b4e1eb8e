"""What the operations page needs to remember: failed tasks and the beat's last runs.

Workers alive, queue lengths and running tasks are asked of the broker live; failures and
beat runs are written by Celery signal handlers in the worker (ops.signals), because the
broker forgets them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class TaskFailure(models.Model):
    """One task that ended in an exception (Celery's task_failure, after its own retries).

    `args` / `kwargs` are kept as sent (JSON, the project's only serializer) so that an admin
    can send the task again; `args_repr` is the bounded text shown on the page. A failure is
    retried at most once (`retried_at`, claimed with a compare-and-set update); the retry's
    own failure, if any, is a new row.
    """

    task_name = models.CharField(max_length=200, db_index=True)
    task_id = models.CharField(max_length=64, db_index=True)
    queue = models.CharField(max_length=100, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    args = models.JSONField(null=True, blank=True)
    kwargs = models.JSONField(null=True, blank=True)
    args_repr = models.CharField(max_length=500, blank=True)
    exception = models.TextField()
    traceback = models.TextField(blank=True)
    failed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    retried_at = models.DateTimeField(null=True, blank=True)
    retried_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retry_task_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-failed_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.task_name} [{self.task_id}] {self.exception[:80]}"


class BeatRun(models.Model):
    """The last time a worker started a task that the beat schedule sends."""

    task_name = models.CharField(max_length=200, unique=True)
    last_started_at = models.DateTimeField()
    last_task_id = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.task_name} @ {self.last_started_at:%Y-%m-%d %H:%M:%S}"


class WorkerHeartbeat(models.Model):
    """The last heartbeat of each Celery worker (written by the worker at most every
    `HEARTBEAT_WRITE_SECONDS`, ops.signals); /readyz wants one recent enough.

    In the database rather than the cache: the web process and every worker agree on it
    whatever their cache settings, and a dead worker's last heartbeat stays visible.
    """

    hostname = models.CharField(max_length=200, unique=True)
    last_seen = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.hostname} @ {self.last_seen:%Y-%m-%d %H:%M:%S}"


class StorageReport(models.Model):
    """The last measurement of MEDIA_ROOT (one row, pk 1; ops.tasks.measure_storage).

    `folders`: `[{"folder": name, "bytes": n, "files": n}, …]` per top-level folder.
    """

    measured_at = models.DateTimeField()
    root = models.CharField(max_length=500)
    folders = models.JSONField(default=list)
    total_bytes = models.BigIntegerField(default=0)
    took_s = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"{self.root}: {self.total_bytes} bytes @ {self.measured_at:%Y-%m-%d %H:%M:%S}"


class TaskOutcome(models.Model):
    """How many times each task succeeded, failed or was retried, on any worker host
    (ops.signals: one upsert per outcome); /metrics reads it as
    `emoloop_celery_tasks_total`. In the database because every worker host writes it and
    every web host reads it, whatever the broker; counts only grow (Prometheus counters).
    """

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        RETRIED = "retried"

    task_name = models.CharField(max_length=200)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task_name", "outcome"], name="ops_task_outcome_unique")
        ]

    def __str__(self) -> str:
        return f"{self.task_name} {self.outcome}: {self.count}"
