"""A project's team: changing a member's role, deactivating and reactivating a member, and
removing one. Every door (the members API, the members page, the Django admin) calls these.

Deactivation is not deletion: the membership row stays, with the member's labels, leases'
history and audit events, but labelling.services.access no longer counts it, so at every
door the member is a stranger to the project (404) and the queue hands them nothing. In
the same transaction their active leases in the project are expired and the slots given
back to the queue (`queue.release_leases`, the expiry reclaim's own code), and the change
is recorded in the audit log (membership.deactivated / membership.reactivated).

The rules:
- A project keeps at least one active admin: the last one cannot be deactivated, demoted
  or removed (`MembershipRefused`, code "last_admin").
- Nobody deactivates their own membership (code "self"): an admin who locked themselves
  out could not undo it; another admin (or staff) does it, or the admin leaves by removal.
- Deactivating a deactivated member (or reactivating an active one) changes nothing and
  records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from labelling.models import Membership, Role
from labelling.services import queue


class MembershipRefused(ValueError):
    """A change the rules above forbid; `code` says which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Changed:
    """What `change` did: the saved membership, which fields changed, leases released."""

    membership: Membership
    role_changed: bool = False
    active_changed: bool = False
    leases_released: int = 0


def _lock(membership: Membership) -> Membership:
    """The membership's row, locked, with the project's active admins locked before it (in
    primary-key order): two admins deactivating each other at once are serialised here, so
    that the second finds the first already gone and is refused as the last admin."""
    list(
        Membership.objects.select_for_update()
        .filter(project_id=membership.project_id, role=Role.ADMIN, is_active=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return (
        Membership.objects.select_for_update()
        .select_related("user", "project")
        .get(pk=membership.pk)
    )


def _keeps_an_admin(row: Membership, *, role: str, active: bool) -> None:
    """Refuse a change that would leave the project without an active admin."""
    if row.role != Role.ADMIN or not row.is_active or (role == Role.ADMIN and active):
        return
    others = Membership.objects.filter(project_id=row.project_id, role=Role.ADMIN, is_active=True)
    if not others.exclude(pk=row.pk).exists():
        raise MembershipRefused("last_admin", "A project keeps at least one active admin.")


def check(
    membership: Membership, *, by: User, role: str | None = None, is_active: bool | None = None
) -> None:
    """The check step of `change` (the admin's form calls it to show the refusal beside the
    field; `change` calls it again on the locked row)."""
    new_role = role if role is not None else membership.role
    active = is_active if is_active is not None else membership.is_active
    if membership.is_active and not active and membership.user_id == by.pk:
        raise MembershipRefused(
            "self", "You cannot deactivate yourself; another admin of the project can."
        )
    _keeps_an_admin(membership, role=new_role, active=active)


def record_added(membership: Membership, *, by: User) -> None:
    """The audit event of a member added at a door (the API, the admin's project page)."""
    audit.record(
        by, "membership.added", project=membership.project, target=membership,
        details={"role": membership.role, "user": membership.user.get_username()},
    )  # fmt: skip


def check_removal(membership: Membership) -> None:
    """The check step of `remove` (the admin's inline form shows the refusal)."""
    _keeps_an_admin(membership, role="", active=False)


def change(
    membership: Membership,
    *,
    by: User,
    role: str | None = None,
    is_active: bool | None = None,
) -> Changed:
    """Change a member's role and/or whether they are active, in one transaction. None
    leaves a field as it is; a value equal to the current one changes nothing."""
    with transaction.atomic():
        row = _lock(membership)
        check(row, by=by, role=role, is_active=is_active)
        new_role = role if role is not None else row.role
        active = is_active if is_active is not None else row.is_active
        role_changed, active_changed = new_role != row.role, active != row.is_active
        if role_changed:
            _set_role(row, new_role, by)
        released = _set_active(row, active, by) if active_changed else 0
    membership.refresh_from_db()
    return Changed(membership, role_changed, active_changed, released)


def _set_role(row: Membership, role: str, by: User) -> None:
    before = row.role
    row.role = role
    row.save(update_fields=["role"])
    audit.record(
        by, "membership.role_changed", project=row.project, target=row,
        details={"role": {"before": before, "after": role}, "user": row.user.get_username()},
    )  # fmt: skip


def _set_active(row: Membership, active: bool, by: User) -> int:
    """Flip the flag; on deactivation release the member's leases (in this transaction:
    the flag and the slots change together or not at all)."""
    released = 0
    if active:
        row.is_active, row.deactivated_at, row.deactivated_by = True, None, None
    else:
        row.is_active, row.deactivated_at, row.deactivated_by = False, timezone.now(), by
    row.save(update_fields=["is_active", "deactivated_at", "deactivated_by"])
    if not active:
        # A next-clip request that passed the door just before this commit may still
        # create a lease afterwards; it expires by itself (the reclaim gives its slot
        # back) and its submit is refused at the door (404).
        released = queue.release_leases(row.project, row.user)
    audit.record(
        by, "membership.deactivated" if not active else "membership.reactivated",
        project=row.project, target=row,
        details={"user": row.user.get_username(), "role": row.role,
                 **({"leases_released": released} if not active else {})},
    )  # fmt: skip
    return released


def deactivate(membership: Membership, *, by: User) -> Changed:
    return change(membership, by=by, is_active=False)


def reactivate(membership: Membership, *, by: User) -> Changed:
    return change(membership, by=by, is_active=True)


def remove(membership: Membership, *, by: User) -> None:
    """Delete a membership. The member's labels stay (they belong to the user); their
    active leases in the project are released first, as on deactivation."""
    with transaction.atomic():
        row = _lock(membership)
        check_removal(row)
        queue.release_leases(row.project, row.user)
        audit.record(
            by, "membership.removed", project=row.project, target=row,
            details={"role": row.role, "user": row.user.get_username()},
        )  # fmt: skip
        row.delete()
