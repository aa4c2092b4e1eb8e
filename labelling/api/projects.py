"""Projects: /api/projects/ (list, create, read, settings, delete), switching a
project's taxonomy version (POST …/<slug>/taxonomy/) and starting an import
(POST …/<slug>/imports/; staging is in labelling/api/imports.py).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from labelling import serializers as s
from labelling.api.common import FILTER_BACKENDS
from labelling.api.imports import stage_batch
from labelling.models import Membership, Project, Role, TaxonomyVersion
from labelling.scoping import require_role, signed_in
from labelling.services import access, projects, storage, taxonomy
from labelling.tasks import dispatch_batch


def _roles_of(user: access.AnyUser) -> dict[int, str]:
    if not user.is_authenticated:
        return {}
    if user.is_superuser:
        return dict.fromkeys(Project.objects.values_list("pk", flat=True), Role.ADMIN.value)
    return dict(Membership.objects.filter(user=user).values_list("project_id", "role"))


class IsStaffToCreate(permissions.BasePermission):
    message = "Only staff can create projects."

    def has_permission(self, request: Request, view) -> bool:
        return view.action != "create" or bool(request.user and request.user.is_staff)


class ProjectViewSet(viewsets.ModelViewSet):
    """Projects the caller is a member of. Annotators see the labelling subset of a
    project's fields; settings are changed by its admins (PATCH takes every setting shown,
    and refuses unknown or read-only fields)."""

    serializer_class = s.ProjectSerializer
    lookup_field = "slug"
    permission_classes = [permissions.IsAuthenticated, IsStaffToCreate]
    filter_backends = FILTER_BACKENDS
    filterset_fields = ["is_active"]
    ordering_fields = ["name", "created_at"]
    project_roles = {
        "retrieve": Role.ANNOTATOR,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
        "taxonomy": Role.ADMIN,
        "imports": Role.ML_ENGINEER,
    }

    def get_queryset(self) -> QuerySet[Project]:
        return (
            access.projects_for(self.request.user)
            .select_related("taxonomy_version__taxonomy")
            .distinct()
        )

    def get_object(self) -> Project:
        project = super().get_object()
        minimum = self.project_roles.get(self.action)
        if minimum is not None:
            require_role(self.request.user, project, minimum, what="This operation")
        return project

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        context["roles"] = _roles_of(self.request.user)
        return context

    def perform_create(self, serializer: BaseSerializer[Project]) -> None:
        project = projects.create_project(
            serializer.validated_data, creator=signed_in(self.request.user)
        )
        serializer.instance = project
        # The response shows the caller's role in the new project (the roles dict is the one
        # get_serializer_context put in this serializer's context).
        serializer.context["roles"][project.pk] = Role.ADMIN.value

    def perform_update(self, serializer: BaseSerializer[Project]) -> None:
        project = serializer.instance
        assert project is not None  # UpdateModelMixin built the serializer on get_object()
        try:
            projects.update_project(project, dict(serializer.validated_data))
        except projects.SettingsRejected as exc:
            raise ValidationError({"detail": str(exc)}) from exc

    def perform_destroy(self, instance: Project) -> None:

        storage.delete_project(instance)

    @extend_schema(request=s.AssignTaxonomySerializer, responses=s.ProjectSerializer)
    @action(detail=True, methods=["post"])
    def taxonomy(self, request: Request, slug: str | None = None) -> Response:
        """Switch the project to a taxonomy version, named by slug and version number (admin).

        Only a preset or the project's own wheel, and only a version descending from every
        version the project's labels were made on."""
        project = self.get_object()
        body = s.AssignTaxonomySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        wanted = body.validated_data
        version = (
            TaxonomyVersion.objects.filter(
                taxonomy__in=taxonomy.visible_to(request.user),
                taxonomy__slug=wanted["taxonomy"],
                number=wanted["version"],
            )
            .select_related("taxonomy")
            .first()
        )
        if version is None:
            raise ValidationError(
                {"version": [f"No version {wanted['version']} of {wanted['taxonomy']}."]}
            )
        try:
            taxonomy.assign_to_project(project, version)
        except taxonomy.MappingError as exc:
            raise ValidationError({"version": exc.problems}) from exc
        return Response(self.get_serializer(project).data)

    @extend_schema(request=s.UploadSerializer, responses={202: s.ImportBatchSerializer})
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser, FormParser, JSONParser])
    def imports(self, request: Request, slug: str | None = None) -> Response:
        """Upload audio files (or archives), or name a URL to import from (ML engineer).

        Files are staged and processed by workers (archives are expanded there); poll the
        returned batch for the outcome of every file. 503 when the task queue is down: the
        batch is saved and is sent as soon as the queue is back.
        """
        project = self.get_object()
        body = s.UploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        batch = stage_batch(project, body.validated_data, signed_in(request.user))
        dispatch_batch(batch)
        return Response(s.ImportBatchSerializer(batch).data, status=status.HTTP_202_ACCEPTED)
