"""python manage.py ingest PROJECT_SLUG PATH [--manifest FILE] [--segment]"""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from labelling.manifest import ManifestError
from labelling.models import ImportItem, Project
from labelling.services import ingest


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
        project = Project.objects.filter(slug=options["project_slug"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['project_slug']!r}.")
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
            f"Batch #{batch.pk}: {batch.items.count()} file(s), {len(pending)} to process."
        )
        quiet = options["verbosity"] == 0
        if options["in_process"]:
            for item_id in tqdm(pending, desc="ingesting", unit="file", disable=quiet):
                ingest.process_item(item_id)
            ingest.finish_batch_if_complete(batch.pk)
        else:
            from labelling.tasks import dispatch_batch

            dispatch_batch(batch)  # outside a transaction, on_commit runs at once
            if options["no_wait"]:
                self.stdout.write(f"Queued. Follow it with GET /api/imports/{batch.pk}/.")
                return
            self._follow(batch.pk, len(pending), options["timeout"], quiet)
        self._summary(batch.pk)

    def _follow(self, batch_id: int, total: int, timeout: float, quiet: bool) -> None:
        started = time.monotonic()
        with tqdm(total=total, desc="ingesting (workers)", unit="file", disable=quiet) as bar:
            while True:
                counts = ingest.batch_counts(batch_id)
                done = counts.total - counts.pending
                bar.update(done - bar.n)
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
