"""GET /api/projects/<slug>/rankings: the project's rescorings of the pool, newest first,
with their status and, for a failed one, its error (learner.services.rescoring).

For the ML engineer (as the console's ranking page): a ranking that failed says why, and
whether the beat will rank again shows as a newer ranking of the same version. Read-only:
rankings are opened by activations and by the beat, never through the API.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelling.models import Role
from labelling.scoping import ProjectScopedMixin
from learner.models import Ranking

LIMIT = 50


class RankingSerializer(serializers.ModelSerializer[Ranking]):
    model_version = serializers.IntegerField(
        source="model_version.number", allow_null=True, read_only=True,
        help_text="The number of the version that scored the pool; null at cold start.",
    )  # fmt: skip

    class Meta:
        model = Ranking
        fields = [
            "id", "model_version", "strategy", "params", "status", "error", "pool_size",
            "chunks_total", "batch_size", "selected", "created_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class RankingListView(ProjectScopedMixin, APIView):
    project_roles = Role.ML_ENGINEER

    @extend_schema(
        responses={200: RankingSerializer(many=True)},
        description=f"The project's newest {LIMIT} rankings (ML engineer): status running, "
        "selecting, complete (serving the queue), superseded or failed, with the error of a "
        "failed one. The beat ranks an active version again after a failure, a bounded "
        "number of times (docs/active-learning.md).",
    )
    def get(self, request: Request, slug: str) -> Response:
        rankings = Ranking.objects.filter(project=self.project).select_related("model_version")
        return Response(RankingSerializer(rankings.order_by("-pk")[:LIMIT], many=True).data)
