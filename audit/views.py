"""The audit log page, /audit/ (server-rendered; the filters are a plain GET form)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import urlencode

from audit.services import events_for, filtered, may_read, readable_projects

PAGE_SIZE = 50


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not may_read(user):
        raise PermissionDenied("The audit log is for instance and project admins.")
    wanted = {key: request.GET.get(key, "").strip()[:150] for key in ("project", "actor", "action")}
    events = filtered(events_for(user), **wanted)
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    projects = readable_projects(user)
    actions = events_for(user).order_by("action").values_list("action", flat=True).distinct()[:200]
    return render(
        request,
        "audit/log.html",
        {
            "page": page,
            "wanted": wanted,
            "projects": projects.order_by("slug").values_list("slug", flat=True),
            "actions": list(actions),
            "query": urlencode({k: v for k, v in wanted.items() if v}),
        },
    )
