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
from collections.abc import Callable, Iterable
from pathlib import Path

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Q

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


def staging_dir(batch: ImportBatch | int) -> Path:
    """Where a batch's files wait to be processed (local disk: workers decode from paths)."""
    batch_id = batch if isinstance(batch, int) else batch.pk
    return Path(settings.MEDIA_ROOT) / "staging" / f"batch-{batch_id}"


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
                except OSError:
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

    Files shared with another project's clips stay. The import staging folders of its
    batches go too. Nothing is removed if the deletion rolls back.
    """
    names = project_file_names(project)
    staging = [
        staging_dir(pk)
        for pk in ImportBatch.objects.filter(project=project).values_list("pk", flat=True)
    ]

    def remove_files() -> None:
        remove_unreferenced(names)
        for folder in staging:
            shutil.rmtree(folder, ignore_errors=True)

    with transaction.atomic():
        project.delete()
        transaction.on_commit(remove_files)
