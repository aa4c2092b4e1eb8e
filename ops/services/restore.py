"""Restoring a backup made by `ops.services.backup` (docs/deploying.md, "Backup and restore").

In this order, so that a refusal changes nothing:

1. check the backup (`open_backup`: complete, every checksum, a format this code reads);
2. refuse a backup whose migration state is newer than this code's migrations;
3. refuse a target database holding rows (beyond what `migrate` writes) unless forced;
4. restore the database (pg_restore --clean --if-exists in one transaction / the SQLite
   backup API), then every object into default_storage, each read back and checked after it
   is written (an object already there with the right checksum is left alone, so a second
   run writes nothing: restoring is idempotent);
5. verify: rows per table and every object's checksum against the manifest.

Objects in the store that the backup does not list are left where they are.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.files import File
from django.core.files.storage import Storage, default_storage
from django.db.migrations.loader import MigrationLoader

from ops.services import backup_db
from ops.services.backup import (
    Backup,
    BackupError,
    Progress,
    extract_tar,
    open_backup,
    open_stream,
    sha256_of,
)


@dataclass
class RestoreSummary:
    tables: int = 0
    rows: int = 0
    objects: int = 0
    written: int = 0
    unchanged: int = 0
    mismatches: list[str] = field(default_factory=list)
    # Migrations this code has beyond the backup's: run `migrate` after restoring.
    pending_migrations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _no_progress(stage: str, done: int, total: int | None) -> None:
    return None


def migration_check(manifest: dict[str, Any]) -> list[str]:
    """The apps whose migrations this code has beyond the backup's (to run `migrate` for);
    raises BackupError if the backup has a migration this code does not know."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    known = set(loader.disk_migrations)
    newer = sorted(
        f"{app}.{name}" for app, name in manifest["migrations"].items() if (app, name) not in known
    )
    if newer:
        code = manifest.get("code") or {}
        raise BackupError(
            "the backup's database has migrations this code does not have ("
            + ", ".join(newer)
            + f"): it was made by newer code (version {code.get('version')}, commit "
            f"{code.get('commit')}); deploy that version, then restore"
        )
    behind = []
    for app, leaf in sorted(loader.graph.leaf_nodes()):
        if manifest["migrations"].get(app) != leaf:
            behind.append(f"{app}.{leaf}")
    return behind


def _stored(storage: Storage, name: str) -> tuple[str, int] | None:
    """(sha256, size) of a stored object, None when it is not there."""
    if not storage.exists(name):
        return None
    with open_stream(storage, name) as fh:
        return sha256_of(fh)


def _put_objects(
    backup: Backup, storage: Storage, summary: RestoreSummary, progress: Progress
) -> None:
    total = backup.manifest["objects"]["count"]
    for done, entry in enumerate(backup.objects(), start=1):
        name, want = entry["name"], (entry["sha256"], entry["size"])
        progress("restoring objects", done, total)
        if _stored(storage, name) == want:
            summary.unchanged += 1
            continue
        if storage.exists(name):
            storage.delete(name)
        with backup.media_path(name).open("rb") as fh:
            saved = storage.save(name, File(fh, name=name))
        if saved != name:
            storage.delete(saved)
            raise BackupError(f"the store saved {name!r} as {saved!r}: restore stopped")
        got = _stored(storage, name)
        if got != want:
            raise BackupError(
                f"object {name!r} reads back as {got} after it was written, expected {want}: "
                "restore stopped (is the store healthy?)"
            )
        summary.written += 1


def verify(backup: Backup, storage: Storage, progress: Progress = _no_progress) -> RestoreSummary:
    """Compare rows per table and every object's checksum with the backup's manifest."""
    summary = RestoreSummary()
    counts = backup_db.table_counts()
    for table, want in sorted(backup.manifest["tables"].items()):
        got = counts.get(table)
        if got != want:
            summary.mismatches.append(f"table {table}: {got} rows, the backup has {want}")
        summary.tables += 1
        summary.rows += got or 0
    total = backup.manifest["objects"]["count"]
    for done, entry in enumerate(backup.objects(), start=1):
        got_object = _stored(storage, entry["name"])
        if got_object is None:
            summary.mismatches.append(f"object {entry['name']}: missing from the store")
        elif got_object != (entry["sha256"], entry["size"]):
            summary.mismatches.append(
                f"object {entry['name']}: {got_object[1]} bytes, SHA-256 {got_object[0]}; "
                f"the backup has {entry['size']} bytes, SHA-256 {entry['sha256']}"
            )
        summary.objects += 1
        progress("verifying", done, total)
    return summary


def _restore_folder(
    folder: Path, *, force: bool, storage: Storage, progress: Progress
) -> RestoreSummary:
    backup = open_backup(folder, progress)
    pending = migration_check(backup.manifest)
    database = backup.manifest["database"]
    if database["vendor"] != backup_db.vendor():
        raise BackupError(
            f"the backup holds a {database['vendor']} database but this instance is "
            f"configured for {backup_db.vendor()}: nothing was changed"
        )
    # A restore replaces the backup's tables; a table it does not hold (made by a newer
    # code's migrations) would survive it, beside migration records that no longer name
    # it, and the next `migrate` would fail on it: restore before migrating, not after.
    extra = sorted(set(backup_db.table_names()) - set(backup.manifest["tables"]))
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise BackupError(
            f"the target database has tables the backup does not hold ({shown}): nothing was "
            "changed. Restore into a database where only `createdb` ran (or one migrated by "
            "the code that made the backup), then run `manage.py migrate`"
        )
    full = backup_db.non_empty_tables()
    if full and not force:
        shown = ", ".join(full[:5]) + (f" and {len(full) - 5} more" if len(full) > 5 else "")
        raise BackupError(
            f"the target database is not empty ({len(full)} tables hold rows: {shown}); "
            "nothing was changed. Restore into an empty database, or give --force to "
            "replace its contents"
        )
    progress("restoring the database", 0, 1)
    backup_db.restore(backup.dump_file, database["vendor"])
    ContentType.objects.clear_cache()  # ids may differ from the ones cached before
    progress("restoring the database", 1, 1)
    written = RestoreSummary()
    if backup.media_included:
        _put_objects(backup, storage, written, progress)
    summary = verify(backup, storage, progress)
    summary.written, summary.unchanged = written.written, written.unchanged
    summary.pending_migrations = pending
    return summary


def restore_backup(
    source: Path,
    *,
    force: bool = False,
    storage: Storage | None = None,
    progress: Progress = _no_progress,
    scratch: Path | None = None,
) -> RestoreSummary:
    """Restore the backup folder (or .tar archive) `source` into the configured database and
    default_storage. Raises BackupError when it refuses or stops; returns the verification's
    summary otherwise (check `.ok`)."""
    storage = storage if storage is not None else default_storage
    source = source.resolve()
    if source.is_file() and source.suffix == ".tar":
        with tempfile.TemporaryDirectory(dir=scratch or source.parent, prefix=".restore-") as tmp:
            folder = extract_tar(source, Path(tmp))
            return _restore_folder(folder, force=force, storage=storage, progress=progress)
    return _restore_folder(source, force=force, storage=storage, progress=progress)
