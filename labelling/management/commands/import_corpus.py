"""python manage.py import_corpus SLUG PATH --preset emodb|ravdess|cremad|iemocap
[--mapping FILE.json] [--labels CSV] [--in-process]"""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from emoloop.commands import project_named
from emoloop.dispatch import BrokerUnavailable
from labelling.services import ingest
from labelling.services.interop import PRESETS, InteropError, load_mapping
from labelling.services.interop.corpus import CorpusResult, apply_plan, audio_root, plan_corpus
from labelling.tasks import dispatch_batch


class Command(BaseCommand):
    help = (
        "Import a labelled corpus (a folder or archive of audio + a labels CSV): the audio is "
        "ingested as a corpus batch and each labelled clip gets one annotation from the corpus "
        "rater (label_source=corpus). Everything is checked before anything is written; "
        "re-running the same import changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project_slug")
        parser.add_argument("path", type=Path, help="A folder, or a .zip/.tar(.gz) archive.")
        parser.add_argument("--preset", choices=PRESETS, required=True)
        parser.add_argument("--mapping", type=Path, help="JSON {label: node key or null}.")
        parser.add_argument(
            "--labels", type=Path, help="The labels CSV (default: PATH/labels.csv)."
        )
        parser.add_argument(
            "--in-process", action="store_true", help="Ingest here instead of in Celery workers."
        )
        parser.add_argument(
            "--timeout", type=float, default=0, help="Stop following after this many seconds."
        )

    def handle(self, *args, **options) -> None:
        project = project_named(options["project_slug"], "taxonomy_version__taxonomy")
        path = Path(options["path"])
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        labels = options["labels"] or (path / "labels.csv" if path.is_dir() else None)
        if labels is None or not Path(labels).is_file():
            raise CommandError(f"No labels CSV at {labels}: give --labels FILE.csv.")
        quiet = options["verbosity"] == 0
        try:
            mapping = load_mapping(
                project,
                preset=options["preset"],
                mapping_path=Path(options["mapping"]) if options["mapping"] else None,
            )
            with audio_root(path) as root:
                plan = plan_corpus(project, root, Path(labels), mapping, origin=str(path))
                result = apply_plan(plan)
        except InteropError as exc:
            raise CommandError(f"Nothing imported: {exc}") from exc
        self.stdout.write(
            f"{mapping.name}: {result.labels} label(s) mapped, {result.dropped} dropped by the "
            f"mapping; {result.existing_clips} clip(s) already present "
            f"({result.annotations_written} annotation(s) written), {result.new_files} new "
            "file(s) to ingest."
        )
        if result.batch is not None:
            self._ingest(result, options["in_process"], options["timeout"], quiet)
        self.stdout.write(f"labels={result.labels} dropped={result.dropped}")

    def _ingest(self, result: CorpusResult, here: bool, timeout: float, quiet: bool) -> None:
        batch = result.batch
        assert batch is not None
        if here:
            ingest.mark_dispatched(batch.pk)
            todo = ingest.pending_item_ids(batch)
            for item_id in tqdm(todo, desc="ingesting", unit="file", disable=quiet):
                ingest.process_item(item_id)
            ingest.finish_batch_if_complete(batch.pk)
        else:
            try:
                dispatch_batch(batch)
            except BrokerUnavailable as exc:
                raise CommandError(
                    f"{exc} The batch is saved and will be sent when the queue is back; or "
                    "re-run with --in-process."
                ) from exc
            started = time.monotonic()
            with tqdm(desc="ingesting (workers)", unit="file", disable=quiet) as bar:
                while True:
                    counts = ingest.batch_counts(batch.pk)
                    bar.total = counts.total
                    bar.update(counts.total - counts.pending - bar.n)
                    if counts.done:
                        break
                    if timeout and time.monotonic() - started > timeout:
                        raise CommandError(f"{counts.pending} file(s) still pending.")
                    time.sleep(0.5)
        counts = ingest.batch_counts(batch.pk)
        self.stdout.write(
            f"Batch #{batch.pk}: accepted={counts.accepted} duplicate={counts.duplicate} "
            f"rejected={counts.rejected} clips={counts.clips}"
        )
