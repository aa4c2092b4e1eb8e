"""API representations of the learner. Serializers validate; services do the work."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from emoloop.api_base import StrictModelSerializer, StrictSerializer
from learner.features import NAMES as FEATURE_SETS
from learner.models import (
    SETTINGS_FIELDS,
    LearnerSettings,
    ModelVersion,
    TrainingRun,
    settings_errors,
)
from learner.services import reports
from learner.services.reports import LIVE_STRATEGIES, unavailable_reason


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
    requested_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
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
            "dispatched_at",
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


def check_available(name: str) -> str:
    """A feature set this server can run; 400 naming what is missing otherwise (an `ssl`
    without a local checkpoint, `egemaps` without opensmile)."""
    reason = unavailable_reason(name)
    if reason is not None:
        raise serializers.ValidationError(f"{name} cannot run on this server: {reason}")
    return name


class StartTrainingSerializer(StrictSerializer):
    feature_set = serializers.ChoiceField(
        choices=list(FEATURE_SETS),
        required=False,
        help_text="Defaults to the project's learner setting. Only a feature set this server "
        "can run (GET /api/learner/feature-sets); another is a 400.",
    )

    def validate_feature_set(self, value: str) -> str:
        return check_available(value)


class StartTrainingResponseSerializer(serializers.Serializer):
    created = serializers.BooleanField(
        help_text="False when a training of this project was already queued or running: "
        "that run is returned and no second one starts."
    )
    run = TrainingRunSerializer()


class IntervalsSerializer(serializers.Serializer):
    uar = serializers.ListField(child=serializers.FloatField(), required=False)
    macro_f1 = serializers.ListField(child=serializers.FloatField(), required=False)
    accuracy = serializers.ListField(child=serializers.FloatField(), required=False)


class ModelVersionSerializer(serializers.ModelSerializer):
    """A version with its held-out figures, their 95% bootstrap intervals, the test set's
    size and whether it is large enough to mean something, what the deployed model was
    fitted on, and the quality gate's verdict (learner.services.reports.facts)."""

    run: serializers.PrimaryKeyRelatedField[TrainingRun] = serializers.PrimaryKeyRelatedField(
        read_only=True
    )
    test_clips = serializers.SerializerMethodField()
    test_speakers = serializers.SerializerMethodField()
    metrics_meaningful = serializers.SerializerMethodField()
    warnings = serializers.SerializerMethodField()
    intervals = serializers.SerializerMethodField()
    interval_method = serializers.SerializerMethodField()
    evaluated_on = serializers.SerializerMethodField()
    deployed_fit = serializers.SerializerMethodField()
    is_candidate = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "number",
            "is_active",
            "is_candidate",
            "activated_at",
            "created_at",
            "run",
            "taxonomy_version",
            "extractor",
            "extractor_version",
            "label_count",
            "train_seconds",
            "test_clips",
            "test_speakers",
            "metrics_meaningful",
            "warnings",
            "intervals",
            "interval_method",
            "evaluated_on",
            "deployed_fit",
            "gate_decision",
            "gate_reason",
            "gate_details",
            "metrics",
        ]
        read_only_fields = fields

    def _facts(self, version: ModelVersion) -> reports.VersionFacts:
        # One reading of the metrics per version, for the nine fields that show them.
        if getattr(self, "_facts_of", None) is None:
            self._facts_of: dict[int, reports.VersionFacts] = {}
        if version.pk not in self._facts_of:
            self._facts_of[version.pk] = reports.facts(version)
        return self._facts_of[version.pk]

    def get_test_clips(self, version: ModelVersion) -> int | None:
        return self._facts(version).test_clips

    def get_test_speakers(self, version: ModelVersion) -> int | None:
        """Speakers of the test split; null when it was split by clip."""
        return self._facts(version).test_speakers

    def get_metrics_meaningful(self, version: ModelVersion) -> bool:
        """False below TRUST_MIN_CLIPS test clips or TRUST_MIN_SPEAKERS test speakers:
        the figures are not yet meaningful (`warnings` says why)."""
        return self._facts(version).meaningful

    def get_warnings(self, version: ModelVersion) -> list[str]:
        return self._facts(version).warnings

    @extend_schema_field(IntervalsSerializer)
    def get_intervals(self, version: ModelVersion) -> dict[str, Any]:
        """95% bootstrap intervals [low, high] of the headline figures; {} for versions
        trained before intervals were recorded."""
        return self._facts(version).intervals

    def get_interval_method(self, version: ModelVersion) -> dict[str, Any]:
        """How the intervals were drawn: by speaker or clip, units, resamples, level."""
        found = (version.metrics or {}).get("interval_method") or {}
        return dict(found)

    def get_evaluated_on(self, version: ModelVersion) -> str:
        """The held-out rows every figure was measured on."""
        return self._facts(version).evaluated_on

    def get_deployed_fit(self, version: ModelVersion) -> dict[str, Any]:
        """What the deployed model was fitted on (all labelled rows after evaluation)."""
        return self._facts(version).deployed_fit

    def get_is_candidate(self, version: ModelVersion) -> bool:
        """Refused by the quality gate and never activated by hand since."""
        return self._facts(version).is_candidate


class LearnerSettingsSerializer(StrictModelSerializer):
    """A project's learner settings. Every field is bounded by the model's validators (the
    same the admin form runs), unknown and read-only keys are refused (StrictModelSerializer),
    and the rules between fields (a strategy's parameters, minimum vs maximum shares, batch x
    candidate_factor) are checked on the settings as they will be saved.

    For a PATCH, pass the current row as `instance` (project_settings.settings_for): the rules
    between fields are then checked against it. Without one they are checked among the
    fields sent, and project_settings.update_settings checks the whole row again before saving.
    """

    feature_set = serializers.ChoiceField(choices=list(FEATURE_SETS))
    # The strategies the live loop runs (bald needs MC-dropout passes that rescoring does
    # not make: it runs in the simulator only).
    query_strategy = serializers.ChoiceField(choices=list(LIVE_STRATEGIES))

    class Meta:
        model = LearnerSettings
        fields = list(SETTINGS_FIELDS)

    def to_internal_value(self, data: Any) -> Any:
        # DRF reads true as 1.0 for a float field; a setting that is a number takes numbers.
        if isinstance(data, Mapping):
            numeric = (serializers.IntegerField, serializers.FloatField)
            wrong = {
                key: ["A number is required, not true or false."]
                for key, value in data.items()
                if isinstance(value, bool) and isinstance(self.fields.get(key), numeric)
            }
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)

    def validate_feature_set(self, value: str) -> str:
        return check_available(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if self.instance is not None:
            values = {field: getattr(self.instance, field) for field in SETTINGS_FIELDS}
        values.update(attrs)
        errors = settings_errors(values)
        if self.instance is None:
            # Without the saved row, a rule can only be judged on the fields it names when
            # they were all sent; update_settings judges the rest on the whole row.
            errors = {
                field: message
                for field, message in errors.items()
                if field in attrs and _partners(field) <= attrs.keys()
            }
        if errors:
            raise serializers.ValidationError({field: [msg] for field, msg in errors.items()})
        return attrs


def _partners(field: str) -> set[str]:
    """The fields a rule between settings reported on `field` reads."""
    return {
        "query_params": {"query_strategy", "query_params"},
        "query_batch_size": {"query_strategy", "query_params", "query_batch_size"},
        "coverage_min_share": {"coverage_min_share", "coverage_max_share"},
    }.get(field, {field})


class FeatureSetSerializer(serializers.Serializer):
    name = serializers.CharField()
    available = serializers.BooleanField()
    reason = serializers.CharField(required=False)
    version = serializers.CharField(required=False)
    dim = serializers.IntegerField(required=False)
    licence = serializers.CharField(required=False)
    description = serializers.CharField(required=False)
