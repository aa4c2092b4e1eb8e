from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

from emoloop import logs


class ContentSecurityPolicyMiddleware:
    """Sends the project's Content-Security-Policy on every response (Django 5.2 has none)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response


class RequestIdMiddleware:
    """Gives each request an id: its `X-Request-ID` header when that is safe (at most 64
    characters of letters, digits and . _ : -), else a new one. The id is sent back in
    `X-Request-ID`, is on every log record written while the request runs (emoloop.logs),
    and travels to the Celery tasks the request sends (emoloop.celery). First in
    MIDDLEWARE, so that everything below it logs with the id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = logs.safe_request_id(request.headers.get("X-Request-ID"))
        request.request_id = rid  # type: ignore[attr-defined]
        # Not reset on the way out: Django logs a 4xx/5xx response after the middleware
        # chain has returned (BaseHandler.get_response); request_finished clears it.
        logs.current_request_id.set(rid)
        response = self.get_response(request)
        response.headers["X-Request-ID"] = rid
        return response


def _forget_request_id(**_: object) -> None:
    logs.current_request_id.set("")


request_finished.connect(_forget_request_id, dispatch_uid="emoloop.forget_request_id")
