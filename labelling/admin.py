"""The Django admin is one more door: it goes through the same access layer and services.

Staff see and change only objects of projects they administer (labelling.scoping.
ProjectScopedAdmin; a superuser sees everything). Derived state — queue entries, leases,
selection reasons, gold results — and labels are read-only here: labels are written only by
the queue, gold clips by the gold API. A project's taxonomy switch is validated by the same
service as the API; deleting clips or projects removes their audio (labelling.services.storage).
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

# The weak-label sources' admin lives in its own module; importing it registers it.
from labelling import admin_weak_sources  # noqa: F401
from labelling.models import (
    Annotation,
    Clip,
    GoldClip,
    GoldResult,
    ImportBatch,
    ImportItem,
    Invitation,
    Lease,
    Membership,
    NodeMapping,
    Project,
    QueueEntry,
    Recording,
    Role,
    Taxonomy,
    TaxonomyNode,
    TaxonomyVersion,
    WeakLabel,
)
from labelling.scoping import ProjectScopedAdmin, signed_in
from labelling.serializers import EDITABLE_CLIP_FIELDS
from labelling.services import membership as membership_service
from labelling.services import projects, storage, taxonomy


class MembershipInlineFormSet(forms.BaseInlineFormSet):
    """The project page's members: the post as a whole is checked with the membership
    service's rule (a project keeps an active admin: the rows as they will be, additions,
    promotions, demotions and removals together), so that a refusal shows above the rows;
    ProjectAdmin.save_formset then makes each change through the service."""

    def clean(self) -> None:
        super().clean()
        admins_after = 0  # active admins once every row of this post is applied
        for form in self.forms:
            if form.errors or not hasattr(form, "cleaned_data"):
                continue  # the form shows its own errors
            member = form.instance
            deleted = bool(self.can_delete and form.cleaned_data.get("DELETE"))
            role = form.cleaned_data.get("role") or member.role
            if member.pk and "user" in form.changed_data and not deleted:
                form.add_error("user", "Who the member is does not change: remove and add.")
            if not deleted and role == Role.ADMIN and (member.is_active or not member.pk):
                admins_after += 1
        had_admin = Membership.objects.filter(
            project=self.instance, role=Role.ADMIN, is_active=True
        ).exists()
        if self.instance.pk and had_admin and admins_after == 0:
            raise forms.ValidationError("A project keeps at least one active admin.")


class MembershipInline(admin.TabularInline):
    """Staff add existing accounts directly (project admins outside staff invite).
    Deactivation is shown, not changed, here: it goes through the Membership admin (or the
    API), which releases the member's leases. Role changes and removals go through the
    membership service (ProjectAdmin.save_formset)."""

    model = Membership
    formset = MembershipInlineFormSet
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "is_active", "deactivated_at"]
    readonly_fields = ["is_active", "deactivated_at"]

    def _staff(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._staff(request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._staff(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._staff(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._staff(request)


class ProjectForm(forms.ModelForm):
    """Validates a taxonomy switch with the API's rule (labels must map onto the new
    version) and the overlap pair, before anything is saved."""

    class Meta:
        model = Project
        fields = [
            "name", "slug", "description", "guidelines", "taxonomy_version",
            "annotators_per_clip", "is_active", "queue_policy", "lease_seconds", "gold_rate",
            "agreement_routing", "agreement_target", "max_annotators_per_clip", "assisted",
            "autoplay", "require_full_listen", "dimensional_labels",
        ]  # fmt: skip

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what ModelForm.clean returns
        version = data.get("taxonomy_version")
        project = self.instance
        if project.pk and version is not None and version.pk != project.taxonomy_version_id:
            try:
                taxonomy.check_assignment(project, version)
            except taxonomy.MappingError as exc:
                self.add_error("taxonomy_version", exc.problems)
        overlap, maximum = data.get("annotators_per_clip"), data.get("max_annotators_per_clip")
        if overlap and maximum and maximum < overlap:
            self.add_error("max_annotators_per_clip", "Must be at least annotators per clip.")
        return data


@admin.register(Project)
class ProjectAdmin(ProjectScopedAdmin):
    project_field = ""
    form = ProjectForm
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def save_model(self, request: HttpRequest, obj: Project, form: Any, change: bool) -> None:
        if not change:
            obj.save()
            Membership.objects.get_or_create(
                user=signed_in(request.user), project=obj, defaults={"role": Role.ADMIN}
            )
            return
        changes = {field: getattr(obj, field) for field in form.changed_data}
        version = changes.pop("taxonomy_version", None)
        projects.update_project(obj, changes)
        if version is not None:
            taxonomy.assign_to_project(obj, version)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Members: a removal and a change of role through the membership service (leases
        released, the audit log, the last-admin rule checked again on the locked row)."""
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        by = signed_in(request.user)
        formset.save(commit=False)
        # Additions and promotions first, then demotions and removals: the service checks
        # the last-admin rule on each step, against the rows as the earlier steps left them.
        changes = sorted(
            (member for member, fields in formset.changed_objects if "role" in fields),
            key=lambda member: member.role != Role.ADMIN,
        )
        try:
            for member in formset.new_objects:
                member.save()
                membership_service.record_added(member, by=by)
            for member in changes:
                stored = Membership.objects.get(pk=member.pk)
                membership_service.change(stored, by=by, role=member.role)
            for member in formset.deleted_objects:
                membership_service.remove(member, by=by)
        except membership_service.MembershipRefused as exc:  # a race with another change
            raise PermissionDenied(str(exc)) from exc

    def delete_model(self, request: HttpRequest, obj: Project) -> None:

        storage.delete_project(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Project]) -> None:

        for project in queryset:
            storage.delete_project(project)


class MembershipForm(forms.ModelForm):
    """Checks a change of role or of `is_active` with the service's rules (last active
    admin, not oneself) so that a refusal shows beside the form, not as an error page."""

    by: Any = None  # the signed-in user, set by MembershipAdmin.get_form

    class Meta:
        model = Membership
        fields = ["user", "project", "role", "is_active"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what ModelForm.clean returns
        if self.instance.pk and self.by is not None:
            try:
                membership_service.check(
                    self.instance, by=self.by, role=data.get("role"),
                    is_active=data.get("is_active"),
                )  # fmt: skip
            except membership_service.MembershipRefused as exc:
                self.add_error("is_active" if exc.code == "self" else "role", str(exc))
        return data


@admin.register(Membership)
class MembershipAdmin(ProjectScopedAdmin):
    """A change of role or of `is_active` goes through labelling.services.membership, as on
    the API: deactivating releases the member's leases and is recorded in the audit log."""

    form = MembershipForm
    list_display = ["user", "project", "role", "is_active", "deactivated_at", "created_at"]
    list_filter = ["role", "is_active", "project"]
    search_fields = ["user__username", "project__slug"]
    autocomplete_fields = ["user"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:  # a new member is active
            return ["is_active", "deactivated_at", "deactivated_by"]
        # Who the member is, and where, does not change: remove and add instead.
        return ["user", "project", "deactivated_at", "deactivated_by"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        # A subclass of MembershipForm (`form` above), built for this request.
        form = cast(type[MembershipForm], super().get_form(request, obj, change, **kwargs))
        form.by = signed_in(request.user)
        return form

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        if not change:
            obj.save()
            return
        stored = Membership.objects.get(pk=obj.pk)
        membership_service.change(
            stored, by=signed_in(request.user), role=form.cleaned_data.get("role"),
            is_active=form.cleaned_data.get("is_active"),
        )  # fmt: skip

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        self._remove(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset:
            self._remove(request, membership)

    def _remove(self, request: HttpRequest, membership: Membership) -> None:
        try:
            membership_service.remove(membership, by=signed_in(request.user))
        except membership_service.MembershipRefused as exc:
            raise PermissionDenied(str(exc)) from exc


@admin.register(Invitation)
class InvitationAdmin(ProjectScopedAdmin):
    """Invitations are created through the project's API (the token is shown once there);
    here they can be reviewed and deleted."""

    list_display = ["project", "role", "note", "created_by", "expires_at", "accepted_by"]
    list_filter = ["role", "project"]
    exclude = ["token_sha256"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class VersionInline(admin.TabularInline):
    model = TaxonomyVersion
    extra = 0
    fields = readonly_fields = ("number", "note", "created_at")
    fk_name = "taxonomy"
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Taxonomy)
class TaxonomyAdmin(ProjectScopedAdmin):
    """Names and descriptions only: nodes change through versions (the API), so that a
    version in use is never rewritten under its annotators."""

    project_field = "owner_project"
    list_display = ["name", "slug", "owner_project", "created_at"]
    search_fields = ["name", "slug"]
    readonly_fields = ["slug", "owner_project", "created_at"]
    inlines = [VersionInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Taxonomy]:
        return taxonomy.visible_to(request.user)

    def _administers(self, request: HttpRequest, obj: Any) -> bool:
        if obj is not None and obj.owner_project_id is None:  # a preset: staff
            return bool(request.user.is_active and request.user.is_staff)
        return super()._administers(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class ReadOnlyTaxonomyPart(ProjectScopedAdmin):
    read_only = True
    taxonomy_path: str  # the lookup path from the model to its Taxonomy

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        visible = taxonomy.visible_to(request.user)
        return self.model.objects.filter(**{f"{self.taxonomy_path}__in": visible})


@admin.register(TaxonomyVersion)
class TaxonomyVersionAdmin(ReadOnlyTaxonomyPart):
    taxonomy_path = "taxonomy"
    list_display = ["taxonomy", "number", "previous", "note", "created_at"]
    list_filter = ["taxonomy"]


@admin.register(TaxonomyNode)
class TaxonomyNodeAdmin(ReadOnlyTaxonomyPart):
    taxonomy_path = "version__taxonomy"
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
class NodeMappingAdmin(ReadOnlyTaxonomyPart):
    taxonomy_path = "target_version__taxonomy"
    list_display = ["source", "target_version", "target"]
    list_filter = ["target_version"]


class ImportItemInline(admin.TabularInline):
    model = ImportItem
    extra = 0
    fields = readonly_fields = ("name", "status", "reason_code", "reason", "clips_created")
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ImportBatch)
class ImportBatchAdmin(ProjectScopedAdmin):
    read_only = True
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
class ImportItemAdmin(ProjectScopedAdmin):
    read_only = True
    project_field = "batch__project"
    list_display = ["name", "batch", "status", "reason_code", "clips_created", "processed_at"]
    list_filter = ["status", "reason_code"]
    search_fields = ["name", "reason"]


@admin.register(Recording)
class RecordingAdmin(ProjectScopedAdmin):
    read_only = True
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
class ClipAdmin(ProjectScopedAdmin):
    """Descriptive metadata is editable (as in the API); what was measured or stored is not.
    Deleting a clip deletes its labels and removes its audio."""

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
    exclude = ["peaks"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [
            f.name
            for f in Clip._meta.fields
            if f.name not in EDITABLE_CLIP_FIELDS and f.name not in ("peaks", "id")
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # clips come from imports, which decode and check every file

    def delete_model(self, request: HttpRequest, obj: Clip) -> None:

        storage.delete_clip(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Clip]) -> None:

        for clip in queryset:
            storage.delete_clip(clip)


@admin.register(Annotation)
class AnnotationAdmin(ProjectScopedAdmin):
    read_only = True
    project_field = "clip__project"
    list_display = [
        "pk",
        "clip",
        "annotator",
        "node",
        "skip_reason",
        "intensity",
        "unsure",
        "is_current",
        "label_source",
        "suggestion_shown",
        "created_at",
    ]
    list_filter = [
        "is_current", "label_source", "skip_reason", "unsure", "suggestion_shown", "clip__project",
    ]  # fmt: skip
    search_fields = ["annotator__username", "node__key"]


@admin.register(WeakLabel)
class WeakLabelAdmin(ProjectScopedAdmin):
    """External models' predictions, imported by the import_predictions command or API."""

    read_only = True
    project_field = "clip__project"
    list_display = ["clip", "model_name", "model_version", "top_node", "top_probability",
                    "source_file", "imported_by", "imported_at"]  # fmt: skip
    list_filter = ["model_name", "model_version", "clip__project"]
    search_fields = ["model_name", "model_version", "source_file"]


@admin.register(QueueEntry)
class QueueEntryAdmin(ProjectScopedAdmin):
    """The queue as the loop left it, with each clip's selection reason: read-only."""

    read_only = True
    list_display = ["clip", "project", "priority", "target", "open_slots", "is_gold", "updated_at"]
    list_filter = ["project", "is_gold"]
    ordering = ["project", "priority"]


@admin.register(Lease)
class LeaseAdmin(ProjectScopedAdmin):
    read_only = True
    list_display = ["id", "clip", "annotator", "project", "status", "is_gold", "created_at",
                    "expires_at"]  # fmt: skip
    list_filter = ["status", "is_gold", "project"]
    search_fields = ["annotator__username"]


@admin.register(GoldClip)
class GoldClipAdmin(ProjectScopedAdmin):
    """Gold clips are marked through the API (reviewers), which takes them out of the
    regular queue in the same transaction."""

    read_only = True
    project_field = "clip__project"
    list_display = ["clip", "node", "created_by", "created_at"]


@admin.register(GoldResult)
class GoldResultAdmin(ProjectScopedAdmin):
    read_only = True
    project_field = "gold__clip__project"
    list_display = ["annotation", "gold", "correct_core", "correct_exact", "created_at"]
    list_filter = ["correct_core", "correct_exact"]
