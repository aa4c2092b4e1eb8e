"""The audit log's API shape (read-only)."""

from __future__ import annotations

from rest_framework import serializers

from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label")
    project = serializers.CharField(source="project_label")

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "action",
            "project",
            "target_type",
            "target_id",
            "target_label",
            "details",
            "ip",
        ]
        read_only_fields = fields


class AuditFilterSerializer(serializers.Serializer):
    """The list's filters: project slug, actor username, action (a dotted prefix ending in
    "." matches a family, e.g. `taxonomy.`)."""

    project = serializers.SlugField(required=False, allow_blank=True, max_length=100)
    actor = serializers.CharField(required=False, allow_blank=True, max_length=150)
    action = serializers.RegexField(
        r"^[a-z_]+(\.[a-z_]*)*$", required=False, allow_blank=True, max_length=80
    )
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1)
