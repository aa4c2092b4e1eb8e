"""Shapes of the quality and review API (documented in the OpenAPI schema)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from review.services.adjudication import MAX_NOTE


class GoldFiguresSerializer(serializers.Serializer):
    items = serializers.IntegerField()
    correct = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True)


class ConsensusSerializer(serializers.Serializer):
    items = serializers.IntegerField()
    agreeing = serializers.IntegerField()
    share = serializers.FloatField(allow_null=True)
    kappa = serializers.FloatField(allow_null=True)


class WeekSerializer(serializers.Serializer):
    week = serializers.CharField(help_text="ISO week, e.g. 2026-W48.")
    labels = serializers.IntegerField()
    gold_core_accuracy = serializers.FloatField(allow_null=True)
    consensus_share = serializers.FloatField(allow_null=True)


class AnnotatorSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    labels = serializers.IntegerField()
    skips = serializers.IntegerField()
    skip_rate = serializers.FloatField(allow_null=True)
    unsure = serializers.IntegerField()
    unsure_rate = serializers.FloatField(allow_null=True)
    median_ms = serializers.FloatField(allow_null=True)
    p90_ms = serializers.FloatField(allow_null=True)
    gold_core = GoldFiguresSerializer(allow_null=True)
    gold_exact = GoldFiguresSerializer(allow_null=True)
    consensus = ConsensusSerializer(allow_null=True)
    pairwise_kappa = serializers.FloatField(allow_null=True)
    co_raters = serializers.IntegerField()
    weeks = WeekSerializer(many=True)


class FreshnessSerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField(allow_null=True)
    stale = serializers.BooleanField(help_text="Labels changed since the figures were computed.")
    refreshing = serializers.BooleanField(help_text="A task is recomputing them.")


class QualitySerializer(FreshnessSerializer):
    labels = serializers.IntegerField()
    clips = serializers.IntegerField()
    annotators = AnnotatorSerializer(many=True)


class ClassAlphaSerializer(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]  # the key is "label"
    alpha = serializers.FloatField(allow_null=True)


class RingSerializer(serializers.Serializer):
    ring = serializers.IntegerField()
    ratings = serializers.IntegerField()
    pairable_clips = serializers.IntegerField()
    alpha = serializers.FloatField(allow_null=True)
    per_class = ClassAlphaSerializer(many=True)


class PairCellSerializer(serializers.Serializer):
    shared = serializers.IntegerField()
    agree = serializers.IntegerField()
    kappa = serializers.FloatField(allow_null=True)


class RaterSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


# A matrix row: each cell a PairCell or null. Written out because drf-spectacular drops
# `allow_null` on a serializer that is a ListField's child (the schema said "object").
@extend_schema_field(
    {
        "type": "array",
        "items": {
            "type": "object",
            "nullable": True,
            "properties": {
                "shared": {"type": "integer"},
                "agree": {"type": "integer"},
                "kappa": {"type": "number", "format": "double", "nullable": True},
            },
            "required": ["shared", "agree", "kappa"],
        },
    }
)
class PairRowField(serializers.ListField):
    child = PairCellSerializer(allow_null=True)


class MatrixSerializer(serializers.Serializer):
    raters = RaterSerializer(many=True)
    cells = serializers.ListField(
        child=PairRowField(),
        help_text="cells[i][j]: raters i and j on their shared clips (null: none, or i == j).",
    )


class ConfusedSerializer(serializers.Serializer):
    a = serializers.CharField()
    b = serializers.CharField()
    count = serializers.IntegerField()


class AgreementSerializer(FreshnessSerializer):
    rings = RingSerializer(many=True)
    matrix = MatrixSerializer()
    confused = ConfusedSerializer(many=True)
    confused_core = ConfusedSerializer(many=True)


class QueueItemSerializer(serializers.Serializer):
    clip = serializers.IntegerField()
    reasons = serializers.ListField(child=serializers.CharField())


class LabelSerializer(serializers.Serializer):
    annotator = serializers.CharField()
    annotator_id = serializers.IntegerField()
    key = serializers.CharField(help_text="Node key; empty for a skip.")
    path = serializers.CharField()
    unsure = serializers.BooleanField()
    intensity = serializers.CharField()
    time = serializers.CharField()
    created_at = serializers.DateTimeField()
    gold = serializers.BooleanField(allow_null=True, help_text="Core correct on a gold clip.")


class AdjudicationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    clip = serializers.IntegerField(source="clip_id")
    node = serializers.CharField(source="node.key")
    reviewer = serializers.CharField(source="reviewer.username")
    note = serializers.CharField()
    is_current = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class ReviewClipSerializer(serializers.Serializer):
    clip = serializers.IntegerField()
    audio = serializers.CharField()
    gold = serializers.CharField(help_text="The gold answer's path; empty when not gold.")
    labels = LabelSerializer(many=True)
    adjudications = AdjudicationSerializer(many=True, help_text="Newest first.")


class AdjudicateSerializer(serializers.Serializer):
    node = serializers.CharField(max_length=80, help_text="A node key of the active version.")
    note = serializers.CharField(max_length=MAX_NOTE, allow_blank=True, required=False)


class _PageSerializer(serializers.Serializer):
    """The envelope of a paginated list (emoloop.api_base.Pagination)."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class QueuePageSerializer(_PageSerializer):
    results = QueueItemSerializer(many=True)


class AdjudicationPageSerializer(_PageSerializer):
    results = AdjudicationSerializer(many=True)
