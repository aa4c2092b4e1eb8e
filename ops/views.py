"""The operations page (/ops/, instance admins), the readiness probe (/readyz) and the
Prometheus metrics (/metrics, behind a bearer token)."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.log import log_response
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from audit.services import is_instance_admin
from ops.serializers import overview_payload
from ops.services import health
from ops.services import metrics as metrics_service


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when every check passes, else 503 naming the failed ones (for load balancers).

    Open to anonymous callers, so the body holds check names, ok and a generic reason code
    (`unreachable`, `timeout`, `refused`, `missing`, `stale`, `error`): no host, URL or
    exception text (those are in `manage.py ops_status` and on /ops/). A 503 is logged at
    WARNING, not as a server error: not being ready is the answer asked for.
    """
    results = health.readiness()
    failed = [c.name for c in results if not c.ok]
    body = {
        "status": "ready" if not failed else "unavailable",
        "failed": failed,
        "checks": {
            c.name: {"ok": c.ok, **({"reason": c.reason} if not c.ok else {})} for c in results
        },
    }
    response = JsonResponse(body, status=200 if not failed else 503)
    if failed:
        # Marks the response as logged, so Django's handler does not log it again as ERROR.
        log_response(
            "Not ready (%s): %s",
            ", ".join(failed),
            request.path,
            response=response,
            request=request,
            level="warning",
        )
    return response


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics (ops.services.metrics). Off (404) unless EMOLOOP_METRICS_TOKEN is
    set; then only for `Authorization: Bearer <token>` (compared in constant time)."""
    token = settings.EMOLOOP_METRICS_TOKEN
    if not token:
        raise Http404("metrics are off (EMOLOOP_METRICS_TOKEN is empty)")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        refused = HttpResponse("a bearer token is required\n", status=401,
                               content_type="text/plain")  # fmt: skip
        refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
    body, content_type = metrics_service.render()
    return HttpResponse(body, content_type=content_type)


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
