"""python manage.py backup --out DIR|FILE.tar [--manifest-only]"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from ops.services.backup import BackupError, make_backup


class Command(BaseCommand):
    help = (
        "Back up the database (pg_dump, or SQLite's backup API) and every stored object "
        "(name, size, SHA-256; the objects themselves unless --manifest-only) into a new "
        "folder, or a .tar archive; docs/deploying.md, 'Backup and restore'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--out",
            type=Path,
            required=True,
            help="A new folder, or a new FILE.tar; written as <out>.partial and renamed "
            "when complete.",
        )
        media = parser.add_mutually_exclusive_group()
        media.add_argument(
            "--with-media",
            dest="with_media",
            action="store_true",
            default=True,
            help="Copy every stored object into the backup (the default).",
        )
        media.add_argument(
            "--manifest-only",
            dest="with_media",
            action="store_false",
            help="List the objects with their checksums but do not copy them (for object "
            "stores that replicate themselves).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        bar = tqdm(unit="file", disable=options["verbosity"] == 0)

        def progress(stage: str, done: int, total: int | None) -> None:
            bar.set_description(stage)
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            summary = make_backup(
                options["out"], with_media=options["with_media"], progress=progress
            )
        except BackupError as exc:
            raise CommandError(f"Backup failed: {exc}") from exc
        finally:
            bar.close()
        media = "copied" if summary.media_included else "listed only (--manifest-only)"
        self.stdout.write(
            f"Backup complete: {summary.path}\n"
            f"  database ({summary.database}): {summary.tables} tables, {summary.rows} rows\n"
            f"  objects: {summary.objects} ({summary.object_bytes} bytes), {media}"
        )
        if summary.vanished:
            self.stdout.write(
                f"  {len(summary.vanished)} objects were deleted while the backup ran and are "
                "not in it (listed in manifest.json under 'vanished')"
            )
