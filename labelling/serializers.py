"""API representations. Serializers validate; services do the writing."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from labelling.models import (
    Annotation,
    Clip,
    ImportBatch,
    ImportItem,
    Intensity,
    Membership,
    Project,
    Role,
    SkipReason,
    Taxonomy,
    TaxonomyNode,
    TaxonomyVersion,
)


class TaxonomyNodeSerializer(serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(slug_field="key", read_only=True)

    class Meta:
        model = TaxonomyNode
        fields = [
            "key",
            "name",
            "description",
            "parent",
            "level",
            "order",
            "colour",
            "hotkey",
            "valence",
            "arousal",
        ]


class TaxonomyVersionSerializer(serializers.ModelSerializer):
    taxonomy = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    node_count = serializers.IntegerField(read_only=True)
    locked = serializers.BooleanField(read_only=True, help_text="Has annotations: immutable.")

    class Meta:
        model = TaxonomyVersion
        fields = [
            "id",
            "taxonomy",
            "number",
            "previous",
            "note",
            "created_at",
            "node_count",
            "locked",
        ]


class TaxonomySerializer(serializers.ModelSerializer):
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Taxonomy
        fields = ["id", "name", "slug", "description", "source", "created_at", "latest_version"]

    def get_latest_version(self, obj: Taxonomy) -> int | None:
        numbers = [v.number for v in obj.versions.all()]
        return max(numbers) if numbers else None


class TaxonomyDocumentField(serializers.JSONField):
    """A taxonomy in the import/export format (see labelling/taxonomy_schema.py)."""


class NewVersionSerializer(serializers.Serializer):
    based_on = serializers.IntegerField(help_text="Number of the version being replaced.")
    document = TaxonomyDocumentField()
    mapping = serializers.DictField(
        child=serializers.CharField(allow_null=True),
        help_text="Every old node key -> a new node key, or null when the feeling is dropped.",
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=300)


class ProjectSerializer(serializers.ModelSerializer):
    taxonomy = serializers.SerializerMethodField()
    my_role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "guidelines",
            "taxonomy_version",
            "taxonomy",
            "annotators_per_clip",
            "is_active",
            "created_at",
            "my_role",
        ]
        read_only_fields = ["taxonomy_version", "created_at"]

    def get_taxonomy(self, obj: Project) -> str | None:
        version = obj.taxonomy_version
        return f"{version.taxonomy.slug}@{version.number}" if version else None

    def get_my_role(self, obj: Project) -> str | None:
        roles = self.context.get("roles") or {}
        return roles.get(obj.pk)


class AssignTaxonomySerializer(serializers.Serializer):
    version = serializers.PrimaryKeyRelatedField(queryset=TaxonomyVersion.objects.all())


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.SlugRelatedField(
        source="user", slug_field="username", queryset=get_user_model().objects.all()
    )
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["id", "username", "role", "created_at"]
        read_only_fields = ["created_at"]


EDITABLE_CLIP_FIELDS = ("speaker_id", "gender", "age_band", "language", "dialect", "channel",
                        "transcript", "metadata")  # fmt: skip


class ClipSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    audio_url = serializers.SerializerMethodField()
    peaks_url = serializers.SerializerMethodField()

    class Meta:
        model = Clip
        fields = [
            "id",
            "project",
            "batch",
            "recording",
            "start_s",
            "end_s",
            "original_name",
            "original_format",
            "sha256",
            "duration_s",
            "sample_rate",
            "channels",
            "source",
            "speaker_id",
            "gender",
            "age_band",
            "language",
            "dialect",
            "channel",
            "transcript",
            "metadata",
            "created_at",
            "audio_url",
            "peaks_url",
        ]
        # Only the descriptive metadata is editable; everything measured or stored is not.
        read_only_fields = [f for f in fields if f not in EDITABLE_CLIP_FIELDS]

    def get_audio_url(self, obj: Clip) -> str:
        return f"/api/clips/{obj.pk}/audio/"

    def get_peaks_url(self, obj: Clip) -> str:
        return f"/api/clips/{obj.pk}/peaks/"


class ImportItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImportItem
        fields = [
            "id",
            "name",
            "size_bytes",
            "status",
            "reason_code",
            "reason",
            "clips_created",
            "processed_at",
        ]


class ImportBatchSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    counts = serializers.SerializerMethodField()

    class Meta:
        model = ImportBatch
        fields = [
            "id",
            "project",
            "created_by",
            "source",
            "origin",
            "segment",
            "status",
            "error",
            "created_at",
            "finished_at",
            "counts",
        ]

    def get_counts(self, obj: ImportBatch) -> dict[str, int]:
        from labelling.services.ingest import batch_counts

        counts = batch_counts(obj.pk)
        return {
            "total": counts.total,
            "pending": counts.pending,
            "accepted": counts.accepted,
            "duplicate": counts.duplicate,
            "rejected": counts.rejected,
            "clips": counts.clips,
        }


class UploadSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(), required=False, allow_empty=False)
    manifest = serializers.FileField(required=False)
    url = serializers.URLField(required=False, max_length=2000)
    segment = serializers.BooleanField(default=False)

    def validate(self, attrs: dict) -> dict:
        if bool(attrs.get("files")) == bool(attrs.get("url")):
            raise serializers.ValidationError("Send either files or a url, not both or neither.")
        return attrs


class AnnotationSerializer(serializers.ModelSerializer):
    annotator = serializers.SlugRelatedField(slug_field="username", read_only=True)
    node = serializers.SlugRelatedField(slug_field="key", read_only=True)

    class Meta:
        model = Annotation
        fields = [
            "id",
            "clip",
            "annotator",
            "node",
            "intensity",
            "unsure",
            "skip_reason",
            "time_spent_ms",
            "suggestion_shown",
            "is_current",
            "created_at",
        ]


class AnnotationCreateSerializer(serializers.Serializer):
    clip = serializers.IntegerField()
    node = serializers.CharField(required=False, allow_blank=True, max_length=80)
    skip_reason = serializers.ChoiceField(
        choices=SkipReason.choices, required=False, allow_blank=True
    )
    intensity = serializers.ChoiceField(choices=Intensity.choices, required=False, allow_blank=True)
    unsure = serializers.BooleanField(default=False)
    time_spent_ms = serializers.IntegerField(min_value=0, max_value=24 * 3600 * 1000, default=0)
    suggestion_shown = serializers.BooleanField(default=False)

    def validate(self, attrs: dict) -> dict:
        if bool(attrs.get("node")) == bool(attrs.get("skip_reason")):
            raise serializers.ValidationError("Give exactly one of node or skip_reason.")
        return attrs
