"""Adjudications in the admin: read-only (they are written by the review service only)."""

from django.contrib import admin

from labelling.scoping import ProjectScopedAdmin
from review.models import Adjudication


@admin.register(Adjudication)
class AdjudicationAdmin(ProjectScopedAdmin):
    read_only = True
    list_display = ("clip", "node", "reviewer", "is_current", "created_at")
    list_filter = ("project", "is_current")
