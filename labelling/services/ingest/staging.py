"""Staging: copy the files of a folder, an upload or a URL into a new import batch.

The web process and the CLI only copy bytes: each ``stage_*`` function creates an ImportBatch
with one ImportItem per file, its bytes stored through default_storage under
``staging/batch-<id>/`` (never under the user's file name; a worker on another host reads
them from the object store). Files over EMOLOOP_MAX_FILE_BYTES are refused without a copy;
hidden files are refused, one item per hidden file or folder. An archive is copied as it is,
as ONE item: expanding it is work for a worker (``expansion``), bounded by
EMOLOOP_MAX_ARCHIVE_BYTES, and a 1 MB zip can claim gigabytes; the batch's parsed manifest is
kept beside it for that worker. A URL item's bytes are downloaded by the worker
(``fetch_url_item``, with the SSRF-safe fetcher).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone

from labelling.archives import archive_suffix, hidden_reason, hidden_root, is_archive_name
from labelling.manifest import ClipMetadata, read_manifest
from labelling.models import ClipSource, ImportBatch, ImportItem, Project
from labelling.services.ingest.records import Status, finish_item, metadata_for, refused_item
from labelling.services.storage import stage_bytes, staged_size, staging_prefix
from labelling.urlfetch import FetchFailed, UnsafeURL, fetch_to_file

__all__ = [
    "fetch_url_item",
    "load_manifest",
    "stage_folder",
    "stage_uploads",
    "stage_url",
]

_MANIFEST_FILE = "manifest.json"  # the batch's manifest, parsed, for its archive items


def _new_batch(
    project: Project, source: str, origin: str, segment: bool, user: User | None
) -> ImportBatch:
    return ImportBatch.objects.create(
        project=project, source=source, origin=origin[:500], segment=segment, created_by=user
    )


def _archive_item(batch: ImportBatch, name: str, staged: str, *, root: bool) -> ImportItem:
    """One pending item for a whole archive; the worker expands it (see expand_archive).

    Its members are named ``<archive name>/<member path>``, or just ``<member path>`` when
    the archive is the whole import (``root``: `manage.py ingest slug calls.zip`).
    """
    return ImportItem(
        batch=batch,
        name=name[:500],
        size_bytes=staged_size(staged),
        staged_path=staged,
        metadata={"archive": True, "prefix": "" if root else f"{name}/"},
    )


def _save_manifest(batch: ImportBatch, manifest: dict[str, ClipMetadata] | None) -> None:
    """Keep the parsed manifest beside the batch's archives, for the worker that expands them."""
    if manifest:
        payload = {name: meta.as_json() for name, meta in manifest.items()}
        stage_bytes(_manifest_name(batch), ContentFile(json.dumps(payload).encode("utf-8")))


def _manifest_name(batch: ImportBatch) -> str:
    return staging_prefix(batch) + _MANIFEST_FILE


def load_manifest(batch: ImportBatch) -> dict[str, ClipMetadata] | None:
    name = _manifest_name(batch)
    if not default_storage.exists(name):
        return None
    with default_storage.open(name, "rb") as fh:
        raw = json.loads(fh.read().decode("utf-8"))
    return {name: ClipMetadata.from_json(meta) for name, meta in raw.items()}


@dataclass
class _Hidden:
    """Hidden files met while walking a folder, grouped by their hidden file or folder."""

    folder: bool = False
    count: int = 0
    size: int = 0


def _hidden_items(batch: ImportBatch, groups: dict[str, _Hidden]) -> list[ImportItem]:
    """One refusal per hidden file, or per hidden folder with the count of its files."""
    return [
        refused_item(
            batch,
            f"{root}/" if group.folder else root,
            "hidden",
            hidden_reason(group.count),
            group.size,
        )
        for root, group in groups.items()
    ]


def stage_folder(
    project: Project,
    folder: Path,
    *,
    manifest_path: Path | None = None,
    segment: bool = False,
    user: User | None = None,
    source: str = ClipSource.FOLDER,
) -> ImportBatch:
    """Stage every file below a folder (or one archive file) as a new batch."""
    manifest = read_manifest(manifest_path) if manifest_path else None
    folder = folder.resolve()
    if folder.is_file() and is_archive_name(folder.name):
        batch = _new_batch(project, ClipSource.ARCHIVE, str(folder), segment, user)
        item = _stage_archive_file(batch, folder, folder.name, 0, root=True)
        _save_manifest(batch, manifest)
        item.save()
        return batch
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is neither a folder nor an archive")
    batch = _new_batch(project, source, str(folder), segment, user)
    skip = {manifest_path.resolve()} if manifest_path else set()
    items: list[ImportItem] = []
    hidden: dict[str, _Hidden] = {}
    has_archive = False
    for index, path in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        relative = path.relative_to(folder).as_posix()
        if path.resolve() in skip:
            continue
        root = hidden_root(relative)
        if root is not None:
            group = hidden.setdefault(root, _Hidden())
            group.folder = group.folder or root != relative
            group.count += 1
            group.size += path.stat().st_size
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(folder):
            items.append(
                refused_item(batch, relative, "path_escape", "link points outside the folder")
            )
            continue
        if is_archive_name(path.name):
            items.append(_stage_archive_file(batch, path, relative, index, root=False))
            has_archive = True
            continue
        size = path.stat().st_size
        item = ImportItem(
            batch=batch,
            name=relative[:500],
            size_bytes=size,
            metadata=metadata_for(manifest, relative),
        )
        if size > settings.EMOLOOP_MAX_FILE_BYTES:
            # Not even copied: the limit exists to protect the disk.
            item.status, item.reason_code = Status.REJECTED, "too_large"
            item.reason = f"{size} bytes is over the limit of {settings.EMOLOOP_MAX_FILE_BYTES}"
            item.processed_at = timezone.now()
        else:
            item.staged_path = stage_bytes(
                f"{staging_prefix(batch)}f{index:06d}{path.suffix.lower()[:8]}", path
            )
        items.append(item)
    items += _hidden_items(batch, hidden)
    if has_archive:
        _save_manifest(batch, manifest)
    ImportItem.objects.bulk_create(items)
    return batch


def _stage_archive_file(
    batch: ImportBatch, path: Path, name: str, index: int, *, root: bool
) -> ImportItem:
    size = path.stat().st_size
    if size > settings.EMOLOOP_MAX_ARCHIVE_BYTES:
        return refused_item(
            batch,
            name,
            "too_large",
            f"The archive is {size:,} bytes; the limit is {settings.EMOLOOP_MAX_ARCHIVE_BYTES:,} "
            "bytes. Please split it.",
            size,
        )
    staged = stage_bytes(f"{staging_prefix(batch)}a{index:06d}{archive_suffix(path.name)}", path)
    return _archive_item(batch, name, staged, root=root)


def stage_uploads(
    project: Project,
    files: list[UploadedFile],
    *,
    manifest_path: Path | None = None,
    segment: bool = False,
    user: User | None = None,
) -> ImportBatch:
    """Stage uploaded files as a new batch; an archive is one item, expanded by a worker."""
    manifest = read_manifest(manifest_path) if manifest_path else None
    batch = _new_batch(project, ClipSource.UPLOAD, f"{len(files)} uploaded file(s)", segment, user)
    items: list[ImportItem] = []
    has_archive = False
    for index, upload in enumerate(files):
        name = (upload.name or f"upload-{index}").replace("\\", "/").split("/")[-1]
        if upload.size is not None and upload.size > settings.EMOLOOP_MAX_FILE_BYTES:
            items.append(
                refused_item(
                    batch,
                    name,
                    "too_large",
                    f"{upload.size} bytes is over the limit of {settings.EMOLOOP_MAX_FILE_BYTES}",
                    upload.size,
                )
            )
            continue
        if hidden_root(name) is not None:
            items.append(refused_item(batch, name, "hidden", hidden_reason(), upload.size or 0))
            continue
        archive = is_archive_name(name)
        suffix = archive_suffix(name) if archive else Path(name).suffix.lower()[:8]
        # Wrapped: FileSystemStorage would move a temporary upload instead of copying it.
        staged = stage_bytes(f"{staging_prefix(batch)}u{index:06d}{suffix}", File(upload))
        if archive:
            items.append(_archive_item(batch, name, staged, root=False))
            has_archive = True
            continue
        items.append(
            ImportItem(
                batch=batch,
                name=name[:500],
                size_bytes=staged_size(staged),
                staged_path=staged,
                metadata=metadata_for(manifest, name),
            )
        )
    if has_archive:
        _save_manifest(batch, manifest)
    ImportItem.objects.bulk_create(items)
    return batch


def stage_url(
    project: Project, url: str, *, segment: bool = False, user: User | None = None
) -> ImportBatch:
    """A batch with one pending item whose bytes the worker downloads (see fetch_url_item)."""
    batch = _new_batch(project, ClipSource.URL, url, segment, user)
    ImportItem.objects.create(batch=batch, name=url[:500], metadata={"url": url})
    return batch


def fetch_url_item(item: ImportItem) -> None:
    """Download a URL item's bytes into staging with the SSRF-safe fetcher.

    The download goes to a private temporary file on this worker, then into storage (the
    item may be retried by a worker on another host). A refused or failed download rejects
    the item with the reason; nothing is stored.
    """
    with tempfile.TemporaryDirectory(prefix="emoloop-url-") as tmp:
        target = Path(tmp) / "download"
        try:
            with target.open("wb") as out:
                result = fetch_to_file(
                    item.metadata["url"], out, max_bytes=settings.EMOLOOP_MAX_FILE_BYTES
                )
        except UnsafeURL as exc:
            finish_item(item, Status.REJECTED, code="unsafe_url", reason=str(exc))
            return
        except FetchFailed as exc:
            finish_item(item, Status.REJECTED, code="fetch_failed", reason=str(exc))
            return
        suffix = Path(result.filename).suffix.lower()[:8]
        staged = stage_bytes(f"{staging_prefix(item.batch)}url{item.pk}{suffix}", target)
    ImportItem.objects.filter(pk=item.pk).update(
        staged_path=staged, size_bytes=result.bytes_written, name=result.final_url[:500]
    )
    item.staged_path = staged
