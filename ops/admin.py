"""Failed tasks and beat runs in the Django admin: read-only (written by the worker's
signal handlers; retried from the operations page or API, which records who retried)."""

from __future__ import annotations

from django.contrib import admin

from emoloop.admin_base import ReadOnlyAdmin
from ops.models import BeatRun, TaskFailure


@admin.register(TaskFailure)
class TaskFailureAdmin(ReadOnlyAdmin):
    list_display = ["failed_at", "task_name", "queue", "exception", "retried_at"]
    list_filter = ["task_name", "queue"]
    search_fields = ["task_name", "task_id", "exception"]


@admin.register(BeatRun)
class BeatRunAdmin(ReadOnlyAdmin):
    list_display = ["task_name", "last_started_at", "last_task_id"]
