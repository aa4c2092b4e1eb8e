"""API filtering that accepts only whitelisted query parameters.

django-filter silently ignores parameters it does not know, which hides typos and lets a
client probe with lookups such as ``annotator__password__startswith``. Here an unknown
parameter is a 400 that names the allowed ones.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db import models
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

# Parameters that are not filters: pagination, ordering, format suffixes.
NON_FILTER_PARAMS = frozenset({"page", "page_size", "ordering", "format"})


class StrictBooleanField(forms.Field):
    """true/false/1/0 (any case); anything else is an error, not "no filter"."""

    _VALUES = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value: object) -> bool | None:
        if value in (None, ""):
            return None
        parsed = self._VALUES.get(str(value).strip().lower())
        if parsed is None:
            raise forms.ValidationError("Use true or false.", code="invalid")
        return parsed


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class StrictFilterSet(django_filters.FilterSet):
    """django-filter's FilterSet whose boolean filters refuse values they do not know
    (django-filter reads `unsure=abc` as "no filter")."""

    FILTER_DEFAULTS = {
        **django_filters.FilterSet.FILTER_DEFAULTS,
        models.BooleanField: {"filter_class": StrictBooleanFilter},
        models.NullBooleanField: {"filter_class": StrictBooleanFilter},
    }


class StrictFilterBackend(DjangoFilterBackend):
    filterset_base = StrictFilterSet

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        allowed = set(NON_FILTER_PARAMS) | set(getattr(view, "extra_query_params", ()))
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None:
            allowed |= set(filterset_class.base_filters)
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise ValidationError(
                {
                    "detail": f"Unknown query parameter(s): {', '.join(unknown)}.",
                    "allowed": sorted(allowed),
                }
            )
        return super().filter_queryset(request, queryset, view)
