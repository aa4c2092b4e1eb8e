"""Writing and reading the audit log.

`record` is called by the service that holds a rule, inside its transaction, so an event
exists exactly when its change committed. Who may read: instance admins (active staff or
superusers) every event; a project's admins the events of their projects; nobody else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model, Q, QuerySet

from audit.context import current_request
from audit.models import AuditEvent
from labelling.models import Project, Role
from labelling.services import access

# One event's details are bounded: a taxonomy document or a long text is summarised by the
# caller, and anything larger than this is cut (the event says so).
MAX_DETAILS_BYTES = 32_000

Target = Model | tuple[str, object, str]


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON with Django's encoder (dates, decimals, UUIDs as strings)."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, default=str))


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`{field: {"before": old, "after": new}}` for the fields whose value changed."""
    return {
        field: {"before": _json_safe(before.get(field)), "after": _json_safe(value)}
        for field, value in after.items()
        if _json_safe(before.get(field)) != _json_safe(value)
    }


def _target(target: Target | None) -> tuple[str, str, str]:
    if target is None:
        return "", "", ""
    if isinstance(target, Model):
        return target._meta.label_lower, str(target.pk), str(target)[:200]
    kind, pk, label = target
    return kind, str(pk), label[:200]


def _request_actor_and_ip() -> tuple[User | None, str | None]:
    request = current_request.get()
    if request is None:
        return None, None
    user = getattr(request, "user", None)
    actor = user if user is not None and user.is_authenticated else None
    # REMOTE_ADDR: the peer. Behind a proxy it is the proxy's address; the proxy's
    # X-Forwarded-For is not trusted here (anyone can send it).
    return actor, request.META.get("REMOTE_ADDR") or None


def record(
    actor: User | None,
    action: str,
    *,
    project: Project | None = None,
    target: Target | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. `actor` None means the signed-in user of the current request, if
    any (services are called from doors that do not pass the user down); the system
    otherwise."""
    request_actor, ip = _request_actor_and_ip()
    who = actor if actor is not None else request_actor
    payload = _json_safe(dict(details or {}))
    if len(json.dumps(payload)) > MAX_DETAILS_BYTES:
        payload = {"truncated": True, "keys": sorted(payload)[:100]}
    kind, pk, label = _target(target)
    return AuditEvent.objects.create(
        actor=who,
        actor_label=who.get_username() if who is not None else "",
        action=action,
        project=project,
        project_label=project.slug if project is not None else "",
        target_type=kind,
        target_id=pk,
        target_label=label,
        details=payload,
        ip=ip,
    )


def is_instance_admin(user: access.AnyUser) -> bool:
    """Active staff or superuser: the instance's operators (docs/security.md)."""
    return bool(user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser))


def readable_projects(user: access.AnyUser) -> QuerySet[Project]:
    """The projects whose events `user` may read: those they administer (every project for
    a superuser)."""
    return access.projects_where(user, Role.ADMIN)


def may_read(user: access.AnyUser) -> bool:
    """Whether the audit log has anything for `user` (instance admin or a project admin)."""
    return is_instance_admin(user) or readable_projects(user).exists()


def events_for(user: access.AnyUser) -> QuerySet[AuditEvent]:
    """The events `user` may read, newest first.

    A superuser reads every event. Staff are not members of every project
    (docs/security.md), so like any project admin they read the events of the projects they
    administer; staff also read the instance-wide events (no project: task retries, preset
    installs). Anyone else reads nothing.
    """
    events = AuditEvent.objects.select_related("project")
    if user.is_authenticated and user.is_active and user.is_superuser:
        return events
    visible = Q(project__in=readable_projects(user))
    if is_instance_admin(user):
        visible |= Q(project__isnull=True)
    return events.filter(visible)


def filtered(
    events: QuerySet[AuditEvent],
    *,
    project: str = "",
    actor: str = "",
    action: str = "",
) -> QuerySet[AuditEvent]:
    """Narrow by project slug, actor username and action (a dotted prefix such as
    `taxonomy.` matches every taxonomy action)."""
    if project:
        events = events.filter(project__slug=project)
    if actor:
        events = events.filter(actor_label=actor)
    if action:
        events = (
            events.filter(action__startswith=action)
            if action.endswith(".")
            else events.filter(action=action)
        )
    return events
