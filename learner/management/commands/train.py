"""python manage.py train PROJECT_SLUG [--features NAME] [--queue]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from emoloop.commands import project_named
from emoloop.dispatch import BrokerUnavailable
from learner.features import NAMES
from learner.models import TrainingRun
from learner.services import training
from learner.tasks import start_training


class Command(BaseCommand):
    help = (
        "Train the project's model on its current labels, evaluate it on held-out speakers "
        "and activate it. Runs here by default (same claim as the Celery task: never two "
        "trainings of a project at once); --queue hands it to a worker instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project_slug")
        parser.add_argument(
            "--features", choices=NAMES, help="Feature set (default: the project's)."
        )
        parser.add_argument("--queue", action="store_true", help="Queue it for a Celery worker.")

    def handle(self, *args, **options) -> None:
        project = project_named(options["project_slug"])
        if options["queue"]:
            try:
                run, created = start_training(
                    project, trigger=TrainingRun.Trigger.COMMAND, feature_set=options["features"]
                )
            except BrokerUnavailable as exc:
                raise CommandError(exc.message) from exc
            what = "queued" if created else "already queued or running"
            self.stdout.write(f"Training run #{run.pk} {what}.")
            return
        run, created = training.open_run(
            project, trigger=TrainingRun.Trigger.COMMAND, feature_set=options["features"]
        )
        if not created:
            raise CommandError(
                f"Training run #{run.pk} of {project.slug} is already {run.status}; "
                "wait for it to finish."
            )
        self.stdout.write(f"Training run #{run.pk} of {project.slug} ({run.feature_set})…")
        try:
            ended = training.run_training(run.pk)
        except Exception as exc:
            raise CommandError(f"Training run #{run.pk} failed: {exc}") from exc
        if ended is None or ended.status != TrainingRun.Status.SUCCEEDED:
            status = ended.status if ended else "lost"
            reason = ended.reason if ended else ""
            raise CommandError(f"Training run #{run.pk} ended {status}: {reason}")
        version = ended.model_version
        m = version.metrics
        split = m["split"]
        self.stdout.write(
            self.style.SUCCESS(
                f"Model v{version.number} active: UAR {m['uar']:.3f}, macro-F1 "
                f"{m['macro_f1']:.3f}, accuracy {m['accuracy']:.3f}, ECE "
                f"{m['ece_before']:.3f} -> {m['ece_after']:.3f} on {split['sizes']['test']} "
                f"test clips (split by {split['by']}, {m['normalisation']} normalisation), "
                f"{version.train_seconds:.1f} s."
            )
        )
