"""The operations page (/ops/, instance admins) and the readiness probe (/readyz)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from audit.services import is_instance_admin
from ops.serializers import overview_payload
from ops.services import health


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when every check passes, else 503 naming the failed ones (for load balancers:
    open to anonymous callers, so errors are named by check, with their exception class)."""
    results = health.run_checks()
    failed = [c.name for c in results if not c.ok]
    body = {
        "status": "ready" if not failed else "unavailable",
        "failed": failed,
        "checks": {
            c.name: {
                "ok": c.ok,
                "ms": c.ms,
                **({"error": c.error.split(":")[0]} if c.error else {}),
            }
            for c in results
        },
    }
    return JsonResponse(body, status=200 if not failed else 503)


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@login_required
def ops_page(request: HttpRequest) -> HttpResponse:
    if not is_instance_admin(request.user):
        raise PermissionDenied("Operations are for instance admins (staff).")
    data = overview_payload()
    storage = data["storage"]
    return render(
        request,
        "ops/ops.html",
        {
            "data": data,
            "storage_measured": _when(storage["measured_at"]) if storage else "",
            "heartbeat_at": _when((data["last_heartbeat"] or {}).get("at")),
        },
    )
