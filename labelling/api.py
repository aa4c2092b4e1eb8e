"""REST API under /api/. Each endpoint validates with a serializer and calls one service.

Object-level permission is by project membership: querysets are narrowed to the user's
projects, so another project's objects are 404, and writes check the member's role.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import django_filters
from django.db.models import Exists, OuterRef, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from labelling import serializers as s
from labelling.audio_response import audio_response
from labelling.filters import StrictFilterBackend
from labelling.manifest import ManifestError
from labelling.models import (
    Annotation,
    Clip,
    ImportBatch,
    ImportItem,
    Membership,
    Project,
    Role,
    Taxonomy,
    TaxonomyVersion,
)
from labelling.services import access, annotations, ingest, queue, taxonomy
from labelling.tasks import dispatch_batch
from labelling.taxonomy_schema import TaxonomyFormatError, parse_document

FILTER_BACKENDS = [StrictFilterBackend, OrderingFilter]


def _require(user, project: Project, minimum: Role) -> None:
    if not access.has_role(user, project, minimum):
        raise PermissionDenied(f"This needs the {Role(minimum).label} role in {project.slug}.")


def _project(request: Request, slug: str) -> Project:
    return get_object_or_404(access.projects_for(request.user), slug=slug)


# --- Projects ---------------------------------------------------------------------------


class IsStaffToCreate(permissions.BasePermission):
    message = "Only staff can create projects."

    def has_permission(self, request: Request, view) -> bool:
        return view.action != "create" or bool(request.user and request.user.is_staff)


class ProjectViewSet(viewsets.ModelViewSet):
    serializer_class = s.ProjectSerializer
    lookup_field = "slug"
    permission_classes = [permissions.IsAuthenticated, IsStaffToCreate]
    filter_backends = FILTER_BACKENDS
    filterset_fields = ["is_active"]
    ordering_fields = ["name", "created_at"]

    def get_queryset(self) -> QuerySet[Project]:
        return (
            access.projects_for(self.request.user)
            .select_related("taxonomy_version__taxonomy")
            .distinct()
        )

    def get_serializer_context(self) -> dict:
        context = super().get_serializer_context()
        user = self.request.user
        if user.is_authenticated:
            roles = dict(Membership.objects.filter(user=user).values_list("project_id", "role"))
            context["roles"] = roles
        return context

    def perform_create(self, serializer: s.ProjectSerializer) -> None:
        project = serializer.save()
        Membership.objects.create(user=self.request.user, project=project, role=Role.ADMIN)
        serializer.context.setdefault("roles", {})[project.pk] = Role.ADMIN.value

    def perform_update(self, serializer: s.ProjectSerializer) -> None:
        _require(self.request.user, serializer.instance, Role.ADMIN)
        serializer.save()

    def perform_destroy(self, instance: Project) -> None:
        _require(self.request.user, instance, Role.ADMIN)
        instance.delete()

    @extend_schema(request=s.AssignTaxonomySerializer, responses=s.ProjectSerializer)
    @action(detail=True, methods=["post"])
    def taxonomy(self, request: Request, slug: str | None = None) -> Response:
        """Switch the project to a taxonomy version (admin)."""
        project = self.get_object()
        _require(request.user, project, Role.ADMIN)
        body = s.AssignTaxonomySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            taxonomy.assign_to_project(project, body.validated_data["version"])
        except taxonomy.MappingError as exc:
            raise ValidationError({"version": exc.problems}) from exc
        return Response(self.get_serializer(project).data)

    @extend_schema(request=s.UploadSerializer, responses={202: s.ImportBatchSerializer})
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser, FormParser, JSONParser])
    def imports(self, request: Request, slug: str | None = None) -> Response:
        """Upload audio files (or archives), or name a URL to import from (ML engineer).

        Files are staged and processed by workers; poll the returned batch for the outcome
        of every file.
        """
        project = self.get_object()
        _require(request.user, project, Role.ML_ENGINEER)
        body = s.UploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if data.get("url"):
            from django.conf import settings

            if not settings.EMOLOOP_URL_IMPORT_ENABLED:
                raise ValidationError({"url": "URL import is disabled on this server."})
            from labelling.urlfetch import UnsafeURL, check_url

            try:
                check_url(data["url"])
            except UnsafeURL as exc:
                raise ValidationError({"url": str(exc)}) from exc
            batch = ingest.stage_url(
                project, data["url"], segment=data["segment"], user=request.user
            )
        else:
            batch = self._stage_uploads(project, data, request)
        dispatch_batch(batch)
        return Response(s.ImportBatchSerializer(batch).data, status=status.HTTP_202_ACCEPTED)

    @staticmethod
    def _stage_uploads(project: Project, data: dict, request: Request) -> ImportBatch:
        manifest = data.get("manifest")
        if manifest is None:
            return ingest.stage_uploads(
                project, data["files"], segment=data["segment"], user=request.user
            )
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
                    user=request.user,
                )
            except ManifestError as exc:
                raise ValidationError({"manifest": str(exc)}) from exc


class MembershipViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Members of one project; admins manage them, members can see who is in the team."""

    serializer_class = s.MembershipSerializer
    filter_backends = FILTER_BACKENDS
    filterset_fields = ["role"]
    ordering_fields = ["created_at"]

    def project(self) -> Project:
        return _project(self.request, self.kwargs["project_slug"])

    def get_queryset(self) -> QuerySet[Membership]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no project
            return Membership.objects.none()
        return Membership.objects.filter(project=self.project()).select_related("user")

    def perform_create(self, serializer: s.MembershipSerializer) -> None:
        project = self.project()
        _require(self.request.user, project, Role.ADMIN)
        if Membership.objects.filter(
            project=project, user=serializer.validated_data["user"]
        ).exists():
            raise ValidationError({"username": "Already a member; change the role instead."})
        serializer.save(project=project)

    def perform_update(self, serializer: s.MembershipSerializer) -> None:
        _require(self.request.user, self.project(), Role.ADMIN)
        serializer.save()

    def perform_destroy(self, instance: Membership) -> None:
        _require(self.request.user, instance.project, Role.ADMIN)
        instance.delete()


# --- Taxonomies -------------------------------------------------------------------------


class TaxonomyViewSet(viewsets.ReadOnlyModelViewSet):
    """Feelings wheels. Reading is open to every signed-in user (they hold no project data);
    importing and versioning needs the ML engineer role in some project, or staff."""

    serializer_class = s.TaxonomySerializer
    lookup_field = "slug"
    queryset = Taxonomy.objects.prefetch_related("versions")
    filter_backends = FILTER_BACKENDS
    filterset_fields = ["slug"]
    ordering_fields = ["name", "created_at"]

    def _require_editor(self) -> None:
        user = self.request.user
        if not (user.is_staff or access.projects_where(user, Role.ML_ENGINEER).exists()):
            raise PermissionDenied("Editing taxonomies needs the ML engineer role or staff.")

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: s.TaxonomyVersionSerializer})
    @action(detail=False, methods=["post"], url_path="import")
    def import_document(self, request: Request) -> Response:
        """Create a taxonomy from a document in the emoloop-taxonomy/1 JSON format."""
        self._require_editor()
        try:
            version = taxonomy.parse_and_import(request.data, user=request.user)
        except TaxonomyFormatError as exc:
            raise ValidationError({"document": exc.problems}) from exc
        except ValueError as exc:
            raise ValidationError({"document": [str(exc)]}) from exc
        return Response(_version_data(version), status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.TaxonomyVersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, slug: str | None = None) -> Response:
        tax = self.get_object()
        return Response([_version_data(v) for v in tax.versions.order_by("number")])

    @extend_schema(
        request=s.NewVersionSerializer,
        responses={201: s.TaxonomyVersionSerializer},
        description="Create the next version, with an explicit mapping of every old node.",
    )
    @versions.mapping.post
    def create_version(self, request: Request, slug: str | None = None) -> Response:
        self._require_editor()
        tax = self.get_object()
        body = s.NewVersionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        base = get_object_or_404(tax.versions, number=data["based_on"])
        try:
            document = parse_document(data["document"])
            version = taxonomy.create_next_version(
                base, document, data["mapping"], note=data.get("note", ""), user=request.user
            )
        except TaxonomyFormatError as exc:
            raise ValidationError({"document": exc.problems}) from exc
        except taxonomy.MappingError as exc:
            raise ValidationError({"mapping": exc.problems}) from exc
        return Response(_version_data(version), status=status.HTTP_201_CREATED)

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses=OpenApiTypes.OBJECT,
        parameters=[OpenApiParameter("number", int, OpenApiParameter.PATH)],
        description="GET exports the version as a JSON document; PUT replaces the content of "
        "a version that has no annotations yet (a used version answers 409).",
    )
    @action(detail=True, methods=["get", "put"], url_path=r"versions/(?P<number>\d+)")
    def version(self, request: Request, slug: str | None = None, number: str = "") -> Response:
        tax = self.get_object()
        version = get_object_or_404(tax.versions, number=int(number))
        if request.method == "PUT":
            self._require_editor()
            try:
                taxonomy.replace_version_content(version, parse_document(request.data))
            except TaxonomyFormatError as exc:
                raise ValidationError({"document": exc.problems}) from exc
            except taxonomy.TaxonomyLocked as exc:
                return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(taxonomy.export_version(version))


def _version_data(version: TaxonomyVersion) -> dict:
    version.node_count = version.nodes.count()
    version.locked = taxonomy.version_is_locked(version)
    return s.TaxonomyVersionSerializer(version).data


# --- Clips ------------------------------------------------------------------------------


class ClipFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug")
    batch = django_filters.NumberFilter(field_name="batch_id")
    recording = django_filters.NumberFilter(field_name="recording_id")
    unlabelled = django_filters.BooleanFilter(method="filter_unlabelled", label="No annotation yet")

    class Meta:
        model = Clip
        fields = ["speaker_id", "gender", "age_band", "language", "dialect", "channel", "source"]

    def filter_unlabelled(self, queryset: QuerySet[Clip], name: str, value: bool) -> QuerySet[Clip]:
        labelled = Annotation.objects.filter(clip=OuterRef("pk"), is_current=True)
        return queryset.filter(~Exists(labelled)) if value else queryset.filter(Exists(labelled))


class PassthroughRenderer(BaseRenderer):
    """Lets audio responses through content negotiation whatever the Accept header."""

    media_type = "*/*"
    format = "audio"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class ClipViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = s.ClipSerializer
    filter_backends = FILTER_BACKENDS
    filterset_class = ClipFilter
    ordering_fields = ["created_at", "duration_s", "speaker_id", "id"]

    def get_queryset(self) -> QuerySet[Clip]:
        return (
            Clip.objects.filter(project__in=access.projects_for(self.request.user))
            .select_related("project")
            .defer("peaks")
        )

    def perform_update(self, serializer: s.ClipSerializer) -> None:
        _require(self.request.user, serializer.instance.project, Role.ML_ENGINEER)
        serializer.save()

    @extend_schema(
        parameters=[OpenApiParameter("variant", str, enum=["canonical", "original"])],
        responses={(200, "audio/*"): OpenApiTypes.BINARY},
    )
    @action(detail=True, methods=["get"], renderer_classes=[PassthroughRenderer])
    def audio(self, request: Request, pk: str | None = None):
        """The clip's audio (canonical 16 kHz WAV by default), with Range support."""
        clip = self.get_object()
        variant = request.query_params.get("variant", "canonical")
        if variant == "original":
            extension, content_type = ingest.FORMAT_FILES.get(
                clip.original_format, ("bin", "application/octet-stream")
            )
            return audio_response(
                request, clip.original.name, content_type, f"clip-{clip.pk}.{extension}"
            )
        if variant != "canonical":
            raise ValidationError({"variant": "canonical or original"})
        return audio_response(request, clip.canonical.name, "audio/wav", f"clip-{clip.pk}.wav")

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def peaks(self, request: Request, pk: str | None = None) -> Response:
        """Waveform outline (max |sample| per 10 ms of the canonical audio)."""
        clip = get_object_or_404(
            Clip.objects.filter(project__in=access.projects_for(request.user)), pk=pk
        )
        return Response(
            {
                "clip": clip.pk,
                "points_per_second": 100,
                "duration_s": clip.duration_s,
                "peaks": clip.peaks,
            }
        )

    # Narrow the extra query params the strict filter accepts for the audio action.
    extra_query_params = ("variant",)


# --- Imports ----------------------------------------------------------------------------


class ImportBatchViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.ImportBatchSerializer
    filter_backends = FILTER_BACKENDS
    ordering_fields = ["created_at"]

    class Filter(django_filters.FilterSet):
        project = django_filters.CharFilter(field_name="project__slug")

        class Meta:
            model = ImportBatch
            fields = ["status", "source"]

    filterset_class = Filter

    def get_queryset(self) -> QuerySet[ImportBatch]:
        return ImportBatch.objects.filter(
            project__in=access.projects_where(self.request.user, Role.ML_ENGINEER)
        ).select_related("project", "created_by")

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=list(ImportItem.Status.values))],
        responses=s.ImportItemSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def items(self, request: Request, pk: str | None = None) -> Response:
        """Every file of the batch with its outcome and reason (paginated)."""
        batch = self.get_object()
        items = batch.items.all()
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in ImportItem.Status.values:
                raise ValidationError({"status": f"one of {', '.join(ImportItem.Status.values)}"})
            items = items.filter(status=wanted)
        page = self.paginate_queryset(items)
        return self.get_paginated_response(s.ImportItemSerializer(page, many=True).data)


# --- Annotations ------------------------------------------------------------------------


class AnnotationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Annotators see their own annotations; reviewers and above see the project's."""

    serializer_class = s.AnnotationSerializer
    filter_backends = FILTER_BACKENDS
    ordering_fields = ["created_at", "id"]

    class Filter(django_filters.FilterSet):
        project = django_filters.CharFilter(field_name="clip__project__slug")
        node = django_filters.CharFilter(field_name="node__key")
        annotator = django_filters.CharFilter(field_name="annotator__username")

        class Meta:
            model = Annotation
            fields = ["clip", "is_current", "skip_reason", "unsure"]

    filterset_class = Filter

    def get_queryset(self) -> QuerySet[Annotation]:
        if getattr(self, "swagger_fake_view", False):
            return Annotation.objects.none()
        user = self.request.user
        reviewed = access.projects_where(user, Role.REVIEWER)
        own = Annotation.objects.filter(annotator=user, clip__project__in=access.projects_for(user))
        return (
            (Annotation.objects.filter(clip__project__in=reviewed) | own)
            .select_related("annotator", "node")
            .distinct()
        )

    @extend_schema(request=s.AnnotationCreateSerializer, responses={201: s.AnnotationSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        body = s.AnnotationCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        clip = get_object_or_404(
            Clip.objects.filter(project__in=access.projects_for(request.user)).select_related(
                "project"
            ),
            pk=data["clip"],
        )
        try:
            annotation = annotations.record_annotation(
                clip=clip,
                annotator=request.user,
                node_key=data.get("node", ""),
                skip_reason=data.get("skip_reason", ""),
                intensity=data.get("intensity", ""),
                unsure=data["unsure"],
                time_spent_ms=data["time_spent_ms"],
                suggestion_shown=data["suggestion_shown"],
            )
        except annotations.AnnotationRejected as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        queue.recount_clip(clip)
        return Response(s.AnnotationSerializer(annotation).data, status=status.HTTP_201_CREATED)


__all__ = [
    "AnnotationViewSet",
    "ClipViewSet",
    "ImportBatchViewSet",
    "MembershipViewSet",
    "ProjectViewSet",
    "TaxonomyViewSet",
]
