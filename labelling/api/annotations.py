"""Labels, read-only: /api/annotations/ (list, read). Labels are written through the
queue (labelling/queue_api.py), which holds the overlap, lease and idempotence rules.
"""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet
from rest_framework import viewsets
from rest_framework.request import Request

from labelling import serializers as s
from labelling.api.common import FILTER_BACKENDS, INT_LOOKUP
from labelling.filters import StrictFilterSet
from labelling.models import Annotation, Role
from labelling.scoping import RoleRequired, require_role
from labelling.services import access


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
