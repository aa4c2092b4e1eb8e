"""Backups of an instance: the database and every stored object (docs/deploying.md,
"Backup and restore"). `manage.py backup` is a thin door over `make_backup`; restoring is
`ops.services.restore`.

A backup is a folder (or that folder as a .tar):

- ``database.dump`` (PostgreSQL, ``pg_dump --format=custom``) or ``database.sqlite3``;
- ``objects.jsonl``: one line per stored object, ``{"name", "size", "sha256"}``, read through
  ``default_storage`` (local folder or S3 alike) in blocks, written as it is read, so neither
  the listing nor a file is ever held whole in memory;
- ``media/<name>``: the objects themselves (left out with ``--manifest-only``, for object
  stores that replicate themselves: the backup then says what the store must hold);
- ``manifest.json``: time, code version, the latest applied migration per app, rows per table
  (counted in the dump's own snapshot), and the size and SHA-256 of the dump and of
  ``objects.jsonl``;
- ``COMPLETE``: written last, with the SHA-256 of ``manifest.json``.

Everything is written into ``DIR.partial`` and renamed to ``DIR`` at the end, so a backup that
was interrupted never looks complete: it has the wrong name, and no ``COMPLETE`` marker.
Objects are read after the database is dumped: an object written meanwhile may be listed
without a row pointing at it (harmless); one deleted meanwhile is listed under ``vanished``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import IO, Any

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from ops.services import backup_db
from ops.services.backup_db import BackupError

__all__ = ["Backup", "BackupError", "make_backup", "open_backup", "walk_storage"]

FORMAT = "emoloop-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
OBJECTS = "objects.jsonl"
COMPLETE = "COMPLETE"
MEDIA = "media"
BLOCK = 1 << 20  # bytes read at a time: memory stays bounded whatever the file's size

# progress(stage, done, total): total is None while it is not known yet.
Progress = Callable[[str, int, int | None], None]


def _no_progress(stage: str, done: int, total: int | None) -> None:
    return None


# --- Files and names --------------------------------------------------------------------


def sha256_of(handle: IO[bytes], copy_to: IO[bytes] | None = None) -> tuple[str, int]:
    """SHA-256 and size of what `handle` reads, block by block (copied on when asked)."""
    digest = hashlib.sha256()
    size = 0
    while block := handle.read(BLOCK):
        digest.update(block)
        size += len(block)
        if copy_to is not None:
            copy_to.write(block)
    return digest.hexdigest(), size


def file_sha256(path: Path) -> tuple[str, int]:
    with path.open("rb") as fh:
        return sha256_of(fh)


def safe_name(name: str) -> PurePosixPath:
    """A storage name as a relative path that cannot leave the folder it is joined to."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or any(p in {"", ".", ".."} for p in name.split("/")):
        raise BackupError(f"refusing the object name {name!r}: not a plain relative name")
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict[str, Any]) -> str:
    """Write JSON durably; return its SHA-256."""
    raw = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    with path.open("wb") as fh:
        fh.write(raw)
        fh.flush()
        os.fsync(fh.fileno())
    return hashlib.sha256(raw).hexdigest()


# --- Walking the store ------------------------------------------------------------------


def walk_storage(storage: Storage, folder: str = "") -> Iterator[str]:
    """Every object's name in the store, depth first, each folder's entries sorted.

    A folder removed while it is walked (a scratch folder under MEDIA_ROOT) is passed over.
    """
    try:
        folders, files = storage.listdir(folder)
    except FileNotFoundError:
        return
    prefix = f"{folder}/" if folder else ""
    for name in sorted(files):
        yield prefix + name
    for sub in sorted(folders):
        yield from walk_storage(storage, prefix + sub)


@contextmanager
def open_stream(storage: Storage, name: str) -> Iterator[IO[bytes]]:
    """A stored object, to read in blocks.

    django-storages' S3 file downloads the whole object into its spool before the first read
    (in memory up to `max_memory_size`, then a temporary file: a second copy on local disk),
    so an S3 object is read from the response's body stream instead, one block at a time
    (a 300 MB object: 3.0 s and 14 MB instead of 31 s and 66 MB; bench/backup_s3_read.py).
    """
    if isinstance(storage, S3Storage):  # default_storage, a lazy object, passes as its class
        key = storage._normalize_name(clean_name(name))
        try:
            body = storage.bucket.Object(key).get()["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise FileNotFoundError(name) from exc
            raise
        try:
            yield body
        finally:
            body.close()
        return
    with storage.open(name, "rb") as fh:
        yield fh


def _read_object(storage: Storage, name: str, copy_to: Path | None) -> tuple[str, int] | None:
    """(sha256, size) of a stored object, copied to `copy_to` when given; None if it was
    deleted between the listing and the read."""
    try:
        with open_stream(storage, name) as fh:
            if copy_to is None:
                return sha256_of(fh)
            copy_to.parent.mkdir(parents=True, exist_ok=True)
            with copy_to.open("wb") as out:
                return sha256_of(fh, out)
    except Exception:
        if storage.exists(name):
            raise
        if copy_to is not None:
            copy_to.unlink(missing_ok=True)
        return None


# --- Making one -------------------------------------------------------------------------


@dataclass
class BackupSummary:
    path: str
    database: str
    tables: int
    rows: int
    objects: int
    object_bytes: int
    media_included: bool
    vanished: list[str]


def code_version() -> dict[str, str | None]:
    """The installed package's version and, in a git checkout, the commit."""
    try:
        version: str | None = metadata.version("emoloop")
    except metadata.PackageNotFoundError:
        version = None
    commit = None
    if (Path(settings.BASE_DIR) / ".git").exists() and shutil.which("git"):
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        commit = done.stdout.strip() or None
    return {"version": version, "commit": commit}


def _storage_backend(storage: Storage) -> str:
    kind = storage.__class__  # default_storage is a lazy object: type() would say so
    return f"{kind.__module__}.{kind.__qualname__}"


def _write_objects(
    storage: Storage, folder: Path, with_media: bool, progress: Progress
) -> tuple[dict[str, Any], list[str]]:
    count = total = 0
    vanished: list[str] = []
    digest = hashlib.sha256()
    with (folder / OBJECTS).open("wb") as listing:
        for name in walk_storage(storage):
            copy_to = folder / MEDIA / safe_name(name) if with_media else None
            read = _read_object(storage, name, copy_to)
            if read is None:
                vanished.append(name)
                continue
            sha, size = read
            line = (json.dumps({"name": name, "sha256": sha, "size": size}) + "\n").encode()
            listing.write(line)
            digest.update(line)
            count += 1
            total += size
            progress("objects", count, None)
        listing.flush()
        os.fsync(listing.fileno())
    return {"file": OBJECTS, "sha256": digest.hexdigest(), "count": count, "bytes": total}, vanished


def _to_tar(folder: Path, archive: Path) -> None:
    partial = archive.with_name(archive.name + ".partial")
    partial.touch(mode=0o600)
    partial.chmod(0o600)
    with tarfile.open(partial, "w") as tar:
        tar.add(folder, arcname=archive.stem)
    with partial.open("rb") as fh:
        os.fsync(fh.fileno())
    partial.rename(archive)
    shutil.rmtree(folder)


def make_backup(
    out: Path,
    *,
    with_media: bool = True,
    storage: Storage | None = None,
    progress: Progress = _no_progress,
) -> BackupSummary:
    """Back the instance up into the folder `out` (or the archive `out` if it ends in .tar).

    Refuses a target that exists, or whose ``.partial`` exists (a backup writing there now,
    or one that was interrupted: delete it).
    """
    storage = storage if storage is not None else default_storage
    out = out.resolve()
    as_tar = out.suffix == ".tar"
    folder = out.with_name(out.name + (".d.partial" if as_tar else ".partial"))
    for taken in (out, folder, out.with_name(out.name + ".partial")):
        if taken.exists():
            raise BackupError(
                f"{taken} exists: choose another target"
                + (" (or delete it: an interrupted backup)" if taken != out else "")
            )
    if isinstance(storage, FileSystemStorage):
        root = Path(storage.location).resolve()
        if out == root or root in out.parents:
            raise BackupError(
                f"{out} is inside the media folder {root}: the backup would copy itself; "
                "write it outside"
            )
    folder.parent.mkdir(parents=True, exist_ok=True)
    # The dump holds password hashes, sessions and API tokens: the owner alone may read it
    # (the folder is 0700 whatever the umask; the archive is made 0600 below).
    folder.mkdir(mode=0o700)
    folder.chmod(0o700)
    try:
        progress("database", 0, 1)
        db = backup_db.dump(folder)
        dump_sha, dump_size = file_sha256(folder / db.file)
        progress("database", 1, 1)
        objects, vanished = _write_objects(storage, folder, with_media, progress)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(),
            "code": code_version(),
            "database": {
                "vendor": db.vendor,
                "file": db.file,
                "server_version": db.server_version,
                "tool": db.tool,
                "sha256": dump_sha,
                "size": dump_size,
            },
            "migrations": db.migrations,
            "tables": db.tables,
            "storage": {"backend": _storage_backend(storage), "media_included": with_media},
            "objects": objects,
            "vanished": vanished,
        }
        manifest_sha = _write_json(folder / MANIFEST, manifest)
        _write_json(folder / COMPLETE, {"format": FORMAT, "manifest_sha256": manifest_sha})
        _fsync_dir(folder)
        if as_tar:
            _to_tar(folder, out)
        else:
            folder.rename(out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return BackupSummary(
        path=str(out),
        database=db.vendor,
        tables=len(db.tables),
        rows=sum(db.tables.values()),
        objects=objects["count"],
        object_bytes=objects["bytes"],
        media_included=with_media,
        vanished=vanished,
    )


# --- Reading one ------------------------------------------------------------------------


@dataclass
class Backup:
    """A backup folder whose manifest, dump and object list were checked against COMPLETE."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def media_included(self) -> bool:
        return bool(self.manifest["storage"]["media_included"])

    @property
    def dump_file(self) -> Path:
        return self.folder / self.manifest["database"]["file"]

    def objects(self) -> Iterator[dict[str, Any]]:
        """The object list, one entry at a time."""
        with (self.folder / OBJECTS).open("rb") as fh:
            for line in fh:
                entry = json.loads(line)
                safe_name(entry["name"])
                yield entry

    def media_path(self, name: str) -> Path:
        return self.folder / MEDIA / safe_name(name)


def _expect(path: Path, sha: str, size: int, what: str) -> None:
    if not path.is_file():
        raise BackupError(f"the backup is damaged: {what} {path} is missing")
    got_sha, got_size = file_sha256(path)
    if (got_sha, got_size) != (sha, size):
        raise BackupError(
            f"the backup is damaged: {what} {path} has {got_size} bytes, SHA-256 {got_sha}; "
            f"the manifest says {size} bytes, SHA-256 {sha} (truncated or changed)"
        )


def extract_tar(archive: Path, into: Path) -> Path:
    """Unpack a backup archive (tarfile's 'data' filter: no links out, no absolute names)."""
    with tarfile.open(archive) as tar:
        tops = {PurePosixPath(m.name).parts[0] for m in tar.getmembers() if m.name}
        if len(tops) != 1:
            raise BackupError(f"{archive} is not a backup archive (one top folder expected)")
        tar.extractall(into, filter="data")
    return into / tops.pop()


def open_backup(folder: Path, progress: Progress = _no_progress) -> Backup:
    """Check a backup before anything is restored from it: complete, not changed since it
    was written (manifest, dump, object list and every copied object against their
    SHA-256), in a format this code reads. Raises BackupError naming the first fault."""
    if not folder.is_dir():
        raise BackupError(f"{folder} is not a backup folder")
    if folder.name.endswith(".partial") or not (folder / COMPLETE).is_file():
        raise BackupError(
            f"{folder} is not a complete backup (no {COMPLETE} marker): it was interrupted "
            f"while it was written, or is not a backup"
        )
    try:
        marker = json.loads((folder / COMPLETE).read_text())
    except ValueError as exc:
        raise BackupError(f"the backup is damaged: {folder / COMPLETE} is unreadable") from exc
    if not (folder / MANIFEST).is_file():
        raise BackupError(f"the backup is damaged: {folder / MANIFEST} is missing")
    raw = (folder / MANIFEST).read_bytes()
    if hashlib.sha256(raw).hexdigest() != marker.get("manifest_sha256"):
        raise BackupError(f"the backup is damaged: {folder / MANIFEST} was changed")
    manifest = json.loads(raw)
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"{folder} is format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; this code reads {FORMAT!r} {FORMAT_VERSION}"
        )
    backup = Backup(folder, manifest)
    database = manifest["database"]
    # The dump is named by the database's kind, never by the manifest alone: a manifest that
    # names another path (absolute, or outside the backup) is not ours.
    if database.get("file") != backup_db.dump_name(str(database.get("vendor"))):
        raise BackupError(f"the backup is damaged: {folder / MANIFEST} names another dump file")
    _expect(backup.dump_file, database["sha256"], database["size"], "the database dump")
    objects = manifest["objects"]
    _check_listing(folder / OBJECTS, objects["sha256"])
    if backup.media_included:
        for done, entry in enumerate(backup.objects(), start=1):
            _expect(backup.media_path(entry["name"]), entry["sha256"], entry["size"], "object")
            progress("checking the backup", done, objects["count"])
    return backup


def _check_listing(path: Path, sha: str) -> None:
    if not path.is_file():
        raise BackupError(f"the backup is damaged: the object list {path} is missing")
    if file_sha256(path)[0] != sha:
        raise BackupError(f"the backup is damaged: the object list {path} was changed")
