"""Imports: /api/imports/ (batches, read-only), …/<id>/items/ (the outcome of every
file), and the staging of an upload or URL import that POST
/api/projects/<slug>/imports/ (labelling/api/projects.py) starts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import django_filters
from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from labelling import serializers as s
from labelling.api.common import FILTER_BACKENDS, INT_LOOKUP
from labelling.filters import StrictFilterSet
from labelling.manifest import ManifestError
from labelling.models import ImportBatch, ImportItem, Project, Role
from labelling.scoping import ProjectObjectsMixin
from labelling.services import ingest
from labelling.urlfetch import UnsafeURL, check_url


def stage_batch(project: Project, data: dict[str, Any], user: User) -> ImportBatch:
    """Stage the import a validated UploadSerializer names: a URL (when URL import is
    enabled and the URL is safe to fetch) or uploaded files with an optional manifest.
    Input errors are 400s on the field at fault; dispatching is the caller's."""
    if data.get("url"):
        if not settings.EMOLOOP_URL_IMPORT_ENABLED:
            raise ValidationError({"url": "URL import is disabled on this server."})
        try:
            check_url(data["url"])
        except UnsafeURL as exc:
            raise ValidationError({"url": str(exc)}) from exc
        return ingest.stage_url(project, data["url"], segment=data["segment"], user=user)
    manifest = data.get("manifest")
    if manifest is None:
        return ingest.stage_uploads(project, data["files"], segment=data["segment"], user=user)
    suffix = Path(manifest.name or "").suffix.lower()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"manifest{suffix}"
        path.write_bytes(manifest.read())
        try:
            return ingest.stage_uploads(
                project,
                data["files"],
                manifest_path=path,
                segment=data["segment"],
                user=user,
            )
        except ManifestError as exc:
            raise ValidationError({"manifest": str(exc)}) from exc


class ImportBatchFilter(StrictFilterSet):
    project = django_filters.CharFilter(field_name="project__slug")

    class Meta:
        model = ImportBatch
        fields = ["status", "source"]


class ImportBatchViewSet(ProjectObjectsMixin, viewsets.ReadOnlyModelViewSet):
    """Import batches and the outcome of every file (ML engineer)."""

    serializer_class = s.ImportBatchSerializer
    filter_backends = FILTER_BACKENDS
    ordering_fields = ["created_at"]
    filterset_class = ImportBatchFilter
    lookup_value_regex = INT_LOOKUP
    project_roles = Role.ML_ENGINEER
    extra_query_params = ("status",)

    def get_queryset(self) -> QuerySet[ImportBatch]:
        return self.scoped(ImportBatch.objects.select_related("project", "created_by"))

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=list(ImportItem.Status.values))],
        responses=s.ImportItemSerializer(many=True),
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def items(self, request: Request, pk: str | None = None) -> Response:
        """Every file of the batch with its outcome and reason (paginated)."""
        batch = self.get_object()
        unknown = sorted(set(request.query_params) - {"status", "page", "page_size"})
        if unknown:
            raise ValidationError({"detail": f"Unknown query parameter(s): {', '.join(unknown)}."})
        items = batch.items.all()
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in ImportItem.Status.values:
                raise ValidationError({"status": f"one of {', '.join(ImportItem.Status.values)}"})
            items = items.filter(status=wanted)
        page = self.paginate_queryset(items)
        return self.get_paginated_response(s.ImportItemSerializer(page, many=True).data)
