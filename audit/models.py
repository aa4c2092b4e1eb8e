"""The audit log: one row per consequential action (who, what, on which project, when).

Append-only. The guard is at the model level: `save()` refuses to update an existing row and
`delete()` refuses always, and the queryset's `update()` / `delete()` refuse too, so no ORM
path (services, admin, shell) changes history. A database-level guard (a trigger or REVOKE
UPDATE, DELETE for the web role) is left to the deployment: the test database's role owns
the tables, so it would not hold there anyway (docs/console.md, "Audit log").
Deleting a project or a user does not delete its events: the foreign keys are SET_NULL and
the event keeps the label it was written with.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.db import models

from labelling.models import Project


class AppendOnly(Exception):
    """An audit event was about to be changed or deleted."""


class AuditQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnly("audit events are append-only: they are never updated")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnly("audit events are append-only: they are never deleted")

    # `_raw_delete` is what a cascade from a deleted row would use; the foreign keys are
    # SET_NULL, so nothing cascades here, and a bulk path is refused too.
    def _raw_delete(self, using: Any) -> int:
        raise AppendOnly("audit events are append-only: they are never deleted")


class AuditEvent(models.Model):
    """`action` is a dotted name (`project.settings_changed`, `model.activated`, …);
    `details` holds what changed (`{"field": {"before": …, "after": …}}`) or the facts of
    the action. `actor` is null for the system (a worker, the beat, a command)."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_events",
    )
    # The actor's username when the event was written (kept if the user is deleted).
    actor_label = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=80, db_index=True)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    project_label = models.CharField(max_length=100, blank=True)
    target_type = models.CharField(max_length=80, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    objects: ClassVar[AuditQuerySet] = AuditQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["project", "-created_at"]),
            models.Index(fields=["action", "-created_at"]),
        ]

    def __str__(self) -> str:
        who = self.actor_label or "system"
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {who} {self.action} {self.target_label}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None or kwargs.get("force_update"):
            raise AppendOnly("audit events are append-only: they are never updated")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnly("audit events are append-only: they are never deleted")
