"""python manage.py ingest PROJECT_SLUG PATH [--manifest FILE] [--segment] [--in-process]"""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from emoloop.commands import project_named
from emoloop.dispatch import BrokerUnavailable
from labelling.manifest import ManifestError
from labelling.models import ImportBatch, ImportItem
from labelling.services import ingest
from labelling.tasks import dispatch_batch


class Command(BaseCommand):
    help = (
        "Import a folder or an archive of audio into a project as one batch. Files are "
        "processed by Celery workers (or in this process with --in-process); a progress bar "
        "follows them and a per-file summary ends the run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project_slug")
        parser.add_argument("path", type=Path, help="A folder, or a .zip/.tar(.gz) archive.")
        parser.add_argument("--manifest", type=Path, help="CSV or JSON-lines metadata per file.")
        parser.add_argument(
            "--segment",
            action="store_true",
            help="Cut long recordings into utterance clips (voice activity).",
        )
        parser.add_argument(
            "--source",
            choices=["folder", "corpus"],
            default="folder",
            help="Record the clips as a folder import or a public corpus.",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--in-process",
            action="store_true",
            help="Process the files here instead of in Celery workers.",
        )
        mode.add_argument(
            "--no-wait",
            action="store_true",
            help="Queue the batch and return without following it.",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=0,
            help="Give up following the batch after this many seconds (0: never).",
        )

    def handle(self, *args, **options) -> None:
        project = project_named(options["project_slug"])
        path = Path(options["path"])
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        manifest = Path(options["manifest"]) if options["manifest"] else None
        if manifest is not None and not manifest.is_file():
            raise CommandError(f"Manifest {manifest} does not exist.")
        try:
            batch = ingest.stage_folder(
                project,
                path,
                manifest_path=manifest,
                segment=options["segment"],
                source=options["source"],
            )
        except (ManifestError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        pending = ingest.pending_item_ids(batch)
        self.stdout.write(
            f"Batch #{batch.pk}: {batch.items.count()} item(s), {len(pending)} to process "
            "(an archive is one item until it is expanded)."
        )
        quiet = options["verbosity"] == 0
        if options["in_process"]:
            self._run_here(batch, quiet)
        else:
            try:
                dispatch_batch(batch)  # outside a transaction: published at once
            except BrokerUnavailable as exc:
                raise CommandError(
                    f"{exc} Start Redis (make run does), or run the import with --in-process."
                ) from exc
            if options["no_wait"]:
                self.stdout.write(f"Queued. Follow it with GET /api/imports/{batch.pk}/.")
                return
            self._follow(batch.pk, options["timeout"], quiet)
        self._summary(batch.pk)

    def _run_here(self, batch: ImportBatch, quiet: bool) -> None:
        """Process every item in this process, archives' members included (they appear as
        pending items when their archive is expanded)."""
        # Taken by this process: the beat task must not send these items to workers too.
        ingest.mark_dispatched(batch.pk)
        tried: set[int] = set()
        with tqdm(desc="ingesting", unit="file", disable=quiet) as bar:
            while True:
                todo = [pk for pk in ingest.pending_item_ids(batch) if pk not in tried]
                if not todo:
                    break
                bar.total = (bar.total or 0) + len(todo)
                for item_id in todo:
                    tried.add(item_id)
                    ingest.process_item(item_id)
                    bar.update()
        ingest.finish_batch_if_complete(batch.pk)

    def _follow(self, batch_id: int, timeout: float, quiet: bool) -> None:
        started = time.monotonic()
        with tqdm(desc="ingesting (workers)", unit="file", disable=quiet) as bar:
            while True:
                counts = ingest.batch_counts(batch_id)
                bar.total = counts.total  # grows as archives are expanded
                bar.update(counts.total - counts.pending - bar.n)
                if counts.done:
                    return
                if timeout and time.monotonic() - started > timeout:
                    raise CommandError(
                        f"{counts.pending} file(s) still pending after {timeout:.0f} s: is a "
                        "Celery worker running? (make run starts one)"
                    )
                time.sleep(0.5)

    def _summary(self, batch_id: int) -> None:
        counts = ingest.batch_counts(batch_id)
        self.stdout.write(
            f"accepted={counts.accepted} duplicate={counts.duplicate} rejected={counts.rejected} "
            f"pending={counts.pending} clips={counts.clips}"
        )
        rejected = ImportItem.objects.filter(batch_id=batch_id, status=ImportItem.Status.REJECTED)
        for item in rejected[:50]:
            self.stdout.write(
                self.style.WARNING(f"  rejected {item.name}: [{item.reason_code}] {item.reason}")
            )
        if rejected.count() > 50:
            self.stdout.write(
                f"  … and {rejected.count() - 50} more (GET /api/imports/{batch_id}/items/)"
            )
