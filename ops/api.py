"""/api/ops/…: the operations picture for instance admins (active staff or superusers).

Signed-in users who are not instance admins get 403; anonymous callers 401/403 as on every
API endpoint (DRF's IsAuthenticated). Objects of this room belong to no project, so there
is no 404-for-non-members rule to keep here.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import is_instance_admin
from emoloop.api_base import Conflict
from emoloop.dispatch import publish
from ops.models import TaskFailure
from ops.serializers import TaskFailureSerializer, overview_payload
from ops.services import failures
from ops.tasks import measure_storage


class IsInstanceAdmin(BasePermission):
    message = "Operations are for instance admins (staff)."

    def has_permission(self, request: Request, view: Any) -> bool:
        # The same rule as the audit log's (audit.services.is_instance_admin).
        return bool(request.user and is_instance_admin(request.user))


ADMIN_ONLY = [IsAuthenticated, IsInstanceAdmin]


class OverviewView(APIView):
    permission_classes = ADMIN_ONLY

    @extend_schema(responses=inline_serializer("OpsOverview", {"checks": serializers.DictField()}))
    def get(self, request: Request) -> Response:
        return Response(overview_payload())


class FailureListView(APIView):
    permission_classes = ADMIN_ONLY

    @extend_schema(responses=TaskFailureSerializer(many=True))
    def get(self, request: Request) -> Response:
        rows = TaskFailure.objects.select_related("retried_by")[:200]
        return Response(TaskFailureSerializer(rows, many=True).data)


class FailureRetryView(APIView):
    permission_classes = ADMIN_ONLY

    @extend_schema(request=None, responses=TaskFailureSerializer)
    def post(self, request: Request, pk: int) -> Response:
        if not TaskFailure.objects.filter(pk=pk).exists():
            return Response(
                {"detail": "No such failure.", "code": "not_found"},
                status=status.HTTP_404_NOT_FOUND,
            )
        try:
            failure = failures.retry(pk, request.user)  # type: ignore[arg-type]
        except failures.AlreadyRetried as exc:
            raise Conflict(str(exc), code="already_retried") from exc
        except failures.NotRetryable as exc:
            return Response(
                {"detail": str(exc), "code": "not_retryable"}, status=status.HTTP_400_BAD_REQUEST
            )
        return Response(TaskFailureSerializer(failure).data, status=status.HTTP_202_ACCEPTED)


class StorageMeasureView(APIView):
    permission_classes = ADMIN_ONLY

    @extend_schema(request=None, responses={202: None})
    def post(self, request: Request) -> Response:
        publish(measure_storage)  # BrokerUnavailable → 503 broker_unavailable
        return Response({"detail": "Measuring storage."}, status=status.HTTP_202_ACCEPTED)
