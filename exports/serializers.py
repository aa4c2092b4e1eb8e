"""Dataset version API shapes."""

from __future__ import annotations

from django.contrib.auth.models import User
from rest_framework import serializers

from exports.models import AUDIO_MODES, DatasetVersion
from exports.services.diff import MAX_LIMIT
from exports.services.versions import MAX_SEED


class DatasetVersionSerializer(serializers.ModelSerializer):
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    taxonomy_version = serializers.SerializerMethodField()

    class Meta:
        model = DatasetVersion
        fields = [
            "number",
            "status",
            "progress",
            "query",
            "taxonomy_version",
            "aggregation",
            "split_seed",
            "split_targets",
            "options",
            "lineage",
            "code_version",
            "created_by",
            "created_at",
            "finished_at",
            "manifest_sha256",
            "error",
        ]
        read_only_fields = fields

    def get_taxonomy_version(self, version: DatasetVersion) -> int | None:
        return version.taxonomy_version_id


class CreateDatasetSerializer(serializers.Serializer):
    seed = serializers.IntegerField(min_value=0, max_value=MAX_SEED, default=0)
    import_batch = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    audio = serializers.ChoiceField(
        choices=AUDIO_MODES,
        default="copy",
        help_text="copy: the version holds its audio (audio/<clip_id>.wav); reference: no "
        "audio files, the clips table names each clip's canonical file (audio_uri).",
    )


class DatasetFileSerializer(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class DiffQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=0, max_value=MAX_LIMIT, default=1000)


class DiffLabelChangeSerializer(serializers.Serializer):
    clip_id = serializers.IntegerField()
    # "from" is a Python keyword: the field is declared under another name and renamed.
    from_ = serializers.CharField(allow_null=True)
    to = serializers.CharField(allow_null=True)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class DiffSplitMoveSerializer(DiffLabelChangeSerializer):
    clip_id = None  # type: ignore[assignment]
    group = serializers.CharField()


class DiffSummarySerializer(serializers.Serializer):
    clips_from = serializers.IntegerField()
    clips_to = serializers.IntegerField()
    clips_added = serializers.IntegerField()
    clips_removed = serializers.IntegerField()
    labels_changed = serializers.DictField(child=serializers.IntegerField())
    groups_added = serializers.IntegerField()
    groups_removed = serializers.IntegerField()
    old_groups = serializers.IntegerField()
    split_moves = serializers.IntegerField()
    old_groups_kept_split = serializers.BooleanField()


class DatasetDiffSerializer(serializers.Serializer):
    """The shape of the diff (documentation only: the view returns the service's dict)."""

    from_ = serializers.IntegerField()
    to = serializers.IntegerField()
    summary = DiffSummarySerializer()
    limit = serializers.IntegerField()
    clips_added = serializers.ListField(child=serializers.IntegerField())
    clips_removed = serializers.ListField(child=serializers.IntegerField())
    labels_changed = serializers.DictField(child=DiffLabelChangeSerializer(many=True))
    split_moves = DiffSplitMoveSerializer(many=True)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class DatasetConversionSerializer(serializers.Serializer):
    """A version's conversion to a format (exports.services.conversions.description)."""

    format = serializers.CharField()
    status = serializers.ChoiceField(choices=["queued", "converting", "ready", "failed"])
    progress = serializers.DictField(help_text='{"stage", "done", "total"}')
    error = serializers.CharField(allow_blank=True)
    size = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField(allow_blank=True)
    url = serializers.CharField(help_text="The zip's download URL (200 once ready).")
    poll_ms = serializers.IntegerField()
