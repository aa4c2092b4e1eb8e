"""Joining a project by invitation.

A project admin creates an invitation for a role; whoever redeems its token (signed in)
becomes a member with that role. Only staff add an existing account directly, so a project
admin cannot pull an arbitrary account of the instance into their project. Tokens are shown
once and stored as SHA-256; an invitation is redeemed once and expires.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from labelling.models import ROLE_RANK, Invitation, Membership, Project, Role

DEFAULT_DAYS = 7
MAX_DAYS = 30


class InvitationRefused(ValueError):
    """The token is unknown, used, revoked or expired, or the role is not grantable."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(
    project: Project,
    *,
    role: str,
    by: User,
    by_role: Role,
    note: str = "",
    days: int = DEFAULT_DAYS,
) -> tuple[Invitation, str]:
    """A new invitation and its token (the only time the token exists in clear)."""
    if ROLE_RANK[Role(role)] > ROLE_RANK[by_role]:
        raise InvitationRefused("You cannot invite someone to a role above your own.")
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        project=project,
        role=role,
        token_sha256=_digest(token),
        note=note,
        created_by=by,
        expires_at=timezone.now() + timedelta(days=max(1, min(days, MAX_DAYS))),
    )
    audit.record(
        by,
        "membership.invited",
        project=project,
        target=("labelling.invitation", invitation.pk, f"invitation as {role}"),
        details={"role": role, "expires_at": invitation.expires_at},
    )
    return invitation, token


def find_open(token: str) -> Invitation:
    invitation = (
        Invitation.objects.select_related("project").filter(token_sha256=_digest(token)).first()
    )
    if invitation is None or invitation.revoked_at or invitation.accepted_at:
        raise InvitationRefused("This invitation is not valid (unknown, used or revoked).")
    if invitation.expires_at <= timezone.now():
        raise InvitationRefused("This invitation has expired; ask for a new one.")
    return invitation


@transaction.atomic
def accept(token: str, user: User) -> Membership:
    """Redeem a token: the user joins (or is promoted to) the invitation's role, once."""
    invitation = find_open(token)
    if Membership.objects.filter(user=user, project=invitation.project, is_active=False).exists():
        # An invitation is not a way back in: reactivation is an admin's decision
        # (labelling.services.membership). The token stays unused.
        raise InvitationRefused(
            "Your membership of this project was deactivated; ask one of its admins to "
            "reactivate it."
        )
    # Compare-and-set: of two simultaneous redemptions of one token, one wins.
    claimed = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(
        accepted_at=timezone.now(), accepted_by=user
    )
    if not claimed:
        raise InvitationRefused("This invitation was used already.")
    membership, created = Membership.objects.get_or_create(
        user=user, project=invitation.project, defaults={"role": invitation.role}
    )
    if created:
        audit.record(
            user,
            "membership.added",
            project=invitation.project,
            target=membership,
            details={"role": membership.role, "invitation": invitation.pk},
        )
    elif ROLE_RANK[Role(invitation.role)] > ROLE_RANK[Role(membership.role)]:
        before = membership.role
        membership.role = invitation.role
        membership.save(update_fields=["role"])
        audit.record(
            user,
            "membership.role_changed",
            project=invitation.project,
            target=membership,
            details={"role": {"before": before, "after": membership.role}},
        )
    return membership


def revoke(invitation: Invitation) -> None:
    Invitation.objects.filter(pk=invitation.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
