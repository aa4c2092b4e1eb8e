"""The one project-scoped access layer, for every door: API views, pages and the admin.

In the spirit of PostHog's `TeamAndOrgViewSetMixin`: a view names the role each of its
actions needs; the layer loads the project (from the URL, or from the object), answers 404
to non-members (another project's objects are never confirmed to exist) and 403 with one
error shape to members whose role is too low, and narrows every queryset to the projects
where the caller holds that role. The rules themselves (membership, role order) live in
`labelling.services.access`; the contract is docs/security.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from emoloop import rows, token_auth
from labelling.models import Project, Role
from labelling.services import access

RolePolicy = Role | Mapping[str, Role]

# The mixins below are for these view classes only; the type checker reads them as
# subclasses so that `self.request`, `self.kwargs` and `super()` calls are checked.
if TYPE_CHECKING:
    _APIViewBase = APIView
    _GenericAPIViewBase = GenericAPIView[Any]
else:
    _APIViewBase = _GenericAPIViewBase = object


class RoleRequired(PermissionDenied):
    default_code = "role_required"


def _check_rank(project: Project, role: Role | None, minimum: Role, what: str) -> Role:
    if role is None:
        raise Http404
    if access.ROLE_RANK[role] < access.ROLE_RANK[minimum]:
        raise RoleRequired(f"{what} needs the {Role(minimum).label} role in {project.slug}.")
    return role


def signed_in(user: access.AnyUser) -> User:
    """The caller as a user row, for the services that record who did what.

    Every door that calls this has already required sign-in (the API's IsAuthenticated,
    login_required on pages, the admin site's staff check), so the refusal is a backstop.
    """
    if not user.is_authenticated:
        raise DjangoPermissionDenied("Sign in first.")
    return user


def require_role(
    user: access.AnyUser, project: Project, minimum: Role, *, what: str = "This"
) -> Role:
    """The caller's role in a project they are known to be a member of; 403 if too low."""
    return _check_rank(project, access.role_in(user, project), minimum, what)


def project_by_slug(
    user: access.AnyUser, slug: str, minimum: Role, *, what: str, related: tuple[str, ...] = ()
) -> tuple[Project, Role]:
    """The project named in a URL and the caller's role, in one query (it runs on the
    annotator's hot path: next clip, submit); 404 for non-members, 403 below `minimum`."""
    found = access.project_and_role(user, slug, related=related)
    if found is None:
        raise Http404
    project, role = found
    return project, _check_rank(project, role, minimum, what)


def project_page(
    request: HttpRequest, slug: str, minimum: Role = Role.ANNOTATOR
) -> tuple[Project, Role]:
    """For server-rendered pages: the project and the caller's role, or 404 / 403 (Django's
    PermissionDenied: RoleRequired is the API layer's, which DRF answers)."""
    try:
        return project_by_slug(
            request.user, slug, minimum, what="This page", related=("taxonomy_version__taxonomy",)
        )
    except RoleRequired as exc:
        raise DjangoPermissionDenied(str(exc)) from exc


def _minimum_for(policy: RolePolicy, key: str) -> Role:
    """The role an action needs; an action the policy does not name (an HTTP method the
    view does not serve, such as TRACE) needs the policy's highest role."""
    if isinstance(policy, Role):
        return policy
    if key in policy:
        return policy[key]
    if "*" in policy:
        return policy["*"]
    return max(policy.values(), key=lambda role: access.ROLE_RANK[role])


class ProjectTokenAuthentication(token_auth.TokenAuthentication):
    """The token authentication of views whose URL names a project (`<slug>`): the token,
    its user and the user's role in that project in one query (`access.token_holder`),
    kept on the request for `ProjectScopedMixin`, which then needs no query of its own (a
    database round trip less on every next and submit). Refusals are the token
    authentication's; elsewhere than PostgreSQL it is that class unchanged."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        context = getattr(request, "parser_context", None) or {}
        self.slug = (context.get("kwargs") or {}).get("slug")
        self.request = request
        return super().authenticate(request)

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        if not rows.enabled() or not isinstance(self.slug, str):
            return super().authenticate_credentials(key)
        holder = access.token_holder(key, self.slug)
        if holder is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        accepted = self.accept(key, holder.user, holder.created)
        self.request._request.emoloop_token_holder = holder  # type: ignore[attr-defined]
        return accepted


class ProjectScopedMixin(_APIViewBase):
    """For API views whose URL names the project (`<slug>`).

    `project_roles` maps an action (viewset action or lower-case HTTP method) to the minimum
    role, with "*" as the default; a single Role applies to everything. The project and the
    caller's role are checked before the handler runs and are available as `self.project`
    and `self.role`.
    """

    project_url_kwarg = "slug"
    project_roles: RolePolicy = Role.ANNOTATOR
    project: Project
    role: Role
    # The API's authentication classes, with the token's replaced by the one that also
    # reads the caller's role in the URL's project.
    authentication_classes: list[type[BaseAuthentication]] = [
        ProjectTokenAuthentication if cls is token_auth.TokenAuthentication else cls
        for cls in cast(list[type[BaseAuthentication]], api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    ]

    def get_authenticators(self) -> list[BaseAuthentication]:
        if getattr(self, "swagger_fake_view", False):
            # The API schema documents the API's own schemes: the same Token header, one
            # security component (not a second one named alike for this class).
            documented = cast(
                list[type[BaseAuthentication]], api_settings.DEFAULT_AUTHENTICATION_CLASSES
            )
            return [auth() for auth in documented]
        return super().get_authenticators()

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if getattr(self, "swagger_fake_view", False):
            return
        if not request.user.is_authenticated:
            raise NotAuthenticated
        slug, minimum = self.kwargs[self.project_url_kwarg], self.required_role()
        holder = getattr(request._request, "emoloop_token_holder", None)
        if (
            isinstance(holder, access.TokenHolder)
            and holder.user.pk == request.user.pk
            and holder.slug == slug
            and self.project_url_kwarg == "slug"
        ):
            # Read with the token (ProjectTokenAuthentication): the same answer as
            # project_by_slug's query.
            if holder.project_and_role is None:
                raise Http404
            self.project, role = holder.project_and_role
            self.role = _check_rank(self.project, role, minimum, "This operation")
            return
        self.project, self.role = project_by_slug(
            request.user, slug, minimum, what="This operation"
        )

    def required_role(self) -> Role:
        key = getattr(self, "action", None) or (self.request.method or "").lower()
        return _minimum_for(self.project_roles, key)


class ProjectObjectsMixin(_GenericAPIViewBase):
    """For viewsets of objects that belong to a project (`project_field` is the path to it).

    Lists hold only objects of projects where the caller has the action's role (403 when
    they hold it nowhere, or when the `project` filter names a project where they do not);
    a single object of a project the caller is not a member of is 404, of one where their
    role is too low 403.
    """

    project_field = "project"
    project_roles: RolePolicy = Role.REVIEWER

    def required_role(self) -> Role:
        key = getattr(self, "action", None) or (self.request.method or "").lower()
        return _minimum_for(self.project_roles, key)

    def scoped(self, queryset: QuerySet) -> QuerySet:
        """The queryset narrowed for this request (lists: by role; detail: by membership)."""
        user = self.request.user
        if getattr(self, "swagger_fake_view", False) or not user.is_authenticated:
            return queryset.none()
        minimum = self.required_role()
        if getattr(self, "action", None) == "list":
            allowed = access.projects_where(user, minimum)
            if not allowed.exists():
                raise RoleRequired(
                    f"Listing these needs the {Role(minimum).label} role in a project."
                )
            wanted = self.request.query_params.get("project")
            if wanted:
                project_by_slug(user, wanted, minimum, what="Listing these")
            return queryset.filter(**{f"{self.project_field}__in": allowed})
        return queryset.filter(**{f"{self.project_field}__in": access.projects_for(user)})

    def check_object_permissions(self, request: Request, obj: Any) -> None:
        super().check_object_permissions(request, obj)
        project = self.project_of(obj)
        require_role(request.user, project, self.required_role(), what="This operation")

    def project_of(self, obj: Model) -> Project:
        found: object = obj
        for part in self.project_field.split("__"):
            found = getattr(found, part)
        if not isinstance(found, Project):
            raise TypeError(f"{type(self).__name__}.project_field does not lead to a Project")
        return found


# --- The admin door -----------------------------------------------------------------------


class ProjectScopedAdmin(admin.ModelAdmin):
    """Django admin for objects of a project: staff see and change only objects of projects
    they administer (a superuser sees everything). Model permissions are not used: the
    project role is the permission, as on every other door.

    `project_field` is the lookup path from the model to its Project ("" for Project itself).
    `read_only` admins show their objects but never write them (derived state, labels).
    """

    project_field = "project"
    read_only = False

    def _projects(self, request: HttpRequest) -> QuerySet[Project]:
        return access.projects_where(request.user, Role.ADMIN)

    def _allowed(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        if not self.project_field:
            return queryset.filter(pk__in=self._projects(request).values("pk"))
        return queryset.filter(**{f"{self.project_field}__in": self._projects(request)})

    def _project_of(self, obj: Model) -> Project | None:
        found: object = obj
        for part in self.project_field.split("__") if self.project_field else ():
            found = getattr(found, part, None)
            if found is None:
                return None
        if not isinstance(found, Project):
            raise TypeError(f"{type(self).__name__}.project_field does not lead to a Project")
        return found

    def _administers(self, request: HttpRequest, obj: Model | None) -> bool:
        if not self._allowed(request):
            return False
        if obj is None:
            return request.user.is_superuser or self._projects(request).exists()
        project = self._project_of(obj)
        return project is not None and access.has_role(request.user, project, Role.ADMIN)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._administers(request, None)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._administers(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return not self.read_only and self._administers(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not self.read_only and self._administers(request, None)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return not self.read_only and self._administers(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        if self.read_only:
            return [f.name for f in self.model._meta.fields]
        return super().get_readonly_fields(request, obj)

    def get_list_filter(self, request: HttpRequest) -> Any:
        """A filter on a project offers only the projects the staff user administers."""
        return [
            (entry, ScopedProjectFilter)
            if isinstance(entry, str) and entry.split("__")[-1] in ("project", "owner_project")
            else entry
            for entry in super().get_list_filter(request)
        ]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        """A staff admin picks only projects (and their objects) they administer."""
        if db_field.related_model is Project and not request.user.is_superuser:
            kwargs["queryset"] = self._projects(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ScopedProjectFilter(admin.RelatedFieldListFilter):
    """The admin's "by project" sidebar without the names of other people's projects: the
    projects the model admin itself scopes to (`_projects`: those the user administers, or
    a lower role where that admin opens to it)."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> Any:
        scope = getattr(model_admin, "_projects", None)
        projects = scope(request) if scope else access.projects_where(request.user, Role.ADMIN)
        return field.get_choices(
            include_blank=False,
            ordering=self.field_admin_ordering(field, request, model_admin),
            limit_choices_to={"pk__in": projects.values("pk")},
        )
