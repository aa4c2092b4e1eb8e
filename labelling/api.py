"""REST API under /api/. Each endpoint validates with a serializer and calls one service.

Access goes through the one project-scoped layer (labelling/scoping.py; the contract is
docs/security.md): non-members get 404, members whose role is too low 403, and every list
holds only objects of projects where the caller has the role its action needs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import django_filters
from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from emoloop.api_base import Conflict
from labelling import serializers as s
from labelling.audio_response import audio_response
from labelling.filters import StrictBooleanFilter, StrictFilterBackend, StrictFilterSet
from labelling.manifest import ManifestError
from labelling.models import (
    Annotation,
    Clip,
    ImportBatch,
    ImportItem,
    Invitation,
    Membership,
    Project,
    Role,
    Taxonomy,
    TaxonomyVersion,
)
from labelling.scoping import (
    ProjectObjectsMixin,
    ProjectScopedMixin,
    RoleRequired,
    project_by_slug,
    require_role,
    signed_in,
)
from labelling.services import access, ingest, invitations, projects, storage, taxonomy
from labelling.tasks import dispatch_batch
from labelling.taxonomy_schema import TaxonomyFormatError, parse_document

FILTER_BACKENDS = [StrictFilterBackend, OrderingFilter]
# Object ids in URLs are integers: anything else is a 404 from the router, not a 500.
INT_LOOKUP = r"\d+"


def _roles_of(user: access.AnyUser) -> dict[int, str]:
    if not user.is_authenticated:
        return {}
    if user.is_superuser:
        return dict.fromkeys(Project.objects.values_list("pk", flat=True), Role.ADMIN.value)
    return dict(Membership.objects.filter(user=user).values_list("project_id", "role"))


# --- Projects ---------------------------------------------------------------------------


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
        data = body.validated_data
        if data.get("url"):
            if not settings.EMOLOOP_URL_IMPORT_ENABLED:
                raise ValidationError({"url": "URL import is disabled on this server."})
            from labelling.urlfetch import UnsafeURL, check_url

            try:
                check_url(data["url"])
            except UnsafeURL as exc:
                raise ValidationError({"url": str(exc)}) from exc
            batch = ingest.stage_url(
                project, data["url"], segment=data["segment"], user=signed_in(request.user)
            )
        else:
            batch = self._stage_uploads(project, data, request)
        dispatch_batch(batch)
        return Response(s.ImportBatchSerializer(batch).data, status=status.HTTP_202_ACCEPTED)

    @staticmethod
    def _stage_uploads(project: Project, data: dict[str, Any], request: Request) -> ImportBatch:
        user = signed_in(request.user)
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


class MembershipViewSet(
    ProjectScopedMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Members of one project. Reviewers and above see the team; admins change roles and
    remove members; adding an existing account directly is for staff (others invite)."""

    filter_backends = FILTER_BACKENDS
    filterset_fields = ["role"]
    ordering_fields = ["created_at"]
    project_url_kwarg = "project_slug"
    project_roles = {"list": Role.REVIEWER, "*": Role.ADMIN}
    lookup_value_regex = INT_LOOKUP

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return s.MembershipRoleSerializer
        return s.MembershipSerializer

    def get_queryset(self) -> QuerySet[Membership]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no project
            return Membership.objects.none()
        return Membership.objects.filter(project=self.project).select_related("user")

    def perform_create(self, serializer: BaseSerializer[Membership]) -> None:
        user = self.request.user
        if not (user.is_staff or user.is_superuser):
            raise RoleRequired(
                "Project admins add people by invitation (POST …/invitations/); adding an "
                "existing account directly is for staff.",
                code="invite_instead",
            )
        if Membership.objects.filter(
            project=self.project, user=serializer.validated_data["user"]
        ).exists():
            raise ValidationError({"username": "Already a member; change the role instead."})
        serializer.save(project=self.project)

    def _keeps_an_admin(self, membership: Membership, new_role: str | None) -> None:
        if membership.role != Role.ADMIN or new_role == Role.ADMIN:
            return
        admins = Membership.objects.filter(project=self.project, role=Role.ADMIN)
        if not admins.exclude(pk=membership.pk).exists():
            raise Conflict("A project keeps at least one admin.", code="last_admin")

    def perform_update(self, serializer: BaseSerializer[Membership]) -> None:
        membership = serializer.instance
        assert membership is not None  # UpdateModelMixin built the serializer on get_object()
        self._keeps_an_admin(membership, serializer.validated_data.get("role"))
        serializer.save()

    def perform_destroy(self, instance: Membership) -> None:
        self._keeps_an_admin(instance, None)
        instance.delete()


class InvitationViewSet(
    ProjectScopedMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Invitations to join one project (admin). The token is in the creation response only;
    DELETE revokes an unused invitation."""

    serializer_class = s.InvitationSerializer
    filter_backends = FILTER_BACKENDS
    ordering_fields = ["created_at"]
    project_url_kwarg = "project_slug"
    project_roles = Role.ADMIN
    lookup_value_regex = INT_LOOKUP

    def get_queryset(self) -> QuerySet[Invitation]:
        if getattr(self, "swagger_fake_view", False):
            return Invitation.objects.none()
        return Invitation.objects.filter(project=self.project).select_related(
            "created_by", "accepted_by"
        )

    @extend_schema(request=s.InvitationSerializer, responses={201: s.CreatedInvitationSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        body = s.InvitationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            invitation, token = invitations.create(
                self.project,
                role=data["role"],
                by=signed_in(request.user),
                by_role=self.role,
                note=data.get("note", ""),
                days=data["days"],
            )
        except invitations.InvitationRefused as exc:
            raise ValidationError({"role": [str(exc)]}) from exc
        created = s.CreatedInvitationSerializer(
            invitation,
            context={
                "token": token,
                "accept_url": request.build_absolute_uri(f"/invitations/{token}/"),
            },
        )
        return Response(created.data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Invitation) -> None:
        invitations.revoke(instance)


class AcceptInvitationView(viewsets.ViewSet):
    """Redeem an invitation token: the caller joins the project with its role."""

    @extend_schema(request=s.AcceptInvitationSerializer, responses={200: s.MembershipSerializer})
    def create(self, request: Request) -> Response:
        body = s.AcceptInvitationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            membership = invitations.accept(body.validated_data["token"], signed_in(request.user))
        except invitations.InvitationRefused as exc:
            raise ValidationError({"token": [str(exc)]}) from exc
        data = s.MembershipSerializer(membership).data
        data["project"] = membership.project.slug
        return Response(data)


# --- Taxonomies -------------------------------------------------------------------------


class TaxonomyViewSet(viewsets.ReadOnlyModelViewSet):
    """Feelings wheels: the instance-wide presets and the wheels of the caller's projects.

    A wheel belongs to a project (its ML engineers import and version it) or to the instance
    (a preset: staff only). A version that a project uses, that has labels, gold clips or a
    successor is immutable: changes make the next version, with a mapping (409 otherwise).
    """

    serializer_class = s.TaxonomySerializer
    lookup_field = "slug"
    filter_backends = FILTER_BACKENDS
    filterset_fields = ["slug"]
    ordering_fields = ["name", "created_at"]
    extra_query_params = ("project",)

    def get_queryset(self) -> QuerySet[Taxonomy]:
        return taxonomy.visible_to(self.request.user).prefetch_related("versions")

    def _require_editor(self, tax: Taxonomy) -> None:
        if not taxonomy.may_edit(self.request.user, tax):
            what = (
                "Changing an instance-wide preset needs staff."
                if tax.owner_project_id is None
                else "Changing this wheel needs the ML engineer role in its project."
            )
            raise RoleRequired(what)

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={201: s.TaxonomyVersionSerializer},
        parameters=[
            OpenApiParameter(
                "project",
                str,
                description="Slug of the project that will own the wheel (ML engineer "
                "there). Without it the wheel is an instance-wide preset (staff only).",
            )
        ],
    )
    @action(detail=False, methods=["post"], url_path="import")
    def import_document(self, request: Request) -> Response:
        """Create a taxonomy from a document in the emoloop-taxonomy/1 JSON format."""
        user = signed_in(request.user)
        slug = request.query_params.get("project")
        owner = None
        if slug:
            owner, _role = project_by_slug(user, slug, Role.ML_ENGINEER, what="Importing a wheel")
        elif not (user.is_staff or user.is_superuser):
            raise RoleRequired(
                "Name the project that will own the wheel (?project=slug); instance-wide "
                "presets are for staff."
            )
        try:
            version = taxonomy.parse_and_import(request.data, user=user, owner_project=owner)
        except TaxonomyFormatError as exc:
            raise ValidationError({"document": exc.problems}) from exc
        except ValueError as exc:
            raise ValidationError({"document": [str(exc)]}) from exc
        return Response(s.TaxonomyVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.TaxonomyVersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, slug: str | None = None) -> Response:
        tax = self.get_object()
        page = self.paginate_queryset(tax.versions.order_by("number"))
        assert page is not None  # the API always paginates (REST_FRAMEWORK, emoloop.api_base)
        return self.get_paginated_response(s.TaxonomyVersionSerializer(page, many=True).data)

    @extend_schema(
        request=s.NewVersionSerializer,
        responses={201: s.TaxonomyVersionSerializer},
        description="Create the next version, with an explicit mapping of every old node.",
    )
    @versions.mapping.post
    def create_version(self, request: Request, slug: str | None = None) -> Response:
        tax = self.get_object()
        self._require_editor(tax)
        body = s.NewVersionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        base = tax.versions.filter(number=data["based_on"]).first()
        if base is None:
            raise ValidationError({"based_on": [f"{tax.slug} has no version {data['based_on']}."]})
        try:
            document = parse_document(data["document"])
            version = taxonomy.create_next_version(
                base,
                document,
                data["mapping"],
                note=data.get("note", ""),
                user=signed_in(request.user),
            )
        except TaxonomyFormatError as exc:
            raise ValidationError({"document": exc.problems}) from exc
        except taxonomy.MappingError as exc:
            raise ValidationError({"mapping": exc.problems}) from exc
        return Response(s.TaxonomyVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses=OpenApiTypes.OBJECT,
        parameters=[OpenApiParameter("number", int, OpenApiParameter.PATH)],
        description="GET exports the version as a JSON document; PUT replaces the content of "
        "a draft version (409 once a project uses it, or it has labels, gold clips or a "
        "successor).",
    )
    @action(detail=True, methods=["get", "put"], url_path=r"versions/(?P<number>\d+)")
    def version(self, request: Request, slug: str | None = None, number: str = "") -> Response:
        tax = self.get_object()
        version = get_object_or_404(tax.versions, number=int(number))
        if request.method == "PUT":
            self._require_editor(tax)
            try:
                taxonomy.replace_version_content(version, parse_document(request.data))
            except TaxonomyFormatError as exc:
                raise ValidationError({"document": exc.problems}) from exc
            except taxonomy.TaxonomyLocked as exc:
                raise Conflict(str(exc), code="version_locked") from exc
        return Response(taxonomy.export_version(version))


# --- Clips ------------------------------------------------------------------------------


class ClipFilter(StrictFilterSet):
    project = django_filters.CharFilter(field_name="project__slug")
    batch = django_filters.NumberFilter(field_name="batch_id")
    recording = django_filters.NumberFilter(field_name="recording_id")
    unlabelled = StrictBooleanFilter(method="filter_unlabelled", label="No annotation yet")

    class Meta:
        model = Clip
        fields = ["speaker_id", "gender", "age_band", "language", "dialect", "channel", "source"]

    def filter_unlabelled(self, queryset: QuerySet[Clip], name: str, value: bool) -> QuerySet[Clip]:
        labelled = Annotation.objects.filter(clip=OuterRef("pk"), is_current=True)
        return queryset.filter(~Exists(labelled)) if value else queryset.filter(Exists(labelled))


class PassthroughRenderer(BaseRenderer):
    """Lets audio responses through content negotiation whatever the Accept header; an
    error on the way (403, 404, 400) still goes out as the API's JSON error shape."""

    media_type = "*/*"
    format = "audio"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict | list):
            response = (renderer_context or {}).get("response")
            if response is not None:
                response["Content-Type"] = "application/json"
            return JSONRenderer().render(data)
        return data


class ClipViewSet(
    ProjectObjectsMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The pool: reviewers and above read it, ML engineers edit descriptive metadata,
    admins delete clips (their labels and their audio go with them). Annotators never list
    or read clips; they hear a clip once it is leased to them (audio and peaks only)."""

    serializer_class = s.ClipSerializer
    filter_backends = FILTER_BACKENDS
    filterset_class = ClipFilter
    ordering_fields = ["created_at", "duration_s", "speaker_id", "id"]
    lookup_value_regex = INT_LOOKUP
    project_roles = {
        "update": Role.ML_ENGINEER,
        "partial_update": Role.ML_ENGINEER,
        "destroy": Role.ADMIN,
        # Annotators pass here; the actions narrow it to clips leased to them.
        "audio": Role.ANNOTATOR,
        "peaks": Role.ANNOTATOR,
        "*": Role.REVIEWER,
    }
    # Narrow the extra query params the strict filter accepts for the audio action.
    extra_query_params = ("variant",)

    def get_queryset(self) -> QuerySet[Clip]:
        return self.scoped(Clip.objects.select_related("project").defer("peaks"))

    def perform_destroy(self, instance: Clip) -> None:

        storage.delete_clip(instance)

    def _audible(self, request: Request, clip: Clip, *, original: bool = False) -> None:
        """Reviewers hear any clip of their projects; annotators only a clip leased to them
        (or a segment of the same recording), and never the original upload (its tags may
        name the emotion)."""
        if access.has_role(request.user, clip.project, Role.REVIEWER):
            return
        if original:
            raise RoleRequired("The original upload needs the Reviewer role.")
        if not access.annotator_may_hear(signed_in(request.user), clip):
            raise RoleRequired("Annotators hear only the clips they are given to label.")

    @extend_schema(
        parameters=[OpenApiParameter("variant", str, enum=["canonical", "original"])],
        responses={(200, "audio/*"): OpenApiTypes.BINARY},
    )
    @action(detail=True, methods=["get"], renderer_classes=[PassthroughRenderer])
    def audio(self, request: Request, pk: str | None = None):
        """The clip's audio (canonical 16 kHz WAV by default), with Range support."""
        clip = self.get_object()
        variant = request.query_params.get("variant", "canonical")
        if variant not in ("canonical", "original"):
            raise ValidationError({"variant": "canonical or original"})
        self._audible(request, clip, original=variant == "original")
        if variant == "original":
            extension, content_type = ingest.FORMAT_FILES.get(
                clip.original_format, ("bin", "application/octet-stream")
            )
            return audio_response(
                request, clip.original.name, content_type, f"clip-{clip.pk}.{extension}"
            )
        return audio_response(request, clip.canonical.name, "audio/wav", f"clip-{clip.pk}.wav")

    @extend_schema(responses={200: s.PeaksSerializer})
    @action(detail=True, methods=["get"])
    def peaks(self, request: Request, pk: str | None = None) -> Response:
        """Waveform outline (max |sample| per 10 ms of the canonical audio)."""
        clip = self.get_object()
        self._audible(request, clip)
        peaks = Clip.objects.filter(pk=clip.pk).values_list("peaks", flat=True).first()
        return Response(
            {
                "clip": clip.pk,
                "points_per_second": 100,
                "duration_s": clip.duration_s,
                "peaks": peaks or [],
            }
        )


# --- Imports ----------------------------------------------------------------------------


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


# --- Annotations ------------------------------------------------------------------------


class AnnotationFilter(StrictFilterSet):
    project = django_filters.CharFilter(field_name="clip__project__slug")
    node = django_filters.CharFilter(field_name="node__key")
    annotator = django_filters.CharFilter(field_name="annotator__username")

    class Meta:
        model = Annotation
        fields = ["clip", "is_current", "skip_reason", "unsure"]


class AnnotationViewSet(viewsets.ReadOnlyModelViewSet):
    """Read-only: annotators see their own annotations, reviewers and above the project's.

    Labels are written only through the queue (POST /api/projects/<slug>/annotations/ with
    a lease), which holds the overlap, lease and idempotence rules.
    """

    serializer_class = s.AnnotationSerializer
    filter_backends = FILTER_BACKENDS
    ordering_fields = ["created_at", "id"]
    filterset_class = AnnotationFilter
    lookup_value_regex = INT_LOOKUP

    def get_queryset(self) -> QuerySet[Annotation]:
        if getattr(self, "swagger_fake_view", False):
            return Annotation.objects.none()
        user = self.request.user
        mine = access.projects_for(user)
        if self.action == "retrieve":  # one of a member project: 403 below if not theirs
            return Annotation.objects.filter(clip__project__in=mine).select_related(
                "annotator", "node", "clip__project"
            )
        if not mine.exists():
            raise RoleRequired("Listing annotations needs a role in a project.")
        reviewed = access.projects_where(user, Role.REVIEWER)
        return (
            Annotation.objects.filter(
                Q(clip__project__in=reviewed) | Q(annotator=user, clip__project__in=mine)
            )
            .select_related("annotator", "node")
            .distinct()
        )

    def check_object_permissions(self, request: Request, obj: Annotation) -> None:
        super().check_object_permissions(request, obj)
        if obj.annotator_id != request.user.pk:
            require_role(
                request.user, obj.clip.project, Role.REVIEWER, what="Reading others' labels"
            )


__all__ = [
    "AcceptInvitationView",
    "AnnotationViewSet",
    "ClipViewSet",
    "ImportBatchViewSet",
    "InvitationViewSet",
    "MembershipViewSet",
    "ProjectViewSet",
    "TaxonomyViewSet",
]
