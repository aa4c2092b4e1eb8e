"""A project's learner settings (the `LearnerSettings` row): the one way to read and change
them, for training, rescoring, feature extraction, the API and the admin."""

from __future__ import annotations

from typing import Any

from audit import services as audit
from labelling.models import Project
from learner.models import LearnerSettings


def settings_for(project: Project) -> LearnerSettings:
    """The project's learner settings row, created with the defaults on first use."""
    row, _ = LearnerSettings.objects.get_or_create(project=project)
    return row


def update_settings(project: Project, changes: dict[str, Any]) -> LearnerSettings:
    """Apply validated changes to the project's learner settings.

    The row is checked as a whole before it is saved (bounds, and the rules between fields
    such as a strategy's parameters): a django ValidationError leaves it unchanged. The API
    serializer runs the same checks first, so this is the last guard for other callers.
    """
    row = settings_for(project)
    before = {field: getattr(row, field) for field in changes}
    for field, value in changes.items():
        setattr(row, field, value)
    row.full_clean()
    row.save(update_fields=list(changes) or None)
    changed = audit.changes(before, {field: getattr(row, field) for field in changes})
    if changed:
        audit.record(None, "learner.settings_changed", project=project, target=row, details=changed)
    return row


def lock_settings(project_id: int) -> LearnerSettings:
    """Inside a transaction: the project's settings row, locked (SELECT … FOR UPDATE).
    Version numbers and activation are serialised per project on this lock."""
    LearnerSettings.objects.get_or_create(project_id=project_id)
    return LearnerSettings.objects.select_for_update().get(project_id=project_id)
