from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks

if TYPE_CHECKING:
    from labelling.models import Project

# The learner's periodic tasks and what happens without each (docs/learner.md).
BEAT_TASKS = {
    "learner.tasks.schedule_training": "trainings start by hand only",
    "learner.tasks.backfill_features": "features are computed at the start of each training",
    "learner.tasks.reap_training_runs": "a training whose worker died stays 'running'",
    "learner.tasks.dispatch_pending": "a training saved while the broker was down, or a "
    "rescoring that could not be queued, waits for reap_training_runs (every 120 s)",
}


def check_beat_schedule(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn when a learner task is missing from CELERY_BEAT_SCHEDULE."""
    schedule = getattr(settings, "CELERY_BEAT_SCHEDULE", {}) or {}
    scheduled = {entry.get("task") for entry in schedule.values() if isinstance(entry, dict)}
    return [
        checks.Warning(
            f"{task} is not in CELERY_BEAT_SCHEDULE: {consequence}.",
            hint="See 'Periodic tasks' in docs/learner.md.",
            id="learner.W001",
        )
        for task, consequence in BEAT_TASKS.items()
        if task not in scheduled
    ]


def learner_project_files(project: Any) -> list[str]:
    """Storage names of a project's model artifacts, plots and label snapshots, so that
    deleting the project (labelling.services.storage) removes them too."""
    from learner.models import ModelVersion, TrainingRun  # the app registry is ready here

    names: list[str] = []
    for row in ModelVersion.objects.filter(project=project).values_list(
        "artifact", "confusion_image", "calibration_image"
    ):
        names += [name for name in row if name]
    names += [
        name
        for name in TrainingRun.objects.filter(project=project).values_list(
            "labels_snapshot", flat=True
        )
        if name
    ]
    return names


def suggest(project: Project, clip_id: int) -> dict[str, Any] | None:
    """The assisted mode's suggestion provider (learner.services.suggest), imported when a
    suggestion is first asked for: start-up does not load the model code (torch)."""
    from learner.services.suggest import suggest as provider

    return provider(project, clip_id)


def queue_rescoring(project_id: int, version_id: int) -> bool:
    """The activation hook (learner.tasks.queue_rescoring), imported when a version is first
    activated: start-up does not import the task layer, which imports training (torch)."""
    from learner.tasks import queue_rescoring as dispatch

    return dispatch(project_id, version_id)


class LearnerConfig(AppConfig):
    """Features, training and ranking (filled in by the learner and active-learning work)."""

    name = "learner"
    verbose_name = "Learner"

    def ready(self) -> None:
        from labelling.services.storage import register_project_files
        from labelling.services.suggestions import register_suggestion_provider
        from learner.services.activation import on_activation

        checks.register(check_beat_schedule, checks.Tags.compatibility)
        # labelling never imports learner: the learner tells it which files are a project's
        # and provides the assisted mode's suggestion.
        register_project_files(learner_project_files)
        # Both by a thin wrapper that imports on first call: torch, matplotlib and the task
        # layer stay out of every process that never suggests or activates (web start-up,
        # the dataset export; tests/test_startup_imports.py).
        register_suggestion_provider(suggest)
        # Services never import tasks: activation calls the task layer through a hook.
        on_activation(queue_rescoring)
