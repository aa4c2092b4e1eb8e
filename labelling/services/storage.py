"""Stored files and the rows that point at them: writing them safely, deleting them with rows.

Audio is stored under content-addressed names (``clips/canonical/ab/<sha256>.wav``, …), so one
file can belong to clips of several projects, and ingestion reuses a file that already
exists. Two rules follow:

- A file is deleted only when no committed row references it (``remove_unreferenced``).
- An ingestion attempt deletes the files *it created* when its rows do not commit
  (``FileWrites``); a file it found already there is never its to delete.

The race between the two (a writer reuses a file at the moment a remover finds it
unreferenced) is closed by a lock on the file name, taken by both sides in a transaction
(PostgreSQL advisory locks on 256 buckets of names; SQLite runs one writer at a time):

- the remover locks, checks that no committed row references the name, deletes;
- the writer, in the transaction that inserts its rows, locks every name it reused and checks
  the file is still there; if one is gone it raises ``FileVanished`` and the caller retries
  (the retry writes the file again).

Either the remover sees the writer's committed row and keeps the file, or the writer sees the
file gone before committing.

The learner app stores files of its own per project (model artifacts, plots, label
snapshots); `labelling` never imports `learner`, so those reach ``delete_project`` through
``register_project_files`` (registered from the learner's AppConfig.ready).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Q

from emoloop import storage as emoloop_storage
from labelling.models import Clip, ImportBatch, Project, Recording

log = logging.getLogger(__name__)

ProjectFiles = Callable[[Project], Iterable[str]]

_PROJECT_FILES: list[ProjectFiles] = []

# Advisory-lock key space: (namespace, bucket). The namespace keeps our keys apart from any
# other advisory lock in the database; 256 buckets bound the locks one transaction can take.
_LOCK_NAMESPACE = 0x456D4C6F  # "EmLo"
_LOCK_BUCKETS = 256
_CHUNK = 500


class FileVanished(Exception):
    """A file this attempt reused was deleted before its rows committed: retry the attempt."""


def register_project_files(callback: ProjectFiles) -> None:
    """Add a source of file names that belong to a project (deleted with it).

    ``callback(project)`` returns storage names; it runs before the project's rows are
    deleted. Registering the same callback twice has no effect (``ready()`` may run twice).
    """
    if callback not in _PROJECT_FILES:
        _PROJECT_FILES.append(callback)


# --- Staging: a batch's files waiting for a worker ---------------------------------------
#
# Staged bytes go through default_storage under ``staging/batch-<id>/…`` (ImportItem.
# staged_path holds the storage name), so a worker on another host reads what the web host
# staged: with S3 storage both reach the bucket, with local storage it is MEDIA_ROOT. A
# worker decodes from a local copy (``staged_file``) and deletes the staged object once the
# item has its outcome. Rows staged before this scheme hold an absolute local path, which
# is still read and deleted as a path.


def staging_prefix(batch: ImportBatch | int) -> str:
    """The storage name prefix of a batch's staged files (``staging/batch-<id>/``)."""
    batch_id = batch if isinstance(batch, int) else batch.pk
    return f"staging/batch-{batch_id}/"


def staging_dir(batch: ImportBatch | int) -> Path:
    """Where a batch's staged files are on disk with local storage (MEDIA_ROOT/staging/…).

    Only meaningful for FileSystemStorage; code that must work with S3 uses the storage
    names (``staging_prefix``, ``stage_bytes``, ``staged_file``).
    """
    return Path(settings.MEDIA_ROOT) / staging_prefix(batch).rstrip("/")


def _is_legacy_path(staged: str) -> bool:
    return Path(staged).is_absolute()


def stage_bytes(name: str, content: File | Path | bytes) -> str:
    """Store staged content under storage name ``name``; return the name it got.

    A taken name gets another one (the storage's rule), so the answer is what the item keeps.
    """
    if isinstance(content, bytes):
        return default_storage.save(name, ContentFile(content))
    if isinstance(content, Path):
        with content.open("rb") as fh:
            return default_storage.save(name, File(fh))
    return default_storage.save(name, content)


def staged_exists(staged: str) -> bool:
    if not staged:
        return False
    if _is_legacy_path(staged):
        return Path(staged).is_file()
    return default_storage.exists(staged)


def staged_size(staged: str) -> int:
    return Path(staged).stat().st_size if _is_legacy_path(staged) else default_storage.size(staged)


@contextmanager
def staged_file(staged: str, *, suffix: str = "") -> Iterator[Path]:
    """A local path with a staged file's bytes, for decoders and archive readers.

    Local storage reads the file in place; S3 copies the object to a private temporary file
    (removed afterwards). ``suffix`` keeps the extension readers look at.
    """
    if _is_legacy_path(staged):
        yield Path(staged)
    elif emoloop_storage.is_local():
        yield Path(default_storage.path(staged))
    else:
        with emoloop_storage.local_copy(staged, suffix=suffix or Path(staged).suffix) as path:
            yield path


def delete_staged(staged: str) -> None:
    """Remove one staged file (missing is fine: a retry may come after the first attempt)."""
    if not staged:
        return
    if _is_legacy_path(staged):
        Path(staged).unlink(missing_ok=True)
        return
    try:
        default_storage.delete(staged)
    except Exception:  # OSError locally; botocore's errors on S3. Logged, not fatal.
        log.exception("could not delete staged file %s", staged)


def remove_staged_prefix(prefix: str) -> None:
    """Remove every staged file under a storage name prefix (a batch's or an archive's).

    Local storage removes the folder itself; S3 deletes the keys (an object store has no
    folders to leave behind).
    """
    prefix = prefix.rstrip("/") + "/"
    if emoloop_storage.is_local():
        shutil.rmtree(default_storage.path(prefix.rstrip("/")), ignore_errors=True)
        return
    for name in stored_names(prefix):
        try:
            default_storage.delete(name)
        except Exception:  # OSError locally; botocore's errors on S3. Logged, not fatal.
            log.exception("could not delete staged file %s", name)


def stored_names(prefix: str) -> list[str]:
    """Every stored name under ``prefix`` (a folder-like name ending in "/"), recursively."""
    try:
        folders, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        return []
    names = [prefix + name for name in files]
    for folder in folders:
        names += stored_names(f"{prefix}{folder}/")
    return sorted(names)


def remove_staging(batch: ImportBatch | int) -> None:
    """Remove a batch's whole staging area (the batch is done, or deleted)."""
    remove_staged_prefix(staging_prefix(batch))


# --- Locks and references ---------------------------------------------------------------


def _lock_names(names: Iterable[str]) -> None:
    """Take the name locks until the current transaction ends (sorted: no deadlock)."""
    if not connection.in_atomic_block:
        raise RuntimeError("name locks are transaction-scoped: call inside transaction.atomic")
    if connection.vendor != "postgresql":
        return  # SQLite serialises writers already
    buckets = sorted({hashlib.sha256(name.encode()).digest()[0] for name in names})
    with connection.cursor() as cursor:
        for bucket in buckets:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, bucket])


def referenced_names(names: Iterable[str]) -> set[str]:
    """Those of ``names`` that a clip or a recording row points at."""
    wanted = list(dict.fromkeys(n for n in names if n))
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        for original, canonical in Clip.objects.filter(
            Q(original__in=chunk) | Q(canonical__in=chunk)
        ).values_list("original", "canonical"):
            found.update((original, canonical))
        found.update(
            Recording.objects.filter(original__in=chunk).values_list("original", flat=True)
        )
    return found & set(wanted)


def remove_unreferenced(names: Iterable[str | None]) -> list[str]:
    """Delete from default_storage each name no committed row references; return those deleted
    (empty names, such as a FileField without a file, are skipped).

    A storage error on one file is logged with its name and the others go on: the rows are
    already gone, and an orphaned file is worth an error in the log, not a failed request.
    """
    wanted = list(dict.fromkeys(n for n in names if n))
    removed: list[str] = []
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        with transaction.atomic():
            _lock_names(chunk)
            keep = referenced_names(chunk)
            for name in chunk:
                if name in keep:
                    continue
                try:
                    default_storage.delete(name)
                except Exception:  # OSError locally; botocore's errors on S3
                    log.exception("could not delete stored file %s", name)
                    continue
                removed.append(name)
    return removed


# --- Writes of one ingestion attempt ----------------------------------------------------


class FileWrites:
    """The stored files one ingestion attempt wrote or reused.

    ``save`` stores content under its content-derived name unless a file of that name exists
    (same name, same content). ``check_reused`` belongs inside the transaction that inserts
    the rows; ``discard`` removes what this attempt created when its rows did not commit
    (files that another row references by then stay).
    """

    def __init__(self) -> None:
        self.created: list[str] = []
        self.reused: list[str] = []

    def save(self, name: str, content: File | Path) -> str:
        if default_storage.exists(name):
            self.reused.append(name)
            return name
        if isinstance(content, Path):
            with content.open("rb") as fh:
                saved = default_storage.save(name, File(fh))
        else:
            saved = default_storage.save(name, content)
        if saved != name:
            # Another attempt wrote the same name between our check and our write; the
            # storage kept both under different names. Theirs is the same content: use it.
            default_storage.delete(saved)
            self.reused.append(name)
            return name
        self.created.append(name)
        return name

    def check_reused(self) -> None:
        """Lock the reused names and make sure each file is still there (in the row txn)."""
        if not self.reused:
            return
        _lock_names(self.reused)
        for name in self.reused:
            if not default_storage.exists(name):
                raise FileVanished(name)

    def discard(self, keep: Iterable[str] = ()) -> list[str]:
        """Remove the files this attempt created, except ``keep`` and referenced ones."""
        kept = set(keep)
        created, self.created = [n for n in self.created if n not in kept], []
        return remove_unreferenced(created) if created else []


# --- Deleting with rows -----------------------------------------------------------------


def delete_clip(clip: Clip) -> None:
    """Delete a clip's rows (annotations, queue entry, … cascade), then its unshared files.

    The files go once the deletion commits; a rolled-back deletion removes nothing.
    """
    names = [clip.original.name, clip.canonical.name]
    with transaction.atomic():
        Clip.objects.filter(pk=clip.pk).delete()
        transaction.on_commit(lambda: remove_unreferenced(names))


def project_file_names(project: Project) -> list[str]:
    """Every stored file a project's rows point at, its own and those of registered apps."""
    names: list[str] = []
    for original, canonical in Clip.objects.filter(project=project).values_list(
        "original", "canonical"
    ):
        names += [original, canonical]
    names += Recording.objects.filter(project=project).values_list("original", flat=True)
    for callback in _PROJECT_FILES:
        names += [name for name in callback(project) if name]
    return list(dict.fromkeys(n for n in names if n))


def delete_project(project: Project) -> None:
    """Delete a project and everything in it, then its files that nothing else references.

    Files shared with another project's clips stay. The staged files of its batches go
    too. Nothing is removed if the deletion rolls back.
    """
    names = project_file_names(project)
    batches = list(ImportBatch.objects.filter(project=project).values_list("pk", flat=True))

    def remove_files() -> None:
        remove_unreferenced(names)
        for batch_id in batches:
            remove_staging(batch_id)

    with transaction.atomic():
        project.delete()
        transaction.on_commit(remove_files)
