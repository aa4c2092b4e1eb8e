"""What every API endpoint shares: one error shape, strict input, honest pagination.

- Errors: every error response is `{"detail": "<sentence>", "code": "<machine code>"}`;
  invalid input (400) adds `"errors": {field: [messages]}`. A broker outage is a 503 with
  code `broker_unavailable` (the work is saved; see emoloop.dispatch).
- Strict serializers: a key the endpoint does not take, or one it only shows, is a 400
  naming it. A PATCH that answers 200 and silently ignores a setting is a bug.
- Pagination: `page_size` is honoured (up to a maximum) and an invalid one is a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import exception_handler as drf_exception_handler

from emoloop.dispatch import BrokerUnavailable

# Keys a browser form adds that are not input.
_FORM_NOISE = frozenset({"csrfmiddlewaretoken"})


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The service is temporarily unavailable; try again shortly."
    default_code = "unavailable"


class Conflict(exceptions.APIException):
    """The request is valid but the state of the object does not allow it (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's current state does not allow this."
    default_code = "conflict"


def _first_message(data: Any) -> str | None:
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        for item in data:
            found = _first_message(item)
            if found:
                return found
    if isinstance(data, Mapping):
        for key, value in data.items():
            found = _first_message(value)
            if found:
                return found if key in ("detail", "non_field_errors") else f"{key}: {found}"
    return None


def _code_of(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return exc.default_code


def exception_handler(exc: Exception, context: dict) -> Any:
    """DRF's handler, then the one error shape."""
    if isinstance(exc, DjangoValidationError):
        # A model's own validation (full_clean in a service) is invalid input too, not a 500.
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        )
    if isinstance(exc, BrokerUnavailable):
        exc = ServiceUnavailable(exc.message, code="broker_unavailable")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(code="not_found")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        errors = data if isinstance(data, Mapping) else {"non_field_errors": data}
        detail = errors.get("detail") if isinstance(errors.get("detail"), str) else None
        response.data = {
            "detail": detail or _first_message(errors) or "Invalid input.",
            "code": "invalid",
            "errors": {k: v for k, v in errors.items() if k != "detail"} or errors,
        }
        return response
    # DRF answers only APIExceptions (the Django ones were converted above).
    if isinstance(data, Mapping) and "detail" in data and isinstance(exc, exceptions.APIException):
        response.data = {"detail": str(data["detail"]), "code": _code_of(exc)}
    return response


class StrictSerializerMixin:
    """Refuse input keys that are unknown or read-only instead of ignoring them."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            fields = self.fields  # type: ignore[attr-defined]
            problems: dict[str, list[str]] = {}
            for key in data:
                if key in _FORM_NOISE:
                    continue
                field = fields.get(key)
                if field is None:
                    known = ", ".join(sorted(n for n, f in fields.items() if not f.read_only))
                    problems[key] = [f"Unknown field. This endpoint takes: {known}."]
                elif field.read_only:
                    problems[key] = ["This field is read-only."]
            if problems:
                raise serializers.ValidationError(problems)
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictSerializer(StrictSerializerMixin, serializers.Serializer):
    pass


class StrictModelSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    pass


class Pagination(PageNumberPagination):
    """Page-number pagination whose `page_size` is honoured and validated."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise exceptions.ValidationError(
                {"page_size": [f"A whole number from 1 to {self.max_page_size}."]}
            )
        return size


class PassthroughRenderer(BaseRenderer):
    """Lets a file response (audio, a dataset file or zip) through content negotiation
    whatever the Accept header; an error on the way (403, 404, 409) still goes out as the
    API's JSON error shape. Subclasses name the `format`."""

    media_type = "*/*"
    format = "file"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> Any:
        if isinstance(data, dict | list):
            response = (renderer_context or {}).get("response")
            if response is not None:
                response["Content-Type"] = "application/json"
            return JSONRenderer().render(data)
        return data
