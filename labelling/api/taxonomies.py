"""Feelings wheels: /api/taxonomies/ (list, read), POST …/import/ (a new wheel from a
document), …/<slug>/versions/ (list, create the next version with a mapping) and
…/<slug>/versions/<number>/ (export; replace a draft).
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from emoloop.api_base import Conflict
from labelling import serializers as s
from labelling.api.common import FILTER_BACKENDS
from labelling.models import Role, Taxonomy
from labelling.scoping import RoleRequired, project_by_slug, signed_in
from labelling.services import taxonomy
from labelling.taxonomy_schema import TaxonomyFormatError, parse_document


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
