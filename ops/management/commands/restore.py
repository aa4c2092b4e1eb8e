"""python manage.py restore BACKUP [--force]"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from ops.services.backup import BackupError
from ops.services.restore import restore_backup


class Command(BaseCommand):
    help = (
        "Restore a backup made by `backup` (a folder or .tar) into the configured database "
        "and default storage, then verify rows per table and every object's checksum; exit "
        "status 1 on any mismatch. docs/deploying.md, 'Backup and restore'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("backup", type=Path, help="The backup folder or FILE.tar.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Replace the contents of a database that is not empty.",
        )
        parser.add_argument(
            "--scratch",
            type=Path,
            help="Where to unpack a .tar backup (default: next to it).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        bar = tqdm(unit="file", disable=options["verbosity"] == 0)

        stages: list[str] = []

        def progress(stage: str, done: int, total: int | None) -> None:
            if not stages or stages[-1] != stage:  # a new stage starts its bar from zero
                stages.append(stage)
                bar.reset()
                bar.set_description(stage)
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            summary = restore_backup(
                options["backup"],
                force=options["force"],
                progress=progress,
                scratch=options["scratch"],
            )
        except BackupError as exc:
            raise CommandError(f"Restore refused or stopped: {exc}") from exc
        finally:
            bar.close()
        self.stdout.write(
            f"Restored {options['backup']}\n"
            f"  database: {summary.tables} tables, {summary.rows} rows\n"
            f"  objects: {summary.objects} ({summary.written} written, {summary.unchanged} "
            "already there)"
        )
        if summary.pending_migrations:
            self.stdout.write(
                "  this code has newer migrations than the backup ("
                + ", ".join(summary.pending_migrations)
                + "): run `python manage.py migrate`"
            )
        if not summary.ok:
            for line in summary.mismatches:
                self.stderr.write(f"  MISMATCH {line}")
            raise CommandError(f"Verification failed: {len(summary.mismatches)} mismatches")
        self.stdout.write("Verified: every table's row count and every object's SHA-256 match.")
