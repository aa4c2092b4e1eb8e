from django.contrib import admin
from django.utils.html import format_html

from labelling.models import (
    Annotation,
    Clip,
    GoldClip,
    GoldResult,
    ImportBatch,
    ImportItem,
    Lease,
    Membership,
    NodeMapping,
    Project,
    QueueEntry,
    Recording,
    Taxonomy,
    TaxonomyNode,
    TaxonomyVersion,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "taxonomy_version",
        "annotators_per_clip",
        "is_active",
        "created_at",
    ]
    list_filter = ["is_active"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__slug"]


class VersionInline(admin.TabularInline):
    model = TaxonomyVersion
    extra = 0
    fields = ["number", "note", "created_at"]
    readonly_fields = ["created_at"]
    fk_name = "taxonomy"


@admin.register(Taxonomy)
class TaxonomyAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    inlines = [VersionInline]


@admin.register(TaxonomyVersion)
class TaxonomyVersionAdmin(admin.ModelAdmin):
    list_display = ["taxonomy", "number", "previous", "note", "created_at"]
    list_filter = ["taxonomy"]


@admin.register(TaxonomyNode)
class TaxonomyNodeAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "level", "parent", "version", "swatch", "hotkey"]
    list_filter = ["version__taxonomy", "level"]
    search_fields = ["key", "name"]

    @admin.display(description="colour")
    def swatch(self, obj: TaxonomyNode) -> str:
        return format_html(
            '<span style="display:inline-block;width:1em;height:1em;background:{}"></span> {}',
            obj.colour,
            obj.colour,
        )


@admin.register(NodeMapping)
class NodeMappingAdmin(admin.ModelAdmin):
    list_display = ["source", "target_version", "target"]
    list_filter = ["target_version"]


class ImportItemInline(admin.TabularInline):
    model = ImportItem
    extra = 0
    fields = ["name", "status", "reason_code", "reason", "clips_created"]
    readonly_fields = fields
    show_change_link = True


@admin.register(ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin):
    list_display = [
        "pk",
        "project",
        "source",
        "origin",
        "segment",
        "status",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "source", "project"]
    search_fields = ["origin"]
    inlines = [ImportItemInline]


@admin.register(ImportItem)
class ImportItemAdmin(admin.ModelAdmin):
    list_display = ["name", "batch", "status", "reason_code", "clips_created", "processed_at"]
    list_filter = ["status", "reason_code"]
    search_fields = ["name", "reason"]


@admin.register(Recording)
class RecordingAdmin(admin.ModelAdmin):
    list_display = [
        "original_name",
        "project",
        "duration_s",
        "sample_rate",
        "channels",
        "created_at",
    ]
    list_filter = ["project"]
    search_fields = ["original_name", "sha256"]


@admin.register(Clip)
class ClipAdmin(admin.ModelAdmin):
    list_display = [
        "pk",
        "original_name",
        "project",
        "duration_s",
        "speaker_id",
        "gender",
        "age_band",
        "language",
        "channel",
        "source",
        "created_at",
    ]
    list_filter = ["project", "source", "gender", "language", "channel"]
    search_fields = ["original_name", "speaker_id", "sha256", "transcript"]
    readonly_fields = ["sha256", "peaks", "original", "canonical", "recording", "batch"]
    exclude = ["peaks"]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = [
        "pk",
        "clip",
        "annotator",
        "node",
        "skip_reason",
        "intensity",
        "unsure",
        "is_current",
        "suggestion_shown",
        "created_at",
    ]
    list_filter = ["is_current", "skip_reason", "unsure", "suggestion_shown", "clip__project"]
    search_fields = ["annotator__username", "node__key"]
    raw_id_fields = ["clip", "node"]


@admin.register(QueueEntry)
class QueueEntryAdmin(admin.ModelAdmin):
    list_display = ["clip", "project", "priority", "target", "open_slots", "is_gold", "updated_at"]
    list_filter = ["project", "is_gold"]
    raw_id_fields = ["clip"]
    ordering = ["project", "priority"]


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ["id", "clip", "annotator", "project", "status", "is_gold", "created_at",
                    "expires_at"]  # fmt: skip
    list_filter = ["status", "is_gold", "project"]
    search_fields = ["annotator__username"]
    raw_id_fields = ["clip", "revises"]


@admin.register(GoldClip)
class GoldClipAdmin(admin.ModelAdmin):
    list_display = ["clip", "node", "created_by", "created_at"]
    raw_id_fields = ["clip"]


@admin.register(GoldResult)
class GoldResultAdmin(admin.ModelAdmin):
    list_display = ["annotation", "gold", "correct_core", "correct_exact", "created_at"]
    list_filter = ["correct_core", "correct_exact"]
    raw_id_fields = ["annotation"]
