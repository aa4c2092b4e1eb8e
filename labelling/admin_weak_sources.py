"""The Django admin's weak-label sources (labelling.models_interop.WeakLabelSource): how much
a project's training trusts each imported model. Registered by labelling.admin (imported
there, so that admin discovery finds it); kept apart because labelling/admin.py is near the
module size limit.
"""

from __future__ import annotations

import threading
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from labelling.models import Project, Role
from labelling.models_interop import WeakLabelSource
from labelling.scoping import ProjectScopedAdmin
from labelling.services import access
from labelling.services.interop import sources as weak_sources

# Per thread, reset by each request of WeakLabelSourceAdmin's pages (which render after the
# view returns, in the same thread): the weak-label source reports of the projects shown.
_REPORTS = threading.local()


class WeakLabelSourceForm(forms.ModelForm):
    class Meta:
        model = WeakLabelSource
        fields = ["project", "model_name", "weight", "enabled", "force"]

    weight = forms.FloatField(
        min_value=0.0, max_value=1.0, initial=WeakLabelSource.DEFAULT_WEIGHT,
        help_text=WeakLabelSource._meta.get_field("weight").help_text,
    )  # fmt: skip


@admin.register(WeakLabelSource)
class WeakLabelSourceAdmin(ProjectScopedAdmin):
    """How much training trusts each imported model, for ML engineers of the project (the
    role the API asks for, PATCH /api/projects/<slug>/predictions/<model>/). Weight, enabled
    and force change through labelling.services.interop.sources.set_source, as on the API,
    which records `weak_source.changed` in the audit log; the agreement with the humans and
    whether the source trains are derived (read-only, computed as the API lists them). A
    source is not deleted here: its predictions stay, and deleting the row would silently
    reset it to the defaults."""

    form = WeakLabelSourceForm
    list_display = ["model_name", "project", "weight", "enabled", "force", "agreement",
                    "flagged", "used_for_training", "updated_at"]  # fmt: skip
    list_filter = ["enabled", "force", "project"]
    search_fields = ["model_name"]
    derived = ["versions", "clips", "overlap", "agreement", "flagged", "used_for_training"]

    def _projects(self, request: HttpRequest) -> QuerySet[Project]:
        return access.projects_where(request.user, Role.ML_ENGINEER)

    def _administers(self, request: HttpRequest, obj: Any) -> bool:
        if not self._allowed(request):
            return False
        if obj is None:
            return request.user.is_superuser or self._projects(request).exists()
        return access.has_role(request.user, obj.project, Role.ML_ENGINEER)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fixed = ["project", "model_name"] if obj is not None else []
        return [*fixed, *self.derived, "updated_at"]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        _REPORTS.by_project = {}  # this request's reports (rendered later, in this thread)
        return super().changelist_view(request, extra_context)

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        _REPORTS.by_project = {}
        return super().changeform_view(request, *args, **kwargs)

    def _report(self, obj: WeakLabelSource) -> weak_sources.SourceReport | None:
        """The source's line of its project's report, computed once per project and request
        (the changelist shows many rows of few projects; a report reads every weak label)."""
        cache: dict[int, dict[str, weak_sources.SourceReport]] | None = getattr(
            _REPORTS, "by_project", None
        )
        if cache is None:
            cache = _REPORTS.by_project = {}
        if obj.project_id not in cache:
            cache[obj.project_id] = {
                r.model_name: r for r in weak_sources.source_reports(obj.project)
            }
        return cache[obj.project_id].get(obj.model_name)

    def _derived(self, obj: WeakLabelSource, name: str) -> Any:
        report = self._report(obj) if obj.pk else None
        return "—" if report is None else getattr(report, name)

    @admin.display(description="model versions")
    def versions(self, obj: WeakLabelSource) -> str:
        found = self._derived(obj, "versions")
        return ", ".join(found) if isinstance(found, list) and found else "—"

    @admin.display(description="clips predicted")
    def clips(self, obj: WeakLabelSource) -> Any:
        return self._derived(obj, "clips")

    @admin.display(description="clips also labelled by humans")
    def overlap(self, obj: WeakLabelSource) -> Any:
        return self._derived(obj, "overlap")

    @admin.display(description="agreement with the humans")
    def agreement(self, obj: WeakLabelSource) -> str:
        share = self._derived(obj, "agreement")
        return f"{share:.0%}" if isinstance(share, float) else "—"

    @admin.display(description="flagged", boolean=True)
    def flagged(self, obj: WeakLabelSource) -> bool | None:
        found = self._derived(obj, "flagged")
        return found if isinstance(found, bool) else None

    @admin.display(description="trains the model", boolean=True)
    def used_for_training(self, obj: WeakLabelSource) -> bool | None:
        found = self._derived(obj, "used_for_training")
        return found if isinstance(found, bool) else None

    def save_model(
        self, request: HttpRequest, obj: WeakLabelSource, form: Any, change: bool
    ) -> None:
        data = form.cleaned_data
        project = obj.project if change else data["project"]
        if not access.has_role(request.user, project, Role.ML_ENGINEER):
            raise PermissionDenied("Weak-label sources are set by the project's ML engineers.")
        saved = weak_sources.set_source(
            project, obj.model_name if change else data["model_name"],
            weight=data.get("weight"), enabled=data.get("enabled"), force=data.get("force"),
        )  # fmt: skip
        obj.pk = saved.pk  # the admin's messages and redirect name the stored row
