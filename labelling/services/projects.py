"""Projects: creation and settings changes, with what each change implies for the queue."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from audit import services as audit
from labelling.models import Membership, Project, Role
from labelling.services import queue


class SettingsRejected(ValueError):
    """The combination of settings is not allowed; the message says why."""


@transaction.atomic
def create_project(fields: dict[str, Any], *, creator: User) -> Project:
    """A new project whose creator is its first admin."""
    project = Project.objects.create(**fields)
    Membership.objects.create(user=creator, project=project, role=Role.ADMIN)
    audit.record(creator, "project.created", project=project, target=project)
    return project


@transaction.atomic
def update_project(project: Project, changes: dict[str, Any]) -> Project:
    """Apply validated changes; an overlap change retargets the queue, a new ordering policy
    reorders it."""
    locked = Project.objects.select_for_update().get(pk=project.pk)
    old_overlap, old_policy = locked.annotators_per_clip, locked.queue_policy
    before = {field: getattr(locked, field) for field in changes}
    for field, value in changes.items():
        setattr(locked, field, value)
    if locked.max_annotators_per_clip < locked.annotators_per_clip:
        raise SettingsRejected(
            "max_annotators_per_clip must be at least annotators_per_clip "
            f"({locked.annotators_per_clip})."
        )
    locked.save(update_fields=list(changes) or None)
    if locked.annotators_per_clip != old_overlap:
        queue.retarget(locked, old_overlap=old_overlap)
    if locked.queue_policy != old_policy and locked.queue_policy in ("random", "stratified"):
        queue.reprioritise(locked)
    for field in changes:
        setattr(project, field, getattr(locked, field))
    changed = audit.changes(before, {field: getattr(locked, field) for field in changes})
    if changed:
        audit.record(
            None, "project.settings_changed", project=locked, target=locked, details=changed
        )
    return locked
