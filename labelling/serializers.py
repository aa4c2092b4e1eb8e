"""API representations. Serializers validate; services do the writing."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from rest_framework import serializers

from emoloop.api_base import StrictModelSerializer, StrictSerializer
from labelling.models import (
    Annotation,
    Clip,
    ImportBatch,
    ImportItem,
    Invitation,
    Membership,
    Project,
    Role,
    Taxonomy,
    TaxonomyNode,
    TaxonomyVersion,
)
from labelling.services.access import ROLE_RANK
from labelling.services.taxonomy import version_is_locked


class TaxonomyVersionSerializer(serializers.ModelSerializer):
    taxonomy: serializers.SlugRelatedField[Taxonomy] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    node_count = serializers.SerializerMethodField()
    locked = serializers.SerializerMethodField(help_text="Has annotations: immutable.")

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

    def get_node_count(self, version: TaxonomyVersion) -> int:
        return version.nodes.count()

    def get_locked(self, version: TaxonomyVersion) -> bool:
        return version_is_locked(version)


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


class NewVersionSerializer(StrictSerializer):
    based_on = serializers.IntegerField(help_text="Number of the version being replaced.")
    document = TaxonomyDocumentField()
    mapping = serializers.DictField(
        child=serializers.CharField(allow_null=True),
        help_text="Every old node key -> a new node key, or null when the feeling is dropped.",
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=300)


# What an annotator may see of a project: what the labelling page needs.
ANNOTATOR_PROJECT_FIELDS = frozenset({
    "id", "name", "slug", "description", "guidelines", "taxonomy", "taxonomy_version",
    "is_active", "created_at",
    "my_role", "assisted", "autoplay", "require_full_listen", "dimensional_labels",
})  # fmt: skip


class ProjectSerializer(StrictModelSerializer):
    """A project and every setting an admin can change. Annotators get the labelling
    subset (ANNOTATOR_PROJECT_FIELDS): no queue, gold or agreement settings."""

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
            "queue_policy",
            "lease_seconds",
            "gold_rate",
            "agreement_routing",
            "agreement_target",
            "max_annotators_per_clip",
            "assisted",
            "autoplay",
            "require_full_listen",
            "dimensional_labels",
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

    def to_representation(self, instance: Project) -> dict:
        data = super().to_representation(instance)
        role = (self.context.get("roles") or {}).get(instance.pk)
        if role is None or ROLE_RANK[Role(role)] < ROLE_RANK[Role.REVIEWER]:
            data = {key: value for key, value in data.items() if key in ANNOTATOR_PROJECT_FIELDS}
        return data

    def validate(self, attrs: dict) -> dict:
        instance = self.instance
        overlap = attrs.get("annotators_per_clip", getattr(instance, "annotators_per_clip", 1))
        maximum = attrs.get(
            "max_annotators_per_clip", getattr(instance, "max_annotators_per_clip", 5)
        )
        if maximum < overlap:
            raise serializers.ValidationError(
                {"max_annotators_per_clip": [f"Must be at least annotators_per_clip ({overlap})."]}
            )
        return attrs


class AssignTaxonomySerializer(StrictSerializer):
    taxonomy = serializers.SlugField(help_text="The taxonomy's slug, e.g. willcox.")
    version = serializers.IntegerField(min_value=1, help_text="The version number, e.g. 2.")


class MembershipSerializer(StrictModelSerializer):
    """A member as the team list shows it (reviewers and above read it); `is_active` false
    and `deactivated_at` for a deactivated member, who keeps no access until reactivated."""

    username = serializers.SlugRelatedField(
        source="user", slug_field="username", queryset=get_user_model().objects.all()
    )
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["id", "username", "role", "is_active", "deactivated_at", "created_at"]
        read_only_fields = ["is_active", "deactivated_at", "created_at"]


class MembershipChangeSerializer(StrictModelSerializer):
    """Changing a member's role and/or deactivating (is_active false) or reactivating them
    (labelling.services.membership); who the member is cannot change."""

    username = serializers.CharField(source="user.username", read_only=True)
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    is_active = serializers.BooleanField(
        required=False, help_text="false deactivates the member (their leases are released)."
    )

    class Meta:
        model = Membership
        fields = ["id", "username", "role", "is_active", "deactivated_at", "created_at"]
        read_only_fields = ["id", "deactivated_at", "created_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Say what to change: role and/or is_active.")
        return attrs


class InvitationSerializer(StrictModelSerializer):
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    accepted_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    role = serializers.ChoiceField(choices=Role.choices, default=Role.ANNOTATOR)
    days = serializers.IntegerField(
        min_value=1, max_value=30, default=7, write_only=True, help_text="Valid for this long."
    )

    class Meta:
        model = Invitation
        fields = [
            "id",
            "role",
            "note",
            "days",
            "created_by",
            "created_at",
            "expires_at",
            "accepted_by",
            "accepted_at",
            "revoked_at",
        ]
        read_only_fields = [
            "created_at",
            "expires_at",
            "accepted_by",
            "accepted_at",
            "revoked_at",
        ]


# The creation response. `token` and `accept_url` come from the context: only the token's
# hash is stored, so they exist in this one response. (A comment, not a docstring: the
# schema's description of this component stays as it was.)
class CreatedInvitationSerializer(InvitationSerializer):
    token = serializers.SerializerMethodField(help_text="Shown once: send it to the invitee.")
    accept_url = serializers.SerializerMethodField()

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "token", "accept_url"]

    def get_token(self, invitation: Invitation) -> str:
        return str(self.context["token"])

    def get_accept_url(self, invitation: Invitation) -> str:
        return str(self.context["accept_url"])


class AcceptInvitationSerializer(StrictSerializer):
    token = serializers.CharField(max_length=200)


EDITABLE_CLIP_FIELDS = ("speaker_id", "gender", "age_band", "language", "dialect", "channel",
                        "transcript", "metadata")  # fmt: skip


class ClipSerializer(StrictModelSerializer):
    project: serializers.SlugRelatedField[Project] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
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


class PeaksSerializer(serializers.Serializer):
    clip = serializers.IntegerField()
    points_per_second = serializers.IntegerField()
    duration_s = serializers.FloatField()
    peaks = serializers.ListField(child=serializers.FloatField())


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
    project: serializers.SlugRelatedField[Project] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Null for CLI imports."
    )
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


class UploadSerializer(StrictSerializer):
    files = serializers.ListField(child=serializers.FileField(), required=False, allow_empty=False)
    manifest = serializers.FileField(required=False)
    url = serializers.URLField(required=False, max_length=2000)
    segment = serializers.BooleanField(default=False)

    def validate(self, attrs: dict) -> dict:
        if bool(attrs.get("files")) == bool(attrs.get("url")):
            raise serializers.ValidationError("Send either files or a url, not both or neither.")
        return attrs


class AnnotationSerializer(serializers.ModelSerializer):
    annotator: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    node: serializers.SlugRelatedField[TaxonomyNode] = serializers.SlugRelatedField(
        slug_field="key", read_only=True, allow_null=True, help_text="Null for a skip."
    )

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
