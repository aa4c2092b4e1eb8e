"""The ML engineer's workspace: overview, imports, training and models, ranking, settings.

Server-rendered; the figures come from labelling.services.progress and
learner.services.reports, every write goes through the API's serializers and services
(the imports, training and activation buttons call the API itself from static/js/console/).
ML engineers and admins of the project only: reviewers and annotators get 403, non-members
404, anonymous visitors the login page (labelling.scoping, as on every project page).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods

from console import charts, overview, tasks
from console import settings_form as forms
from labelling.models import ImportBatch, ImportItem, Project, Role
from labelling.scoping import project_page
from labelling.services import access, projects
from labelling.services.interop import sources as weak_sources
from learner.models import ModelVersion
from learner.services import project_settings, reports, rescoring

POLL_MS = 1000


def _page(request: HttpRequest, slug: str) -> tuple[Project, Role]:
    return project_page(request, slug, Role.ML_ENGINEER)


def _render(
    request: HttpRequest,
    template: str,
    project: Project,
    role: Role,
    page: str,
    context: dict[str, Any],
    status: int = 200,
) -> HttpResponse:
    context = {
        "project": project,
        "role": role,
        "is_admin": access.ROLE_RANK[role] >= access.ROLE_RANK[Role.ADMIN],
        "page": page,
        **context,
    }
    return render(request, f"console/{template}", context, status=status)


# --- Overview ------------------------------------------------------------------------------


@login_required
@require_GET
def overview_page(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = _page(request, slug)
    html, computed_at = overview.html(project, request_refresh=tasks.request_refresh)
    context = {
        "figures_html": mark_safe(html),  # noqa: S308 - rendered with autoescaping
        "computed_at": computed_at,
        "cache_seconds": overview.FRESH_SECONDS,
    }
    return _render(request, "overview.html", project, role, "overview", context)


# --- Imports -------------------------------------------------------------------------------


@login_required
@require_GET
def imports(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = _page(request, slug)
    batches = list(
        ImportBatch.objects.filter(project=project)
        .select_related("created_by")
        .annotate(
            total=Count("items"),
            accepted=Count("items", filter=Q(items__status=ImportItem.Status.ACCEPTED)),
            duplicate=Count("items", filter=Q(items__status=ImportItem.Status.DUPLICATE)),
            rejected=Count("items", filter=Q(items__status=ImportItem.Status.REJECTED)),
            pending=Count("items", filter=Q(items__status=ImportItem.Status.PENDING)),
            clip_count=Count("clips", distinct=True),
        )
        .order_by("-pk")[:30]
    )
    shown = None
    wanted = request.GET.get("batch")
    if wanted and wanted.isdigit():
        shown = get_object_or_404(ImportBatch, project=project, pk=int(wanted))
    elif batches:
        shown = batches[0]
    items = list(shown.items.order_by("pk")[:500]) if shown is not None else []
    config = {
        "urls": {
            "upload": f"/api/projects/{project.slug}/imports/",
            "batch": "/api/imports/",
            "page": f"/projects/{project.slug}/imports/",
        },
        "poll_ms": POLL_MS,
    }
    return _render(
        request,
        "imports.html",
        project,
        role,
        "imports",
        {
            "batches": batches,
            "shown": shown,
            "items": items,
            "config": config,
        },
    )


# --- Training and models ------------------------------------------------------------------


def _version_or_none(project: Project, raw: str | None) -> ModelVersion | None:
    if raw and raw.isdigit():
        return ModelVersion.objects.filter(project=project, number=int(raw)).first()
    return None


@login_required
@require_GET
def models_page(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = _page(request, slug)
    sets = reports.feature_sets()
    available = [str(s["name"]) for s in sets if s["available"]]
    versions = reports.versions(project)
    curve = reports.learning_curve(project)
    curve_chart = charts.line_chart(
        [
            ("UAR", "line-a", [(labels, m["uar"]) for labels, _n, m in curve]),
            ("Macro-F1", "line-b", [(labels, m["macro_f1"]) for labels, _n, m in curve]),
            ("ECE", "line-c", [(labels, m["ece_after"]) for labels, _n, m in curve]),
        ],
        x_label="labels",
        y_label="score",
        y_max=1.0,
    )
    shown_model = _version_or_none(project, request.GET.get("version"))
    if shown_model is None and versions:
        shown_model = ModelVersion.objects.filter(
            project=project, number=versions[0].number
        ).first()
    shown = reports.facts(shown_model) if shown_model is not None else None
    a = _version_or_none(project, request.GET.get("a"))
    b = _version_or_none(project, request.GET.get("b"))
    comparison = None
    if a is not None and b is not None:
        fa, fb = reports.facts(a), reports.facts(b)
        comparison = {"a": fa, "b": fb, "rows": reports.compare(fa, fb)}
    setting = project_settings.settings_for(project).feature_set
    config = {
        "urls": {
            "runs": f"/api/projects/{project.slug}/training-runs",
            "models": f"/api/projects/{project.slug}/models",
        },
        "poll_ms": POLL_MS,
    }
    return _render(
        request,
        "models.html",
        project,
        role,
        "models",
        {
            "feature_sets": sets,
            "available": available,
            "setting": setting,
            "versions": versions,
            "runs": reports.runs(project),
            "curve": curve,
            "curve_chart": curve_chart,
            "shown": shown,
            "comparison": comparison,
            "trust": {"clips": reports.TRUST_MIN_CLIPS, "speakers": reports.TRUST_MIN_SPEAKERS},
            # Imported models whose predictions may train (read-only here: the API's PATCH
            # and the admin change them, audited).
            "weak_sources": [r.as_dict() for r in weak_sources.source_reports(project)],
            "config": config,
        },
    )


PLOTS = {"confusion": "confusion_image", "reliability": "calibration_image"}


@login_required
@require_GET
def model_plot(request: HttpRequest, slug: str, number: int, kind: str) -> FileResponse:
    """A version's confusion matrix or reliability diagram (the PNG training stored)."""
    project, _role = _page(request, slug)
    if kind not in PLOTS:
        raise Http404("No such plot.")
    version = get_object_or_404(ModelVersion, project=project, number=number)
    name = getattr(version, PLOTS[kind]).name
    if not name or not default_storage.exists(name):
        raise Http404("This version has no such plot.")
    response = FileResponse(default_storage.open(name, "rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


# --- Ranking -------------------------------------------------------------------------------


@login_required
@require_GET
def ranking(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = _page(request, slug)
    report = reports.ranking_report(project)
    histogram = None
    if report is not None:
        histogram = charts.bar_chart(
            [(f"{lo:.1f}-{hi:.1f}", n, "") for lo, hi, n in report.histogram],
            x_label="uncertainty (1 - top probability)",
            y_label="clips",
            label_every=2,
        )
    return _render(
        request,
        "ranking.html",
        project,
        role,
        "ranking",
        {
            "report": report,
            "histogram": histogram,
            "failed_ranking": rescoring.newest_failure(project),
        },
    )


# --- Settings ------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Both forms validate with the API's serializers. Labelling settings are the project
    admins' (as PATCH /api/projects/<slug>/ is); ML engineers see them read-only."""
    project, role = _page(request, slug)
    is_admin = access.ROLE_RANK[role] >= access.ROLE_RANK[Role.ADMIN]
    row = project_settings.settings_for(project)
    available = [str(s["name"]) for s in reports.feature_sets() if s["available"]]
    project_fields = forms.project_fields(project)
    learner_fields = forms.learner_fields(row, available)
    errors: dict[str, list[str]] = {}
    which = request.POST.get("form") if request.method == "POST" else None
    if which == "project":
        if not is_admin:
            raise PermissionDenied("Labelling settings are changed by the project's admins.")
        changes, errors, project_fields = forms.validate_project(project, request.POST)
        if not errors:
            try:
                with transaction.atomic():
                    projects.update_project(project, changes)
            except projects.SettingsRejected as exc:
                errors = {"non_field_errors": [str(exc)]}
            else:
                return redirect(f"/projects/{project.slug}/settings/?saved=project")
    elif which == "learner":
        changes, errors, learner_fields = forms.validate_learner(row, available, request.POST)
        if not errors:
            project_settings.update_settings(project, changes)
            overview.forget(project)  # the overview shows the quotas
            return redirect(f"/projects/{project.slug}/settings/?saved=learner")
    elif request.method == "POST":
        errors = {"form": ["Say which settings this is (form=project or form=learner)."]}
    return _render(
        request,
        "settings.html",
        project,
        role,
        "settings",
        {
            "project_fields": project_fields,
            "learner_fields": learner_fields,
            "errors": errors,
            "which": which,
            "saved": request.GET.get("saved"),
            "may_edit_project": is_admin,
            "unavailable": [s for s in reports.feature_sets() if not s["available"]],
        },
        status=400 if errors else 200,
    )
