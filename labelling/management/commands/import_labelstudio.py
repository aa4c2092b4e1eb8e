"""python manage.py import_labelstudio SLUG FILE.json [--audio-dir DIR] [--mapping FILE.json]"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from emoloop.commands import project_named
from labelling.models import Annotation, ImportBatch, LabelSource
from labelling.services import ingest
from labelling.services.interop import InteropError, load_mapping
from labelling.services.interop.labelstudio import apply_labelstudio, plan_labelstudio


class Command(BaseCommand):
    help = (
        "Import a Label Studio JSON export: each task's audio is matched to a clip by file "
        "name (or ingested from --audio-dir), each annotation becomes a corpus annotation "
        "from the rater labelstudio:<completed_by>. Everything is checked first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project_slug")
        parser.add_argument("file", type=Path, help="The export (JSON list of tasks).")
        parser.add_argument("--audio-dir", type=Path, help="Where audio not yet in the project is.")
        parser.add_argument("--mapping", type=Path, help="JSON {label: node key or null}.")

    def handle(self, *args, **options) -> None:
        project = project_named(options["project_slug"], "taxonomy_version__taxonomy")
        audio_dir = Path(options["audio_dir"]) if options["audio_dir"] else None
        if audio_dir is not None and not audio_dir.is_dir():
            raise CommandError(f"{audio_dir} is not a folder.")
        path = Path(options["file"])
        quiet = options["verbosity"] == 0
        imported = Annotation.objects.filter(
            clip__project=project, label_source=LabelSource.CORPUS, is_current=True
        )
        before = imported.count()
        try:
            mapping = load_mapping(
                project, mapping_path=Path(options["mapping"]) if options["mapping"] else None
            )
            plan = plan_labelstudio(project, path, mapping, audio_dir)
            result = apply_labelstudio(project, mapping, *plan, origin=str(path))
            if result.batch_id is not None:
                batch = ImportBatch.objects.get(pk=result.batch_id)
                todo = ingest.pending_item_ids(batch)
                ingest.mark_dispatched(batch.pk)
                for item_id in tqdm(todo, desc="ingesting", unit="file", disable=quiet):
                    ingest.process_item(item_id)
                ingest.finish_batch_if_complete(batch.pk)
                # The other raters' labels of the new files, now that they are clips.
                apply_labelstudio(
                    project, mapping, *plan_labelstudio(project, path, mapping, audio_dir)
                )
        except InteropError as exc:
            raise CommandError(f"Nothing imported: {exc}") from exc
        self.stdout.write(
            f"tasks={result.tasks} labels={result.labels} new_files={result.new_files} "
            f"annotations_written={imported.count() - before}"
        )
