"""The settings page's two forms, read from the same serializers as the API.

`PATCH /api/projects/<slug>/` (labelling.serializers.ProjectSerializer, admins) and
`PATCH /api/projects/<slug>/learner-settings` (learner.serializers.LearnerSettingsSerializer,
ML engineers) are the rules; the page turns an HTML form into the same data, validates it
with the same serializer and calls the same service. A browser form has no JSON and no null:
a checkbox that is absent is false, an empty number is null where the field allows it, and
the JSON settings (strategy parameters, coverage quotas) are typed as JSON text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.http import QueryDict
from rest_framework import serializers

from labelling import serializers as ls
from labelling.models import Project
from learner import serializers as lrs
from learner.models import SETTINGS_FIELDS, LearnerSettings
from learner.services.reports import LIVE_STRATEGIES

# The project's labelling settings shown on the page (ProjectSerializer takes more: name,
# description and guidelines are edited elsewhere).
PROJECT_FIELDS = (
    "is_active",
    "queue_policy",
    "annotators_per_clip",
    "max_annotators_per_clip",
    "lease_seconds",
    "gold_rate",
    "agreement_routing",
    "agreement_target",
    "assisted",
    "autoplay",
    "require_full_listen",
    "dimensional_labels",
)
JSON_KINDS = (models.JSONField,)


@dataclass
class Field:
    name: str
    label: str
    kind: str  # checkbox | select | number | json
    value: Any
    help: str = ""
    choices: list[tuple[str, str]] = field(default_factory=list)
    minimum: Any = None
    maximum: Any = None
    step: str = "1"
    errors: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        if self.kind == "json":
            return self.value if isinstance(self.value, str) else json.dumps(self.value)
        return "" if self.value is None else str(self.value)


def _bounds(model_field: models.Field) -> tuple[Any, Any]:
    low = high = None
    for validator in model_field.validators:
        if isinstance(validator, MinValueValidator):
            low = validator.limit_value
        elif isinstance(validator, MaxValueValidator):
            high = validator.limit_value
    if isinstance(model_field, models.PositiveIntegerField | models.PositiveSmallIntegerField):
        low = 0 if low is None else low
    return low, high


def _describe(
    model: type[models.Model],
    names: tuple[str, ...],
    values: dict[str, Any],
    choices: dict[str, list[str]] | None = None,
) -> list[Field]:
    out = []
    for name in names:
        f = model._meta.get_field(name)
        assert isinstance(f, models.Field)
        label = str(f.verbose_name).capitalize()
        help_text = str(f.help_text or "")
        if isinstance(f, models.BooleanField):
            out.append(Field(name, label, "checkbox", bool(values.get(name)), help_text))
        elif isinstance(f, JSON_KINDS):
            out.append(Field(name, label, "json", values.get(name) or {}, help_text))
        elif f.choices or (choices and name in choices):
            allowed = (choices or {}).get(name)
            options = [(str(k), str(v)) for k, v in (f.choices or [])]
            if allowed is not None:
                known = dict(options)
                options = [(k, known.get(k, k)) for k in allowed]
            out.append(Field(name, label, "select", values.get(name), help_text, choices=options))
        else:
            low, high = _bounds(f)
            step = "any" if isinstance(f, models.FloatField) else "1"
            out.append(
                Field(
                    name,
                    label,
                    "number",
                    values.get(name),
                    help_text,
                    minimum=low,
                    maximum=high,
                    step=step,
                )
            )
    return out


def project_fields(project: Project, data: dict[str, Any] | None = None) -> list[Field]:
    values = {name: getattr(project, name) for name in PROJECT_FIELDS}
    values.update(data or {})
    return _describe(Project, PROJECT_FIELDS, values)


def learner_fields(
    row: LearnerSettings, available: list[str], data: dict[str, Any] | None = None
) -> list[Field]:
    values = {name: getattr(row, name) for name in SETTINGS_FIELDS}
    values.update(data or {})
    choices = {"feature_set": available, "query_strategy": list(LIVE_STRATEGIES)}
    if row.feature_set not in available:  # keep the saved value visible (and say it)
        choices["feature_set"] = [row.feature_set, *available]
    return _describe(LearnerSettings, SETTINGS_FIELDS, values, choices)


def _from_form(
    post: QueryDict, fields: list[Field], nullable: set[str]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The form's values as the API's JSON would carry them, and JSON syntax errors."""
    data: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for f in fields:
        raw = post.get(f.name)
        if f.kind == "checkbox":
            data[f.name] = raw is not None
        elif f.kind == "json":
            try:
                data[f.name] = json.loads(raw or "{}")
            except json.JSONDecodeError as exc:
                errors[f.name] = [f"Not valid JSON: {exc.msg} (line {exc.lineno})."]
        elif raw is None:
            continue
        elif raw.strip() == "" and f.name in nullable:
            data[f.name] = None
        else:
            data[f.name] = raw.strip()
    unknown = sorted(set(post) - {f.name for f in fields} - {"csrfmiddlewaretoken", "form"})
    for name in unknown:
        errors[name] = ["Unknown field."]
    return data, errors


def _errors(exc_detail: Any) -> dict[str, list[str]]:
    if isinstance(exc_detail, dict):
        return {
            str(k): [str(m) for m in (v if isinstance(v, list) else [v])]
            for k, v in exc_detail.items()
        }
    return {"non_field_errors": [str(m) for m in exc_detail]}


def validate_project(
    project: Project, post: QueryDict
) -> tuple[dict[str, Any], dict[str, list[str]], list[Field]]:
    """Validated changes (for labelling.services.projects.update_project) or field errors."""
    fields = project_fields(project)
    data, errors = _from_form(post, fields, nullable=set())
    if not errors:
        body = ls.ProjectSerializer(project, data=data, partial=True)
        try:
            body.is_valid(raise_exception=True)
        except serializers.ValidationError as exc:
            errors = _errors(exc.detail)
        else:
            return dict(body.validated_data), {}, project_fields(project)
    return {}, errors, _with_errors(project_fields(project, _shown(post, fields)), errors)


def validate_learner(
    row: LearnerSettings, available: list[str], post: QueryDict
) -> tuple[dict[str, Any], dict[str, list[str]], list[Field]]:
    """Validated changes (for learner.services.project_settings.update_settings) or errors."""
    fields = learner_fields(row, available)
    data, errors = _from_form(post, fields, nullable={"epochs"})
    if not errors:
        body = lrs.LearnerSettingsSerializer(row, data=data, partial=True)
        try:
            body.is_valid(raise_exception=True)
        except serializers.ValidationError as exc:
            errors = _errors(exc.detail)
        else:
            return dict(body.validated_data), {}, learner_fields(row, available)
    shown = learner_fields(row, available, _shown(post, fields))
    return {}, errors, _with_errors(shown, errors)


def _shown(post: QueryDict, fields: list[Field]) -> dict[str, Any]:
    """What the user typed, to show again beside the errors."""
    out: dict[str, Any] = {}
    for f in fields:
        if f.kind == "checkbox":
            out[f.name] = f.name in post
        elif f.name in post:
            out[f.name] = post.get(f.name)
    return out


def _with_errors(fields: list[Field], errors: dict[str, list[str]]) -> list[Field]:
    for f in fields:
        f.errors = errors.get(f.name, [])
    return fields
