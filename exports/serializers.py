"""Dataset version API shapes."""

from __future__ import annotations

from django.contrib.auth.models import User
from rest_framework import serializers

from exports.models import DatasetVersion
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


class DatasetFileSerializer(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
