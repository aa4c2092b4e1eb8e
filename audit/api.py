"""GET /api/audit/: the audit log, newest first, for those who may read it (audit.services).

Instance admins read every event; a project's admins the events of their projects; any
other signed-in user gets 403 (the log's existence is not a secret, its rows are).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.exceptions import PermissionDenied, ValidationError

from audit.models import AuditEvent
from audit.serializers import AuditEventSerializer, AuditFilterSerializer
from audit.services import events_for, filtered, may_read


@extend_schema(
    parameters=[
        OpenApiParameter("project", str, description="project slug"),
        OpenApiParameter("actor", str, description="username"),
        OpenApiParameter("action", str, description="action, or a prefix ending in '.'"),
    ]
)
class AuditEventList(generics.ListAPIView):
    serializer_class = AuditEventSerializer
    # The filters are validated here (unknown parameters answer 400), not by the project's
    # default filter backend, which is for model fields.
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[AuditEvent]:
        if getattr(self, "swagger_fake_view", False):
            return AuditEvent.objects.none()
        user = self.request.user
        if not may_read(user):
            raise PermissionDenied("The audit log is for instance and project admins.")
        params = AuditFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        unknown = set(self.request.query_params) - set(AuditFilterSerializer().fields)
        if unknown:
            raise ValidationError({name: ["Unknown parameter."] for name in sorted(unknown)})
        data = params.validated_data
        return filtered(
            events_for(user),
            project=data.get("project", ""),
            actor=data.get("actor", ""),
            action=data.get("action", ""),
        )
