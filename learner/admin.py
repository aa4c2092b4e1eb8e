"""Admin: learner settings (with "train now"), training runs, and model versions with their
confusion-matrix and reliability plots.

Media files are not served over HTTP (audio goes through permission-checked views), so the
plots are inlined as data: URIs, which the Content-Security-Policy allows for images.
"""

from __future__ import annotations

import base64

from django.contrib import admin, messages
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from emoloop.dispatch import BrokerUnavailable
from labelling.scoping import ProjectScopedAdmin, signed_in
from learner.models import ClipFeatures, LearnerSettings, ModelVersion, TrainingRun


def _inline_png(name: str | None, alt: str) -> str:
    if not name or not default_storage.exists(name):
        return "—"
    with default_storage.open(name, "rb") as fh:
        data = base64.b64encode(fh.read()).decode()
    return format_html(
        '<img src="data:image/png;base64,{}" alt="{}" style="max-width:640px">', data, alt
    )


@admin.register(LearnerSettings)
class LearnerSettingsAdmin(ProjectScopedAdmin):
    """Every field is bounded by the model's validators, which this form runs too."""

    list_display = [
        "project",
        "feature_set",
        "speaker_normalisation",
        "augmentation",
        "retrain_after_labels",
        "retrain_interval_hours",
    ]
    actions = ["train_now"]

    @admin.action(description="Train now")
    def train_now(self, request: HttpRequest, queryset: QuerySet[LearnerSettings]) -> None:
        # The task layer imports training (torch): imported here, not at admin discovery,
        # so Django start-up stays free of torch (tests/test_startup_imports.py).
        from learner.tasks import start_training

        for row in queryset.select_related("project"):
            try:
                run, created = start_training(
                    row.project, trigger=TrainingRun.Trigger.MANUAL, user=signed_in(request.user)
                )
            except BrokerUnavailable as exc:
                self.message_user(request, f"{row.project}: {exc.message}", messages.WARNING)
                continue
            verb = "queued" if created else "was already queued or running"
            self.message_user(request, f"{row.project}: training run #{run.pk} {verb}.")


@admin.register(TrainingRun)
class TrainingRunAdmin(ProjectScopedAdmin):
    list_display = [
        "pk",
        "project",
        "status",
        "trigger",
        "feature_set",
        "created_at",
        "dispatched_at",
        "reason_code",
    ]
    list_filter = ["status", "trigger", "feature_set"]
    readonly_fields = [f.name for f in TrainingRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(ProjectScopedAdmin):
    list_display = [
        "__str__",
        "is_active",
        "gate_decision",
        "extractor",
        "uar",
        "ece",
        "label_count",
        "created_at",
    ]
    list_filter = ["is_active", "gate_decision", "extractor", "project"]
    readonly_fields = [
        "project",
        "number",
        "run",
        "taxonomy_version",
        "extractor",
        "extractor_version",
        "artifact",
        "artifact_sha256",
        "label_count",
        "train_seconds",
        "is_active",
        "activated_at",
        "created_at",
        "gate_decision",
        "gate_reason",
        "gate_details",
        "confusion_plot",
        "calibration_plot",
        "metrics",
    ]
    exclude = ["confusion_image", "calibration_image", "held_out"]
    actions = ["make_active"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="UAR")
    def uar(self, version: ModelVersion) -> str:
        value = version.metrics.get("uar")
        return f"{value:.3f}" if value is not None else "—"

    @admin.display(description="ECE before → after")
    def ece(self, version: ModelVersion) -> str:
        m = version.metrics
        if m.get("ece_before") is None:
            return "—"
        return f"{m['ece_before']:.3f} → {m['ece_after']:.3f}"

    @admin.display(description="Confusion matrix (core ring, test speakers)")
    def confusion_plot(self, version: ModelVersion) -> str:
        return _inline_png(version.confusion_image.name, "confusion matrix")

    @admin.display(description="Reliability (calibration)")
    def calibration_plot(self, version: ModelVersion) -> str:
        return _inline_png(version.calibration_image.name, "reliability diagram")

    @admin.action(description="Make active (rollback, or a candidate the gate refused)")
    def make_active(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one version.", messages.ERROR)
            return
        from learner.services import training  # torch: imported on use, as in train_now

        version = queryset.get()
        try:
            training.activate(version, signed_in(request.user))
        except training.ArtifactError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{version} is now active.")


@admin.register(ClipFeatures)
class ClipFeaturesAdmin(ProjectScopedAdmin):
    project_field = "clip__project"

    list_display = ["clip", "extractor", "version", "variant", "dim", "created_at"]
    list_filter = ["extractor", "version", "variant"]
    exclude = ["vector"]
    readonly_fields = ["clip", "extractor", "version", "variant", "dim", "created_at"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
