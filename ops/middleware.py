"""Request latency for /metrics (ops.services.metrics), by route pattern, not raw path."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from ops.services import metrics


class MetricsMiddleware:
    """Times each request from here to the response. High in MIDDLEWARE (just under the
    request id), so that the time includes sessions, authentication and CSRF."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        route = (match.route or match.view_name) if match is not None else ""
        metrics.observe_request(
            route, request.method or "", response.status_code, time.perf_counter() - started
        )
        return response
