"""Archive expansion, in the worker: an archive item becomes one pending item per member.

Members are extracted within ExpandLimits (EMOLOOP_MAX_FILE_BYTES per member,
EMOLOOP_MAX_ARCHIVE_MEMBERS, EMOLOOP_MAX_ARCHIVE_BYTES in all; see labelling.archives) and
inherit the batch manifest's metadata. The archive item becomes ``expanded`` (which counts as
no file outcome), or ``rejected`` when the archive broke off, by compare-and-set in the
transaction that creates its members, so a retried or concurrent run creates them once.
"""

from __future__ import annotations

import logging
import lzma
import tarfile
import tempfile
import uuid
import zipfile
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from emoloop import storage as emoloop_storage
from labelling.archives import ArchiveTooLarge, ExpandLimits, iter_members
from labelling.models import ImportItem
from labelling.services.ingest.records import Status, finish_item, metadata_for
from labelling.services.ingest.staging import load_manifest
from labelling.services.storage import (
    delete_staged,
    remove_staged_prefix,
    stage_bytes,
    staged_exists,
    staged_file,
    staging_prefix,
)

__all__ = ["child_item_ids", "expand_archive", "is_archive_item"]

log = logging.getLogger(__name__)

# What a broken archive raises while it is read (zipfile, tarfile, gzip/bz2/lzma streams).
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    lzma.LZMAError,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


def is_archive_item(item: ImportItem) -> bool:
    """Staged as a whole archive. Only staging marks it: a member named x.zip is a file."""
    return bool((item.metadata or {}).get("archive"))


def _member_prefix(item: ImportItem) -> str:
    return str((item.metadata or {}).get("prefix", f"{item.name}/"))


def child_item_ids(item: ImportItem) -> list[int]:
    """Pending items expanded from an archive item (what its task dispatches next).

    Found by name and position (no parent column): another archive of the same name in the
    batch may add its own members, which are pending items of the batch all the same.
    """
    return list(
        ImportItem.objects.filter(
            batch_id=item.batch_id,
            pk__gt=item.pk,
            status=Status.PENDING,
            name__startswith=_member_prefix(item),
        ).values_list("pk", flat=True)
    )


def expand_archive(item: ImportItem) -> None:
    """Extract an archive item's members (bounded) into pending items of their own.

    The archive item becomes `expanded` (or `rejected` with the reason when the archive broke
    off; the members read before stay) in the same transaction that creates its members, by
    compare-and-set: a second run of the same item extracts into its own folder, loses the
    race and removes that folder, so the members are created once.

    Members are staged through storage under ``staging/batch-<id>/x<item>-<random>/``: with
    S3 they are extracted to a private temporary folder on this worker and each is uploaded
    (and removed locally) as it comes; with local storage they are extracted in place.
    """
    if not staged_exists(item.staged_path):
        # Another attempt expanded it (and removed the archive), or staging was cleaned.
        finish_item(item, Status.REJECTED, code="missing", reason="staged archive is missing")
        return
    dest = f"{staging_prefix(item.batch)}x{item.pk}-{uuid.uuid4().hex[:8]}/"
    with staged_file(item.staged_path) as archive:
        if emoloop_storage.is_local():
            _expand(item, archive, dest, Path(default_storage.path(dest.rstrip("/"))))
        else:
            with tempfile.TemporaryDirectory(prefix="emoloop-expand-") as tmp:
                _expand(item, archive, dest, Path(tmp))


def _expand(item: ImportItem, archive: Path, dest: str, local_dest: Path) -> None:
    """expand_archive's work: ``local_dest`` is where files are extracted on this host,
    ``dest`` the storage prefix they are staged under."""
    local = emoloop_storage.is_local()
    batch = item.batch
    manifest = load_manifest(batch)
    prefix = _member_prefix(item)
    limits = ExpandLimits(
        member_bytes=settings.EMOLOOP_MAX_FILE_BYTES,
        members=settings.EMOLOOP_MAX_ARCHIVE_MEMBERS,
        total_bytes=settings.EMOLOOP_MAX_ARCHIVE_BYTES,
    )
    children: list[ImportItem] = []
    broken: tuple[str, str] | None = None
    try:
        for member, extracted in iter_members(archive, local_dest, limits):
            child = ImportItem(
                batch=batch,
                name=f"{prefix}{member.name}"[:500],
                size_bytes=member.size,
                metadata=metadata_for(manifest, member.name),
            )
            if extracted is None:
                child.status = Status.REJECTED
                child.reason_code, child.reason = member.problem_code, member.problem
                child.processed_at = timezone.now()
            elif local:
                child.staged_path = dest + extracted.relative_to(local_dest).as_posix()
            else:
                name = dest + extracted.relative_to(local_dest).as_posix()
                child.staged_path = stage_bytes(name, extracted)
                extracted.unlink()
            children.append(child)
    except ArchiveTooLarge as exc:
        broken = ("too_large", f"The rest of the archive was not read: {exc}.")
    except _ARCHIVE_ERRORS as exc:
        log.info("archive %s unreadable: %s", item.name, exc)
        broken = ("corrupt", f"archive could not be read: {exc}")
    except BaseException:
        remove_staged_prefix(dest)
        raise
    status, code, reason = Status.EXPANDED, "", f"{len(children)} member(s) read"
    if broken is not None:
        status, (code, reason) = Status.REJECTED, broken
        if children:
            reason = f"{reason} ({len(children)} member(s) read before it broke off)"
    with transaction.atomic():
        claimed = ImportItem.objects.filter(pk=item.pk, status=Status.PENDING).update(
            status=status, reason_code=code, reason=reason[:2000], processed_at=timezone.now()
        )
        if claimed:
            ImportItem.objects.bulk_create(children, batch_size=1000)
    if not claimed:
        remove_staged_prefix(dest)
        return
    delete_staged(item.staged_path)
