"""A project's team: /api/projects/<slug>/members/ (list, add, change role, deactivate or
reactivate, remove),
/api/projects/<slug>/invitations/ (list, invite, revoke) and
/api/invitations/accept/ (redeem a token).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from emoloop.api_base import Conflict
from labelling import serializers as s
from labelling.api.common import FILTER_BACKENDS, INT_LOOKUP
from labelling.models import Invitation, Membership, Role
from labelling.scoping import ProjectScopedMixin, RoleRequired, signed_in
from labelling.services import invitations
from labelling.services import membership as membership_service


class MembershipViewSet(
    ProjectScopedMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Members of one project. Reviewers and above see the team (deactivated members
    included, with `is_active` false); admins change roles, deactivate, reactivate and
    remove members (labelling.services.membership); adding an existing account directly is
    for staff (others invite)."""

    filter_backends = FILTER_BACKENDS
    filterset_fields = ["role"]
    ordering_fields = ["created_at"]
    project_url_kwarg = "project_slug"
    project_roles = {"list": Role.REVIEWER, "*": Role.ADMIN}
    lookup_value_regex = INT_LOOKUP

    serializer_class = s.MembershipSerializer

    def get_queryset(self) -> QuerySet[Membership]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no project
            return Membership.objects.none()
        # Ordered: pagination over an unordered queryset may repeat or skip members.
        return (
            Membership.objects.filter(project=self.project)
            .select_related("user")
            .order_by("user__username", "pk")
        )

    def perform_create(self, serializer: BaseSerializer[Membership]) -> None:
        user = self.request.user
        if not (user.is_staff or user.is_superuser):
            raise RoleRequired(
                "Project admins add people by invitation (POST …/invitations/); adding an "
                "existing account directly is for staff.",
                code="invite_instead",
            )
        existing = Membership.objects.filter(
            project=self.project, user=serializer.validated_data["user"]
        ).first()
        if existing is not None and not existing.is_active:
            raise ValidationError(
                {"username": "A deactivated member; reactivate them (is_active) instead."}
            )
        if existing is not None:
            raise ValidationError({"username": "Already a member; change the role instead."})
        with transaction.atomic():
            membership = serializer.save(project=self.project)
            membership_service.record_added(membership, by=signed_in(user))

    @extend_schema(request=s.MembershipChangeSerializer, responses={200: s.MembershipSerializer})
    def update(self, request: Request, *args, **kwargs) -> Response:
        """Change a member's role and/or `is_active` (false deactivates them: no access at
        any door, their leases released; true restores access). 409 `last_admin` when the
        project would be left without an active admin, 400 `self` for deactivating
        oneself."""
        partial = kwargs.pop("partial", False)
        membership = self.get_object()
        body = s.MembershipChangeSerializer(membership, data=request.data, partial=partial)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            changed = membership_service.change(
                membership,
                by=signed_in(request.user),
                role=data.get("role"),
                is_active=data.get("is_active"),
            )
        except membership_service.MembershipRefused as exc:
            if exc.code == "last_admin":
                raise Conflict(str(exc), code=exc.code) from exc
            raise ValidationError({"is_active": [str(exc)]}, code=exc.code) from exc
        return Response(s.MembershipSerializer(changed.membership).data)

    @extend_schema(request=s.MembershipChangeSerializer, responses={200: s.MembershipSerializer})
    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        kwargs["partial"] = True
        return self.update(request, *args, **kwargs)

    def perform_destroy(self, instance: Membership) -> None:
        try:
            membership_service.remove(instance, by=signed_in(self.request.user))
        except membership_service.MembershipRefused as exc:
            raise Conflict(str(exc), code=exc.code) from exc


class InvitationViewSet(
    ProjectScopedMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Invitations to join one project (admin). The token is in the creation response only;
    DELETE revokes an unused invitation."""

    serializer_class = s.InvitationSerializer
    filter_backends = FILTER_BACKENDS
    ordering_fields = ["created_at"]
    project_url_kwarg = "project_slug"
    project_roles = Role.ADMIN
    lookup_value_regex = INT_LOOKUP

    def get_queryset(self) -> QuerySet[Invitation]:
        if getattr(self, "swagger_fake_view", False):
            return Invitation.objects.none()
        return Invitation.objects.filter(project=self.project).select_related(
            "created_by", "accepted_by"
        )

    @extend_schema(request=s.InvitationSerializer, responses={201: s.CreatedInvitationSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        body = s.InvitationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            invitation, token = invitations.create(
                self.project,
                role=data["role"],
                by=signed_in(request.user),
                by_role=self.role,
                note=data.get("note", ""),
                days=data["days"],
            )
        except invitations.InvitationRefused as exc:
            raise ValidationError({"role": [str(exc)]}) from exc
        created = s.CreatedInvitationSerializer(
            invitation,
            context={
                "token": token,
                "accept_url": request.build_absolute_uri(f"/invitations/{token}/"),
            },
        )
        return Response(created.data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Invitation) -> None:
        invitations.revoke(instance)


class AcceptInvitationView(viewsets.ViewSet):
    """Redeem an invitation token: the caller joins the project with its role."""

    @extend_schema(request=s.AcceptInvitationSerializer, responses={200: s.MembershipSerializer})
    def create(self, request: Request) -> Response:
        body = s.AcceptInvitationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            membership = invitations.accept(body.validated_data["token"], signed_in(request.user))
        except invitations.InvitationRefused as exc:
            raise ValidationError({"token": [str(exc)]}) from exc
        data = s.MembershipSerializer(membership).data
        data["project"] = membership.project.slug
        return Response(data)
