"""Who may see and do what: project membership and roles.

Every API view narrows its queryset through these functions, so an object of a project
the user is not a member of is simply not found (404), never merely forbidden.

Only active memberships count: a deactivated member (labelling.services.membership) is a
stranger here, at every door that asks these functions, until they are reactivated.
"""

from __future__ import annotations

import functools

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection
from django.db.models import QuerySet

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
def _project_statements() -> tuple[str, str]:
    def column(model: type, name: str) -> str:
        return connection.ops.quote_name(model._meta.get_field(name).column)

    names = {
        "role": column(Membership, "role"), "membership": rows.table(Membership),
        "project": rows.table(Project), "project_columns": rows.select_list(Project, "p"),
        "project_id": column(Project, "id"), "membership_project": column(Membership, "project"),
        "membership_user": column(Membership, "user"), "slug": column(Project, "slug"),
        "is_active": column(Membership, "is_active"),
    }  # fmt: skip
    return _MEMBER_PROJECT.format(**names), _ANY_PROJECT.format(**names)


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
