"""The operations API's shapes."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ops.models import TaskFailure
from ops.services import overview
from ops.services.failures import retry_refusal


class TaskFailureSerializer(serializers.ModelSerializer):
    retried_by = serializers.CharField(source="retried_by.username", default=None)
    retryable = serializers.SerializerMethodField()
    retry_refused = serializers.SerializerMethodField()

    class Meta:
        model = TaskFailure
        fields = [
            "id",
            "task_name",
            "task_id",
            "queue",
            "worker",
            "args_repr",
            "exception",
            "traceback",
            "failed_at",
            "retried_at",
            "retried_by",
            "retry_task_id",
            "retryable",
            "retry_refused",
        ]
        read_only_fields = fields

    def get_retryable(self, obj: TaskFailure) -> bool:
        return retry_refusal(obj) is None

    def get_retry_refused(self, obj: TaskFailure) -> str | None:
        return retry_refusal(obj)


def traceback_excerpt(text: str, lines: int = 12) -> str:
    """The last lines of a traceback (where the error is), for the page."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def overview_failure(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "traceback": traceback_excerpt(row.get("traceback") or "")}


def overview_payload() -> dict[str, Any]:
    """The operations picture (ops.services.overview) with failures as the API shows them."""
    data = overview.gather()
    rows = TaskFailureSerializer(data["failures"], many=True).data
    data["failures"] = [overview_failure(dict(row)) for row in rows]
    return data
