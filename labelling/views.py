"""Server-rendered pages. User-supplied text is rendered through Django's auto-escaping only."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from labelling.models import (
    Annotation,
    Clip,
    ImportBatch,
    Intensity,
    Role,
    SkipReason,
    TaxonomyNode,
)
from labelling.scoping import project_page, signed_in
from labelling.services import access, invitations


@login_required
def home(request: HttpRequest) -> HttpResponse:
    projects = (
        access.projects_for(request.user)
        .annotate(clip_count=Count("clips", distinct=True))
        .select_related("taxonomy_version__taxonomy")
        .order_by("name")
    )
    return render(request, "labelling/home.html", {"projects": projects})


@login_required
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """A project's page. Annotators see the context, guidelines and the wheel; label
    statistics, the team and imports are for reviewers and above (labelling stays blind)."""
    project, role = project_page(request, slug)
    sees_statistics = access.ROLE_RANK[role] >= access.ROLE_RANK[Role.REVIEWER]
    context: dict = {
        "project": project,
        "role": role.label,
        "nav_role": role.value,
        "sees_statistics": sees_statistics,
    }
    nodes: list[TaxonomyNode] = []
    version = project.taxonomy_version  # joined by project_page
    if version is not None:
        ordered = version.nodes.order_by("level", "order")
        if sees_statistics:
            ordered = ordered.annotate(
                uses=Count(
                    "annotations",
                    filter=Q(annotations__is_current=True, annotations__label_source="human"),
                )
            )
        nodes = list(ordered)
    context["tree"] = _tree(nodes)
    if sees_statistics:
        clips = Clip.objects.filter(project=project)
        context["stats"] = clips.aggregate(
            count=Count("pk"),
            seconds=Sum("duration_s"),
            speakers=Count("speaker_id", distinct=True),
        )
        context["labelled"] = (
            # The project's own labels: imported corpus labels are kept apart.
            Annotation.objects.filter(clip__project=project, is_current=True, label_source="human")
            .values("clip")
            .distinct()
            .count()
        )
        # Active members first; a deactivated one is shown as such (no member at any door).
        context["members"] = project.memberships.select_related("user").order_by(
            "-is_active", "role", "user__username"
        )
    if access.ROLE_RANK[role] >= access.ROLE_RANK[Role.ML_ENGINEER]:
        context["batches"] = list(
            ImportBatch.objects.filter(project=project)
            .select_related("created_by")
            .annotate(
                total=Count("items"),
                accepted=Count("items", filter=Q(items__status="accepted")),
                duplicate=Count("items", filter=Q(items__status="duplicate")),
                rejected=Count("items", filter=Q(items__status="rejected")),
                pending=Count("items", filter=Q(items__status="pending")),
            )[:20]
        )
    return render(request, "labelling/project_detail.html", context)


@login_required
def label(request: HttpRequest, slug: str) -> HttpResponse:
    """The annotator's workspace; everything it needs to start is in `config`."""
    project, _role = project_page(request, slug)
    version = project.taxonomy_version
    nodes = (
        list(version.nodes.select_related("parent").order_by("level", "order")) if version else []
    )
    config = {
        "project": {
            "slug": project.slug,
            "name": project.name,
            "description": project.description,
            "guidelines": project.guidelines,
        },
        "taxonomy": {
            "version": f"{version.taxonomy.slug}@{version.number}" if version else None,
            "nodes": [
                {
                    "key": n.key,
                    "name": n.name,
                    "parent": n.parent.key if n.parent else None,
                    "level": n.level,
                    "order": n.order,
                    "colour": n.colour,
                    "hotkey": n.hotkey or None,
                    "valence": n.valence,
                    "arousal": n.arousal,
                }
                for n in nodes
            ],
        },
        "settings": {
            "autoplay": project.autoplay,
            "require_full_listen": project.require_full_listen,
            "dimensional": project.dimensional_labels,
            "assisted": project.assisted,
            "context_playback": True,
        },
        "skip_reasons": [{"value": v, "label": str(lbl)} for v, lbl in SkipReason.choices],
        "intensities": [{"value": v, "label": str(lbl)} for v, lbl in Intensity.choices],
        "urls": {
            "next": f"/api/projects/{project.slug}/next/",
            "submit": f"/api/projects/{project.slug}/annotations/",
            "undo": f"/api/projects/{project.slug}/undo/",
        },
        "user": {"username": request.user.get_username()},
    }
    return render(request, "labelling/label.html", {"project": project, "config": config})


@login_required
@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """The page an invitation link opens: what it offers, and a button to accept it."""
    try:
        offer = invitations.find_open(token)
    except invitations.InvitationRefused as exc:
        return render(request, "labelling/invitation.html", {"error": str(exc)}, status=404)
    if request.method == "POST":
        try:
            membership = invitations.accept(token, signed_in(request.user))
        except invitations.InvitationRefused as exc:
            return render(request, "labelling/invitation.html", {"error": str(exc)}, status=409)
        return redirect("project-detail", slug=membership.project.slug)
    return render(request, "labelling/invitation.html", {"offer": offer})


def _tree(nodes: list[TaxonomyNode]) -> list[dict]:
    children: dict[int | None, list] = {}
    for node in nodes:
        children.setdefault(node.parent_id, []).append(node)

    def build(parent_id: int | None) -> list[dict]:
        return [{"node": n, "children": build(n.pk)} for n in children.get(parent_id, [])]

    return build(None)


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and `make run`: answers only when the database does."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
