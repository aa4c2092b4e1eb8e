"""The dataset versions page: a server-rendered shell that static/js/datasets/ fills from the
dataset API (exports.api), so the page and the API share one set of rules.

ML engineers and admins of the project only (the API's own rule): annotators and reviewers
get 403, non-members 404, like every other project page (labelling.scoping).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from exports.services.versions import MAX_SEED
from labelling.models import ImportBatch, Role
from labelling.scoping import project_page

# The formats a version downloads in (`download.zip?format=…`); the first is the default.
FORMATS = [
    {"value": "native", "label": "EmoLoop native (CSV + JSONL + audio)"},
    {"value": "hf", "label": "Hugging Face audiofolder"},
    {"value": "audformat", "label": "audformat"},
    {"value": "labelstudio", "label": "Label Studio JSON"},
]
# Import batches offered in the create form: the most recent ones.
BATCH_CHOICES = 50


@login_required
@require_GET
def datasets(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_page(request, slug, Role.ML_ENGINEER)
    batches = ImportBatch.objects.filter(project=project).order_by("-pk")[:BATCH_CHOICES]
    api = f"/api/projects/{project.slug}/datasets/"
    config = {
        "project": {"slug": project.slug, "name": project.name},
        "urls": {"list": api},
        "formats": FORMATS,
        "max_seed": MAX_SEED,
        "poll_ms": 1000,
    }
    return render(
        request,
        "exports/datasets.html",
        {
            "project": project,
            "batches": batches,
            "config": config,
            "max_seed": MAX_SEED,
            "role": role.value,
        },
    )
