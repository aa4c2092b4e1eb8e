"""Users and roles: /projects/<slug>/members/, for the project's admins (docs/console.md).

Server-rendered: the team with each member's role, whether they are active, when they
joined, their labels in the project and their open leases; the pending invitations. Every
change is the API's (static/js/console/members.js calls /api/projects/<slug>/members/ and
…/invitations/, which go through labelling.services.membership and .invitations). Project
admins only, as the API's writes are: other members get 403, non-members (a deactivated
member included) 404, anonymous visitors the login page.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from labelling.models import Annotation, Invitation, LabelSource, Lease, Membership, Role
from labelling.scoping import project_page


@login_required
@require_GET
def members_page(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_page(request, slug, Role.ADMIN)
    # Two grouped counts, not a join per member: a big project has many labels per member.
    labels = dict(
        Annotation.objects.filter(
            clip__project=project, is_current=True, label_source=LabelSource.HUMAN
        )
        .values_list("annotator_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    leases = dict(
        Lease.objects.filter(project=project, status=Lease.Status.ACTIVE)
        .values_list("annotator_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    members = [
        {
            "membership": membership,
            "labels": labels.get(membership.user_id, 0),
            "leases": leases.get(membership.user_id, 0),
            "is_me": membership.user_id == request.user.pk,
        }
        for membership in Membership.objects.filter(project=project)
        .select_related("user", "deactivated_by")
        .order_by("-is_active", "user__username")
    ]
    pending = (
        Invitation.objects.filter(
            project=project,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .select_related("created_by")
        .order_by("-created_at")
    )
    config = {
        "urls": {
            "members": f"/api/projects/{project.slug}/members/",
            "invitations": f"/api/projects/{project.slug}/invitations/",
        },
    }
    context = {
        "project": project,
        "role": role,
        "page": "members",
        "members": members,
        "pending": list(pending),
        "roles": Role.choices,
        "changed": request.GET.get("changed", ""),
        "config": config,
    }
    return render(request, "console/members.html", context)
