"""Quality and review pages (reviewers and above; annotators 403, non-members 404).

The figures come from the project's quality snapshot (review.tasks.fresh_snapshot) and every
page says when they were computed. Sorting the tables is done in the browser
(static/js/review/sort.js); everything else is server-rendered, the adjudication form is a
plain POST. User-supplied text goes through Django's auto-escaping only.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from labelling.models import Clip, Project, Role, TaxonomyNode
from labelling.scoping import project_page, signed_in
from review import presentation
from review.services import adjudication
from review.tasks import fresh_snapshot

QUEUE_PAGE = 50


def _reviewer_project(request: HttpRequest, slug: str) -> Project:
    project, role = project_page(request, slug, Role.REVIEWER)
    # For the project navigation (templates/review/_nav.html): which pages to offer.
    request.project_role = role.value  # type: ignore[attr-defined]
    return project


def _context(project: Project, parts: tuple[str, ...] = ("figures",)) -> dict[str, Any]:
    snapshot, freshness = fresh_snapshot(project, parts)
    figures = snapshot.figures if snapshot and "figures" in parts else {}
    return {
        "project": project,
        "snapshot": snapshot,
        "freshness": freshness,
        "figures": figures,
    }


@login_required
@require_GET
def annotators(request: HttpRequest, slug: str) -> HttpResponse:
    project = _reviewer_project(request, slug)
    context = _context(project)
    context["rows"] = [
        presentation.annotator_row(entry) for entry in context["figures"].get("annotators", [])
    ]
    return render(request, "review/annotators.html", context)


@login_required
@require_GET
def annotator(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    project = _reviewer_project(request, slug)
    context = _context(project, ("figures", "agreement"))
    entry = next((a for a in context["figures"].get("annotators", []) if a["id"] == user_id), None)
    if entry is None:
        raise Http404
    context["row"] = presentation.annotator_row(entry)
    context["weeks"] = presentation.weeks(entry["weeks"])
    context["sparkline"] = presentation.sparkline([w["consensus_share"] for w in entry["weeks"]])
    context["co_raters"] = presentation.co_raters(context["snapshot"].agreement, user_id)
    context["recent"] = presentation.recent_labels(project, user_id)
    return render(request, "review/annotator.html", context)


@login_required
@require_GET
def agreement(request: HttpRequest, slug: str) -> HttpResponse:
    project = _reviewer_project(request, slug)
    context = _context(project, ("agreement",))
    found = context["snapshot"].agreement if context["snapshot"] else {}
    context["rings"] = presentation.rings(found.get("rings", []))
    context["matrix"] = presentation.matrix(found.get("matrix", {"raters": [], "cells": []}))
    context["confused"] = found.get("confused", [])
    context["confused_core"] = found.get("confused_core", [])
    return render(request, "review/agreement.html", context)


@login_required
@require_GET
def review_queue(request: HttpRequest, slug: str) -> HttpResponse:
    project = _reviewer_project(request, slug)
    context = _context(project, ())
    reason = request.GET.get("reason", "")
    if reason not in ("", *presentation.REASONS):
        reason = ""
    pending = presentation.pending(project, reason)
    page = Paginator(pending, QUEUE_PAGE).get_page(request.GET.get("page"))
    context.update(
        {
            "page": page,
            "items": presentation.queue_items(list(page.object_list)),
            "reason": reason,
            "reasons": presentation.REASONS,
            "pending_count": page.paginator.count,
            "done": request.GET.get("done", ""),
        }
    )
    return render(request, "review/queue.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def review_clip(request: HttpRequest, slug: str, clip_id: int) -> HttpResponse:
    project = _reviewer_project(request, slug)
    clip = get_object_or_404(Clip.objects.select_related("project"), pk=clip_id, project=project)
    error = ""
    if request.method == "POST":
        try:
            adjudication.adjudicate(
                clip,
                signed_in(request.user),
                request.POST.get("node", ""),
                request.POST.get("note", "").strip(),
            )
        except adjudication.AdjudicationRefused as exc:
            error = str(exc)
        else:
            return redirect(f"/projects/{project.slug}/review/?done={clip.pk}")
    nodes = TaxonomyNode.objects.filter(version_id=project.taxonomy_version_id).order_by(
        "level", "order"
    )
    history = adjudication.history(clip)
    gold_path, gold_key = presentation.gold_of(clip)
    context = {
        "project": project,
        "clip": clip,
        "labels": presentation.label_rows(adjudication.clip_labels(clip), gold_key),
        "gold": gold_path,
        "options": presentation.node_options(list(nodes)),
        "history": history,
        "current": next((a for a in history if a.is_current), None),
        "error": error,
    }
    return render(request, "review/clip.html", context, status=400 if error else 200)
