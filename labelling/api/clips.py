"""The pool: /api/clips/ (list, read, edit metadata, delete) and a clip's
…/<id>/audio/ and …/<id>/peaks/ (what an annotator hears of a clip leased to them).
"""

from __future__ import annotations

import django_filters
from django.db.models import Exists, OuterRef, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from emoloop.api_base import PassthroughRenderer
from labelling import serializers as s
from labelling.api.common import FILTER_BACKENDS, INT_LOOKUP
from labelling.audio_response import audio_response
from labelling.filters import StrictBooleanFilter, StrictFilterSet
from labelling.models import Annotation, Clip, Role
from labelling.scoping import ProjectObjectsMixin, RoleRequired, signed_in
from labelling.services import access, ingest, storage


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


class AudioRenderer(PassthroughRenderer):
    """Audio files through content negotiation (api_base.PassthroughRenderer)."""

    format = "audio"


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
        responses={
            (200, "audio/*"): OpenApiTypes.BINARY,
            302: OpenApiResponse(
                description="EMOLOOP_AUDIO_DELIVERY=presigned: Location is a short-lived "
                "presigned URL of the object store (after the same permission check)."
            ),
        },
    )
    @action(detail=True, methods=["get"], renderer_classes=[AudioRenderer])
    def audio(self, request: Request, pk: str | None = None):
        """The clip's audio (canonical 16 kHz WAV by default), with Range support; or a
        redirect to the object store, or an X-Accel-Redirect for nginx, as
        EMOLOOP_AUDIO_DELIVERY says (labelling/audio_response.py)."""
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
