"""The audit log in the Django admin: read-only for everyone (append-only, audit.models)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.models import AuditEvent
from audit.services import events_for
from emoloop.admin_base import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_label", "action", "project_label", "target_label"]
    list_filter = ["action"]
    search_fields = ["actor_label", "action", "project_label", "target_label"]
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        # Staff who are not superusers see what the audit API shows them.
        return events_for(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)
