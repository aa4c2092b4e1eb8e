"""Admin: dataset versions, read-only (a version is built by its task and immutable once
ready; new versions come from the API or `manage.py export`)."""

from __future__ import annotations

from django.contrib import admin

from exports.models import DatasetVersion
from labelling.scoping import ProjectScopedAdmin


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ProjectScopedAdmin):
    read_only = True
    list_display = ["project", "number", "status", "created_by", "created_at", "finished_at"]
