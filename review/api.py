"""The quality and review API: the same figures as the pages, reviewers and above
(annotators 403, non-members 404; labelling.scoping)."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emoloop.api_base import Pagination
from labelling.models import Clip, Role
from labelling.scoping import ProjectScopedMixin, signed_in
from review import presentation
from review import serializers as s
from review.models import Adjudication
from review.services import adjudication
from review.tasks import fresh_snapshot


class _ReviewerView(ProjectScopedMixin, APIView):
    project_roles = Role.REVIEWER

    def figures(self, *parts: str) -> tuple[Any, dict[str, Any]]:
        snapshot, freshness = fresh_snapshot(self.project, parts or ("figures",))
        meta = {
            "computed_at": freshness.computed_at,
            "stale": freshness.stale,
            "refreshing": freshness.refreshing,
        }
        return snapshot, meta


class QualityView(_ReviewerView):
    @extend_schema(responses={200: s.QualitySerializer})
    def get(self, request: Request, slug: str) -> Response:
        """Per-annotator figures from current human labels (definitions: docs/console.md)."""
        snapshot, meta = self.figures()
        figures = snapshot.figures if snapshot else {}
        body = {
            **meta,
            "labels": figures.get("labels", 0),
            "clips": figures.get("clips", 0),
            "annotators": figures.get("annotators", []),
        }
        return Response(s.QualitySerializer(body).data)


class AnnotatorQualityView(_ReviewerView):
    @extend_schema(responses={200: s.AnnotatorSerializer})
    def get(self, request: Request, slug: str, user_id: int) -> Response:
        """One annotator's figures, with their drift per week."""
        snapshot, _meta = self.figures()
        found = (snapshot.figures if snapshot else {}).get("annotators", [])
        entry = next((a for a in found if a["id"] == user_id), None)
        if entry is None:
            raise Http404
        return Response(s.AnnotatorSerializer(entry).data)


class AgreementView(_ReviewerView):
    @extend_schema(responses={200: s.AgreementSerializer})
    def get(self, request: Request, slug: str) -> Response:
        """Krippendorff's alpha per ring and class, the rater matrix, confused pairs."""
        snapshot, meta = self.figures("agreement")
        found = (snapshot.agreement if snapshot else None) or {
            "rings": [],
            "matrix": {"raters": [], "cells": []},
            "confused": [],
            "confused_core": [],
        }
        return Response(s.AgreementSerializer({**meta, **found}).data)


class ReviewQueueView(_ReviewerView):
    @extend_schema(
        parameters=[
            OpenApiParameter("reason", str, enum=list(presentation.REASONS)),
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int),
        ],
        responses={200: s.QueuePageSerializer},
    )
    def get(self, request: Request, slug: str) -> Response:
        """Clips to review, not yet adjudicated, in clip order (paginated)."""
        reason = request.query_params.get("reason", "")
        if reason and reason not in presentation.REASONS:
            raise ValidationError({"reason": [f"one of {', '.join(presentation.REASONS)}"]})
        fresh_snapshot(self.project, ())  # the queue is the latest snapshot's
        pending = presentation.pending(self.project, reason)
        paginator = Pagination()
        page = paginator.paginate_queryset(pending, request, view=self) or []
        items = [{"clip": item.clip_id, "reasons": item.reasons()} for item in page]
        return paginator.get_paginated_response(s.QueueItemSerializer(items, many=True).data)


class ReviewClipView(_ReviewerView):
    def clip(self, clip_id: int) -> Clip:
        return get_object_or_404(
            Clip.objects.select_related("project"), pk=clip_id, project=self.project
        )

    @extend_schema(responses={200: s.ReviewClipSerializer})
    def get(self, request: Request, slug: str, clip_id: int) -> Response:
        """Every current human label of the clip side by side, and its adjudications."""
        clip = self.clip(clip_id)
        gold_path, gold_key = presentation.gold_of(clip)
        body = {
            "clip": clip.pk,
            "audio": f"/api/clips/{clip.pk}/audio/",
            "gold": gold_path,
            "labels": presentation.label_rows(adjudication.clip_labels(clip), gold_key),
            "adjudications": adjudication.history(clip),
        }
        return Response(s.ReviewClipSerializer(body).data)

    @extend_schema(request=s.AdjudicateSerializer, responses={201: s.AdjudicationSerializer})
    def post(self, request: Request, slug: str, clip_id: int) -> Response:
        """Record an adjudicated label (a node key of the active version) with a note; it
        supersedes the clip's earlier adjudication. The annotators' labels are unchanged."""
        clip = self.clip(clip_id)
        body = s.AdjudicateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            made = adjudication.adjudicate(
                clip,
                signed_in(request.user),
                body.validated_data["node"],
                body.validated_data.get("note", ""),
            )
        except adjudication.AdjudicationRefused as exc:
            raise ValidationError({"node": [str(exc)]}) from exc
        return Response(s.AdjudicationSerializer(made).data, status=status.HTTP_201_CREATED)


class AdjudicationListView(_ReviewerView):
    @extend_schema(responses={200: s.AdjudicationPageSerializer})
    def get(self, request: Request, slug: str) -> Response:
        """The project's current adjudications, newest first (paginated)."""
        found = (
            Adjudication.objects.filter(project=self.project, is_current=True)
            .select_related("reviewer", "node")
            .order_by("-created_at", "-pk")
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(found, request, view=self) or []
        return paginator.get_paginated_response(s.AdjudicationSerializer(page, many=True).data)
