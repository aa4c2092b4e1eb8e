"""Who may see and do what: project membership and roles.

Every API view narrows its queryset through these functions, so an object of a project
the user is not a member of is simply not found (404), never merely forbidden.

Only active memberships count: a deactivated member (labelling.services.membership) is a
stranger here, at every door that asks these functions, until they are reactivated.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection
from django.db.models import QuerySet
from rest_framework.authtoken.models import Token

from emoloop import rows
from labelling.models import ROLE_RANK, Clip, Lease, Membership, Project, Role

# The project uses Django's own user model (AUTH_USER_MODEL is not set).
AnyUser = User | AnonymousUser


def projects_for(user: AnyUser) -> QuerySet[Project]:
    """The projects a user is a member of (all of them for a superuser)."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    # One filter() call: both conditions bind the same membership row.
    return Project.objects.filter(memberships__user=user, memberships__is_active=True)


def projects_where(user: AnyUser, minimum: Role) -> QuerySet[Project]:
    """Projects in which the user holds at least the given role."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    roles = [role for role, rank in ROLE_RANK.items() if rank >= ROLE_RANK[minimum]]
    return Project.objects.filter(
        memberships__user=user, memberships__is_active=True, memberships__role__in=roles
    )


def role_in(user: AnyUser, project: Project) -> Role | None:
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return Role.ADMIN
    role = (
        Membership.objects.filter(user=user, project=project, is_active=True)
        .values_list("role", flat=True)
        .first()
    )
    return Role(role) if role else None


def has_role(user: AnyUser, project: Project, minimum: Role) -> bool:
    role = role_in(user, project)
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[minimum]


def project_and_role(
    user: AnyUser, slug: str, *, related: tuple[str, ...] = ()
) -> tuple[Project, Role] | None:
    """The project named `slug` (with `related` paths of it joined) and the user's role in
    it, in one query; None if the user is not a member (a superuser is admin of every
    project)."""
    if not user.is_authenticated or "\x00" in slug:
        # No slug holds NUL, and PostgreSQL refuses it in a query parameter (a 500 otherwise).
        return None
    if not related and rows.enabled():
        return _project_and_role_sql(user, slug)
    if user.is_superuser:
        project = Project.objects.select_related(*related).filter(slug=slug).first()
        return (project, Role.ADMIN) if project is not None else None
    membership = (
        Membership.objects.filter(user=user, project__slug=slug, is_active=True)
        .select_related("project", *(f"project__{path}" for path in related))
        .first()
    )
    return (membership.project, Role(membership.role)) if membership else None


# The hot path's form of `project_and_role` (every next and submit asks it): one
# hand-written query (emoloop.rows), the same rows as the ORM's.
_MEMBER_PROJECT = """
SELECT m.{role}, {project_columns}
FROM {membership} m JOIN {project} p ON p.{project_id} = m.{membership_project}
WHERE m.{membership_user} = %s AND p.{slug} = %s AND m.{is_active}
"""
_ANY_PROJECT = "SELECT NULL, {project_columns} FROM {project} p WHERE p.{slug} = %s"


@functools.cache
def _names() -> dict[str, str]:
    """The quoted table and column names the statements below are written with."""
    column = rows.column
    return {
        "role": column(Membership, "role"), "membership": rows.table(Membership),
        "project": rows.table(Project), "project_columns": rows.select_list(Project, "p"),
        "project_id": column(Project, "id"), "membership_project": column(Membership, "project"),
        "membership_user": column(Membership, "user"), "slug": column(Project, "slug"),
        "is_active": column(Membership, "is_active"), "token": rows.table(Token),
        "token_created": column(Token, "created"), "token_user": column(Token, "user"),
        "token_key": column(Token, "key"), "user": rows.table(User),
        "user_id": column(User, "id"), "user_columns": rows.select_list(User, "u"),
    }  # fmt: skip


@functools.cache
def _project_statements() -> tuple[str, str]:
    return _MEMBER_PROJECT.format(**_names()), _ANY_PROJECT.format(**_names())


def _project_and_role_sql(user: User, slug: str) -> tuple[Project, Role] | None:
    member_sql, any_sql = _project_statements()
    with connection.cursor() as cursor:
        if user.is_superuser:
            cursor.execute(any_sql, [slug])
        else:
            cursor.execute(member_sql, [user.pk, slug])
        row = cursor.fetchone()
    if row is None:
        return None
    role = Role.ADMIN if user.is_superuser else Role(row[0])
    return rows.instance(Project, row[1:]), role


# The token authentication of project-scoped API views asks for the token's user and that
# user's membership of the URL's project in one query (labelling.scoping): the same rule
# as `_MEMBER_PROJECT` (an active membership; a superuser is admin of every project).
_HOLDER_MEMBER_PROJECT = """
SELECT t.{token_created}, m.{role}, {user_columns}, {project_columns}
FROM {token} t JOIN {user} u ON u.{user_id} = t.{token_user}
LEFT JOIN {project} p ON p.{slug} = %s
LEFT JOIN {membership} m
  ON m.{membership_project} = p.{project_id} AND m.{membership_user} = u.{user_id}
 AND m.{is_active}
WHERE t.{token_key} = %s
"""


@functools.cache
def _token_member_statement() -> str:
    return _HOLDER_MEMBER_PROJECT.format(**_names())


@dataclass(frozen=True)
class TokenHolder:
    """A token's user, the token's creation time, and what `project_and_role(user, slug)`
    answers for the project named in the request (None: not a member, or no such project)."""

    user: User
    created: datetime
    slug: str
    project_and_role: tuple[Project, Role] | None


def token_holder(key: str, slug: str) -> TokenHolder | None:
    """The holder of API token `key` and their role in project `slug`, in one query on
    PostgreSQL (emoloop.rows); None when no token has this key. The caller checks that
    the user is active."""
    if "\x00" in key or "\x00" in slug:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_token_member_statement(), [slug, key])
        row = cursor.fetchone()
    if row is None:
        return None
    created, role = row[0], row[1]
    split = 2 + rows.width(User)
    user = rows.instance(User, row[2:split])
    found: tuple[Project, Role] | None = None
    if row[split] is not None:  # the project exists
        if user.is_superuser:
            found = (rows.instance(Project, row[split:]), Role.ADMIN)
        elif role is not None:
            found = (rows.instance(Project, row[split:]), Role(role))
    return TokenHolder(user=user, created=created, slug=slug, project_and_role=found)


def annotator_may_hear(user: User, clip: Clip) -> bool:
    """An annotator hears a clip only once it was leased to them, or a segment of the same
    recording (the context playback of neighbouring segments); never the rest of the pool."""
    leases = Lease.objects.filter(annotator=user)
    if leases.filter(clip_id=clip.pk).exists():
        return True
    return (
        clip.recording_id is not None
        and leases.filter(clip__recording_id=clip.recording_id).exists()
    )


def holds_active_lease(user: User, clip: Clip) -> bool:
    return Lease.objects.filter(
        annotator=user, clip_id=clip.pk, status=Lease.Status.ACTIVE
    ).exists()
