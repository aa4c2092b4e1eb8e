"""python manage.py import_predictions SLUG FILE --model NAME --model-version V [--mapping F]
[--preset CORPUS]"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from emoloop.commands import project_named
from labelling.services.interop import PRESETS, InteropError, load_mapping
from labelling.services.interop.predictions import apply_predictions, plan_predictions


class Command(BaseCommand):
    help = (
        "Import an external model's predictions (CSV or JSON lines: clip id or original file "
        "name -> probabilities per label) as weak labels. Everything is checked first; a "
        "fault writes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project_slug")
        parser.add_argument("file", type=Path)
        parser.add_argument("--model", required=True, help="The model's name.")
        parser.add_argument("--model-version", required=True, dest="model_version")
        parser.add_argument("--mapping", type=Path, help="JSON {label: node key or null}.")
        parser.add_argument(
            "--preset", choices=PRESETS, help="Map the model's labels as a corpus preset does."
        )

    def handle(self, *args, **options) -> None:
        project = project_named(options["project_slug"], "taxonomy_version__taxonomy")
        try:
            mapping = load_mapping(
                project,
                preset=options["preset"],
                mapping_path=Path(options["mapping"]) if options["mapping"] else None,
            )
            planned = plan_predictions(
                project, Path(options["file"]), mapping, options["model"], options["model_version"]
            )
            result = apply_predictions(project, planned)
        except InteropError as exc:
            raise CommandError(f"Nothing imported: {exc}") from exc
        self.stdout.write(
            f"rows={result.rows} created={result.created} unchanged={result.unchanged}"
        )
