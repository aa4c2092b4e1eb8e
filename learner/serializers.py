"""API representations of the learner. Serializers validate; services do the work."""

from __future__ import annotations

from rest_framework import serializers

from learner.features import NAMES as FEATURE_SETS
from learner.models import LearnerSettings, ModelVersion, TrainingRun


class PredictRequestSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="An audio file (WAV, FLAC, OGG, MP3, AIFF).")
    speaker_id = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=120,
        help_text="A speaker of the project: their statistics normalise the features "
        "(per-speaker mode). Unknown or empty: global statistics.",
    )


class NodeProbabilitySerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    probability = serializers.FloatField()


class LevelSerializer(serializers.Serializer):
    level = serializers.IntegerField()
    nodes = NodeProbabilitySerializer(many=True)


class PredictionSerializer(serializers.Serializer):
    model_version = serializers.IntegerField()
    feature_set = serializers.CharField()
    normalisation = serializers.ChoiceField(choices=["speaker", "global"])
    levels = LevelSerializer(many=True, help_text="Every node of the wheel, per level.")


class TrainingRunSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    model_version = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "status",
            "trigger",
            "requested_by",
            "feature_set",
            "params",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "progress",
            "reason_code",
            "reason",
            "label_count",
            "model_version",
        ]
        read_only_fields = fields

    def get_model_version(self, run: TrainingRun) -> int | None:
        version = getattr(run, "model_version", None)
        return version.number if version is not None else None


class StartTrainingSerializer(serializers.Serializer):
    feature_set = serializers.ChoiceField(
        choices=list(FEATURE_SETS),
        required=False,
        help_text="Defaults to the project's learner setting.",
    )


class StartTrainingResponseSerializer(serializers.Serializer):
    created = serializers.BooleanField(
        help_text="False when a training of this project was already queued or running: "
        "that run is returned and no second one starts."
    )
    run = TrainingRunSerializer()


class ModelVersionSerializer(serializers.ModelSerializer):
    run = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "number",
            "is_active",
            "activated_at",
            "created_at",
            "run",
            "taxonomy_version",
            "extractor",
            "extractor_version",
            "label_count",
            "train_seconds",
            "metrics",
        ]
        read_only_fields = fields


class LearnerSettingsSerializer(serializers.ModelSerializer):
    feature_set = serializers.ChoiceField(choices=list(FEATURE_SETS))

    class Meta:
        model = LearnerSettings
        fields = [
            "feature_set",
            "speaker_normalisation",
            "augmentation",
            "retrain_after_labels",
            "retrain_interval_hours",
            "min_labelled_clips",
            "unsure_weight",
            "epochs",
            "seed",
        ]


class FeatureSetSerializer(serializers.Serializer):
    name = serializers.CharField()
    available = serializers.BooleanField()
    reason = serializers.CharField(required=False)
    version = serializers.CharField(required=False)
    dim = serializers.IntegerField(required=False)
    licence = serializers.CharField(required=False)
    description = serializers.CharField(required=False)
