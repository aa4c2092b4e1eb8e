"""Audio ingestion: staging files into an import batch, then processing each file.

Two steps, so that the web process and the CLI only copy bytes:
1. `stage_*` functions create an ImportBatch with one ImportItem per file; the bytes are
   copied into the staging area under MEDIA_ROOT (never under the user's file name). An
   archive is copied as it is, as ONE item: expanding it is work for a worker, bounded by
   EMOLOOP_MAX_ARCHIVE_BYTES, and a 1 MB zip can claim gigabytes.
2. `process_item` (run by a Celery task, or in-process by the CLI when asked) expands an
   archive item into one pending item per member (the archive item becomes `expanded`, which
   counts as no file outcome), or decodes a file in bounded memory
   (`audio.decode_mono_16k`), refuses bad input with a per-file reason, stores the original
   and a canonical 16 kHz mono copy, optionally cuts a long recording into utterances, and
   creates the clips.

`process_item` is idempotent: an item no longer pending is left alone, its outcome is written
by compare-and-set (a second concurrent attempt cannot overwrite the first), file names
derive from content hashes, and the (project, sha256) unique constraints turn a concurrent
duplicate into a "duplicate" outcome rather than a second clip. Files an attempt created are
deleted again when its rows do not commit (`storage.FileWrites`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
import shutil
import tarfile
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO

import numpy as np
import soundfile
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Count, Exists, Max, OuterRef, Q
from django.utils import timezone

from labelling import audio
from labelling.archives import (
    ArchiveTooLarge,
    ExpandLimits,
    archive_suffix,
    hidden_reason,
    hidden_root,
    is_archive_name,
    iter_members,
)
from labelling.manifest import ClipMetadata, lookup, read_manifest
from labelling.models import Clip, ClipSource, ImportBatch, ImportItem, Project, Recording
from labelling.services import queue, storage
from labelling.services.storage import staging_dir

__all__ = [
    "FORMAT_FILES",
    "BatchCounts",
    "batch_counts",
    "child_item_ids",
    "fetch_url_item",
    "finish_batch_if_complete",
    "is_archive_item",
    "mark_dispatched",
    "pending_item_ids",
    "process_item",
    "rms_dbfs",
    "stage_folder",
    "stage_uploads",
    "stage_url",
    "staging_dir",
    "stalled_batch_ids",
    "undispatched_batch_ids",
]

log = logging.getLogger(__name__)

Status = ImportItem.Status

# soundfile major format -> (file extension, content type) of the stored original.
FORMAT_FILES = {
    "WAV": ("wav", "audio/wav"),
    "WAVEX": ("wav", "audio/wav"),
    "W64": ("w64", "audio/x-w64"),
    "RF64": ("wav", "audio/wav"),
    "FLAC": ("flac", "audio/flac"),
    "OGG": ("ogg", "audio/ogg"),
    "MP3": ("mp3", "audio/mpeg"),
    "AIFF": ("aiff", "audio/aiff"),
}

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
_MANIFEST_FILE = "manifest.json"  # the batch's manifest, parsed, for its archive items
_ATTEMPTS = 3  # a FileVanished retry or a concurrent segment insert


@dataclass(frozen=True)
class BatchCounts:
    total: int
    pending: int
    accepted: int
    duplicate: int
    rejected: int
    clips: int

    @property
    def done(self) -> bool:
        return self.pending == 0


# --- Staging ----------------------------------------------------------------------------


def _new_batch(
    project: Project, source: str, origin: str, segment: bool, user: AbstractBaseUser | None
) -> ImportBatch:
    batch = ImportBatch.objects.create(
        project=project, source=source, origin=origin[:500], segment=segment, created_by=user
    )
    staging_dir(batch).mkdir(parents=True, exist_ok=True)
    return batch


def _metadata_for(manifest: dict[str, ClipMetadata] | None, name: str) -> dict:
    return lookup(manifest, name).as_json() if manifest else {}


def _refused(batch: ImportBatch, name: str, code: str, reason: str, size: int = 0) -> ImportItem:
    return ImportItem(
        batch=batch,
        name=name[:500],
        size_bytes=size,
        status=Status.REJECTED,
        reason_code=code,
        reason=reason,
        processed_at=timezone.now(),
    )


def _archive_item(batch: ImportBatch, name: str, staged: Path, *, root: bool) -> ImportItem:
    """One pending item for a whole archive; the worker expands it (see _expand_archive).

    Its members are named ``<archive name>/<member path>``, or just ``<member path>`` when
    the archive is the whole import (``root``: `manage.py ingest slug calls.zip`).
    """
    return ImportItem(
        batch=batch,
        name=name[:500],
        size_bytes=staged.stat().st_size,
        staged_path=str(staged),
        metadata={"archive": True, "prefix": "" if root else f"{name}/"},
    )


def _save_manifest(batch: ImportBatch, manifest: dict[str, ClipMetadata] | None) -> None:
    """Keep the parsed manifest beside the batch's archives, for the worker that expands them."""
    if manifest:
        payload = {name: meta.as_json() for name, meta in manifest.items()}
        (staging_dir(batch) / _MANIFEST_FILE).write_text(json.dumps(payload), encoding="utf-8")


def _load_manifest(batch: ImportBatch) -> dict[str, ClipMetadata] | None:
    path = staging_dir(batch) / _MANIFEST_FILE
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
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
        _refused(
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
    user: AbstractBaseUser | None = None,
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
            items.append(_refused(batch, relative, "path_escape", "link points outside the folder"))
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
            metadata=_metadata_for(manifest, relative),
        )
        if size > settings.EMOLOOP_MAX_FILE_BYTES:
            # Not even copied: the limit exists to protect the disk.
            item.status, item.reason_code = Status.REJECTED, "too_large"
            item.reason = f"{size} bytes is over the limit of {settings.EMOLOOP_MAX_FILE_BYTES}"
            item.processed_at = timezone.now()
        else:
            staged = staging_dir(batch) / f"f{index:06d}{path.suffix.lower()[:8]}"
            shutil.copyfile(path, staged)
            item.staged_path = str(staged)
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
        return _refused(
            batch,
            name,
            "too_large",
            f"The archive is {size:,} bytes; the limit is {settings.EMOLOOP_MAX_ARCHIVE_BYTES:,} "
            "bytes. Please split it.",
            size,
        )
    staged = staging_dir(batch) / f"a{index:06d}{archive_suffix(path.name)}"
    shutil.copyfile(path, staged)
    return _archive_item(batch, name, staged, root=root)


def stage_uploads(
    project: Project,
    files: list[UploadedFile],
    *,
    manifest_path: Path | None = None,
    segment: bool = False,
    user: AbstractBaseUser | None = None,
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
                _refused(
                    batch,
                    name,
                    "too_large",
                    f"{upload.size} bytes is over the limit of {settings.EMOLOOP_MAX_FILE_BYTES}",
                    upload.size,
                )
            )
            continue
        if hidden_root(name) is not None:
            items.append(_refused(batch, name, "hidden", hidden_reason(), upload.size or 0))
            continue
        archive = is_archive_name(name)
        suffix = archive_suffix(name) if archive else Path(name).suffix.lower()[:8]
        staged = staging_dir(batch) / f"u{index:06d}{suffix}"
        with staged.open("wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        if archive:
            items.append(_archive_item(batch, name, staged, root=False))
            has_archive = True
            continue
        items.append(
            ImportItem(
                batch=batch,
                name=name[:500],
                size_bytes=staged.stat().st_size,
                staged_path=str(staged),
                metadata=_metadata_for(manifest, name),
            )
        )
    if has_archive:
        _save_manifest(batch, manifest)
    ImportItem.objects.bulk_create(items)
    return batch


def stage_url(
    project: Project, url: str, *, segment: bool = False, user: AbstractBaseUser | None = None
) -> ImportBatch:
    """A batch with one pending item whose bytes the worker downloads (see fetch_url_item)."""
    batch = _new_batch(project, ClipSource.URL, url, segment, user)
    ImportItem.objects.create(batch=batch, name=url[:500], metadata={"url": url})
    return batch


def fetch_url_item(item: ImportItem) -> None:
    """Download a URL item's bytes into staging with the SSRF-safe fetcher.

    A refused or failed download rejects the item with the reason; nothing is stored.
    """
    from labelling.urlfetch import FetchFailed, UnsafeURL, fetch_to_file

    target = staging_dir(item.batch) / f"url{item.pk}.download"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with target.open("wb") as out:
            result = fetch_to_file(
                item.metadata["url"], out, max_bytes=settings.EMOLOOP_MAX_FILE_BYTES
            )
    except UnsafeURL as exc:
        target.unlink(missing_ok=True)
        _finish(item, Status.REJECTED, code="unsafe_url", reason=str(exc))
        return
    except FetchFailed as exc:
        target.unlink(missing_ok=True)
        _finish(item, Status.REJECTED, code="fetch_failed", reason=str(exc))
        return
    final = target.with_name(f"url{item.pk}{Path(result.filename).suffix.lower()[:8]}")
    target.rename(final)
    ImportItem.objects.filter(pk=item.pk).update(
        staged_path=str(final), size_bytes=result.bytes_written, name=result.final_url[:500]
    )
    item.staged_path = str(final)


# --- Archives (in the worker) -----------------------------------------------------------


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


def _expand_archive(item: ImportItem) -> None:
    """Extract an archive item's members (bounded) into pending items of their own.

    The archive item becomes `expanded` (or `rejected` with the reason when the archive broke
    off; the members read before stay) in the same transaction that creates its members, by
    compare-and-set: a second run of the same item extracts into its own folder, loses the
    race and removes that folder, so the members are created once.
    """
    batch = item.batch
    archive = Path(item.staged_path)
    dest = staging_dir(batch) / f"x{item.pk}-{uuid.uuid4().hex[:8]}"
    manifest = _load_manifest(batch)
    prefix = _member_prefix(item)
    limits = ExpandLimits(
        member_bytes=settings.EMOLOOP_MAX_FILE_BYTES,
        members=settings.EMOLOOP_MAX_ARCHIVE_MEMBERS,
        total_bytes=settings.EMOLOOP_MAX_ARCHIVE_BYTES,
    )
    children: list[ImportItem] = []
    broken: tuple[str, str] | None = None
    try:
        for member, extracted in iter_members(archive, dest, limits):
            child = ImportItem(
                batch=batch,
                name=f"{prefix}{member.name}"[:500],
                size_bytes=member.size,
                metadata=_metadata_for(manifest, member.name),
            )
            if extracted is None:
                child.status = Status.REJECTED
                child.reason_code, child.reason = member.problem_code, member.problem
                child.processed_at = timezone.now()
            else:
                child.staged_path = str(extracted)
            children.append(child)
    except ArchiveTooLarge as exc:
        broken = ("too_large", f"The rest of the archive was not read: {exc}.")
    except _ARCHIVE_ERRORS as exc:
        log.info("archive %s unreadable: %s", item.name, exc)
        broken = ("corrupt", f"archive could not be read: {exc}")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
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
        shutil.rmtree(dest, ignore_errors=True)
        return
    archive.unlink(missing_ok=True)


# --- Processing -------------------------------------------------------------------------


def _finish(
    item: ImportItem, status: str, *, code: str = "", reason: str = "", clips: int = 0
) -> bool:
    """Record an item's outcome once (compare-and-set on pending); True if this call did."""
    updated = ImportItem.objects.filter(pk=item.pk, status=Status.PENDING).update(
        status=status,
        reason_code=code,
        reason=reason[:2000],
        clips_created=clips,
        processed_at=timezone.now(),
    )
    if item.staged_path:
        Path(item.staged_path).unlink(missing_ok=True)
    return bool(updated)


def rms_dbfs(mono: np.ndarray) -> float | None:
    """Loudness of the canonical audio (RMS in dB full scale) for normalised playback."""
    if mono.size == 0:
        return None
    rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64))))
    return round(20 * np.log10(max(rms, 1e-9)), 2)


def _clip_fields(item: ImportItem) -> dict:
    meta = ClipMetadata.from_json(item.metadata or {})
    fields = dict(meta.fields)
    extra = dict(meta.extra)
    if item.metadata.get("url"):
        extra["url"] = item.metadata["url"]
    return {**fields, "metadata": extra}


def process_item(item_id: int) -> ImportItem | None:
    """Expand an archive item, or decode, validate, store and register one staged file.

    Safe to call twice, and concurrently. Every outcome is recorded on the item with its real
    reason: an unexpected error rejects the item with code `failed` and the error (and is
    logged with its traceback); only database outages propagate, for the task to retry.
    """
    item = ImportItem.objects.select_related("batch__project").filter(pk=item_id).first()
    if item is None or item.status != Status.PENDING:
        return item
    batch = item.batch
    ImportBatch.objects.filter(pk=batch.pk, status=ImportBatch.Status.PENDING).update(
        status=ImportBatch.Status.RUNNING
    )
    if is_archive_item(item):
        _run_guarded(item, lambda: _expand_archive(item))
    else:
        _process_file(item)
    finish_batch_if_complete(batch.pk)
    item.refresh_from_db()
    return item


def _process_file(item: ImportItem) -> None:
    if item.batch.source == ClipSource.URL and not item.staged_path:
        fetch_url_item(item)
        item.refresh_from_db()
        if item.status != Status.PENDING:
            return
    if not item.staged_path or not Path(item.staged_path).is_file():
        # The staged bytes are gone: an earlier attempt finished the item and a retry
        # arrived late, or the staging area was cleaned. Say so rather than guess.
        _finish(item, Status.REJECTED, code="missing", reason="staged file is missing")
        return
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            _run_guarded(item, lambda: _process_staged(item))
            return
        except storage.FileVanished as exc:
            # A file we reused was deleted by a concurrent clip/project deletion before our
            # rows committed; nothing of ours was kept, so the next attempt writes it anew.
            log.warning("item %s: stored file %s vanished (attempt %d)", item.pk, exc, attempt)
    _finish(
        item,
        Status.REJECTED,
        code="failed",
        reason="Stored files kept disappearing while this file was imported (concurrent "
        "deletions); nothing was stored. Please import it again.",
    )


def _run_guarded(item: ImportItem, work: Callable[[], None]) -> None:
    """Run one item's work; turn every failure into the item's recorded outcome."""
    try:
        work()
    except audio.AudioRejected as exc:
        _finish(item, Status.REJECTED, code=exc.code, reason=str(exc))
    except (storage.FileVanished, OperationalError):
        raise  # retried: by _process_file, or by the task (a database outage)
    except Exception as exc:
        log.exception("import item %s (%s) failed", item.pk, item.name)
        _finish(
            item,
            Status.REJECTED,
            code="failed",
            reason=f"Import failed ({type(exc).__name__}: {exc}); nothing was stored.",
        )


def _process_staged(item: ImportItem) -> None:
    batch = item.batch
    project = batch.project
    path = Path(item.staged_path)
    max_seconds = (
        settings.EMOLOOP_MAX_RECORDING_SECONDS
        if batch.segment
        else settings.EMOLOOP_MAX_CLIP_SECONDS
    )
    mono, info = audio.decode_mono_16k(
        path,
        max_bytes=settings.EMOLOOP_MAX_FILE_BYTES,
        max_seconds=max_seconds,
        max_samples_per_second=settings.EMOLOOP_MAX_SAMPLES_PER_SECOND,
    )
    sha = audio.sha256_file(path)
    if batch.segment:
        _process_recording(item, path, sha, mono, info)
        return
    if Clip.objects.filter(project=project, sha256=sha).exists():
        _finish(
            item, Status.DUPLICATE, code="duplicate", reason="the project already has this audio"
        )
        return
    extension, _ = FORMAT_FILES.get(info.format, ("bin", ""))
    writes = storage.FileWrites()
    try:
        clip = Clip(
            project=project,
            batch=batch,
            original=writes.save(f"clips/original/{sha[:2]}/{sha}.{extension}", path),
            canonical=writes.save(
                f"clips/canonical/{sha[:2]}/{sha}.wav",
                ContentFile(audio.wav_bytes(mono, audio.CANONICAL_RATE)),
            ),
            original_name=item.name,
            original_format=info.format,
            sha256=sha,
            duration_s=info.duration_s,
            sample_rate=info.sample_rate,
            channels=info.channels,
            peaks=audio.peaks(mono, audio.CANONICAL_RATE),
            rms_dbfs=rms_dbfs(mono),
            source=_clip_source(batch),
            **_clip_fields(item),
        )
        with transaction.atomic():
            clip.save()
            queue.enqueue_clips(project, [clip])
            writes.check_reused()
    except IntegrityError:
        writes.discard()
        if not Clip.objects.filter(project=project, sha256=sha).exists():
            raise  # not the duplicate race: report what it was
        # Another worker stored the same audio between our check and our insert.
        _finish(
            item, Status.DUPLICATE, code="duplicate", reason="the project already has this audio"
        )
        return
    except BaseException:
        writes.discard()
        raise
    _finish(item, Status.ACCEPTED, clips=1)


def _clip_source(batch: ImportBatch) -> str:
    return ClipSource.PRODUCTION if batch.segment else batch.source


def _recording_duplicate(item: ImportItem) -> None:
    _finish(
        item, Status.DUPLICATE, code="duplicate", reason="the project already has this recording"
    )


def _process_recording(
    item: ImportItem, path: Path, sha: str, mono: np.ndarray, info: audio.AudioInfo
) -> None:
    """Cut a long recording into utterance clips, each keeping its place in the parent.

    ``mono`` is the whole recording at 16 kHz; each segment's original-rate audio is read
    from the file for its own frame range, so the original rate is never held whole. A
    segment whose audio repeats (earlier in the recording, or already in the project) is
    skipped and counted in the item's reason.
    """
    batch, project = item.batch, item.batch.project
    if Recording.objects.filter(project=project, sha256=sha).exists():
        _recording_duplicate(item)
        return
    segments = audio.segment_speech(mono)
    if not segments:
        _finish(
            item,
            Status.REJECTED,
            code="no_speech",
            reason="no speech was detected in the recording",
        )
        return
    extension, _ = FORMAT_FILES.get(info.format, ("bin", ""))
    writes = storage.FileWrites()
    try:
        recording_name = writes.save(f"recordings/{sha[:2]}/{sha}.{extension}", path)
        clips, repeated = _cut_segments(item, path, mono, info, segments, writes)
        if not clips:
            writes.discard()
            _finish(
                item,
                Status.DUPLICATE,
                code="duplicate",
                reason=f"every speech segment of this recording ({repeated}) is already in "
                "the project or repeats within it",
            )
            return
        recording = Recording(
            project=project,
            batch=batch,
            original=recording_name,
            original_name=item.name,
            sha256=sha,
            duration_s=info.duration_s,
            sample_rate=info.sample_rate,
            channels=info.channels,
            metadata=_clip_fields(item)["metadata"],
        )
        saved, taken = _save_recording(project, recording, clips, writes)
    except BaseException:
        writes.discard()
        raise
    if saved is None:
        writes.discard()
        _recording_duplicate(item)
        return
    repeated += taken
    if taken:  # lost to a concurrent import of the same segments: our copies may go
        writes.discard(
            keep=[recording_name] + [n for c in saved for n in (c.original.name, c.canonical.name)]
        )
    if not saved:
        _finish(
            item,
            Status.DUPLICATE,
            code="duplicate",
            reason="every speech segment of this recording is already in the project",
        )
        return
    note = f"{repeated} repeated segment{'s' if repeated != 1 else ''} skipped" if repeated else ""
    _finish(item, Status.ACCEPTED, clips=len(saved), reason=note)


def _cut_segments(
    item: ImportItem,
    path: Path,
    mono: np.ndarray,
    info: audio.AudioInfo,
    segments: list[audio.SpeechSegment],
    writes: storage.FileWrites,
) -> tuple[list[Clip], int]:
    """Store each segment's original-rate WAV and canonical copy; (clips, repeats skipped)."""
    project = item.batch.project
    fields = _clip_fields(item)
    clips: list[Clip] = []
    seen: set[str] = set()
    repeated = 0
    with soundfile.SoundFile(str(path)) as reader:
        for segment in segments:
            start = round(segment.start_s * info.sample_rate)
            stop = min(round(segment.end_s * info.sample_rate), info.frames)
            with tempfile.SpooledTemporaryFile(max_size=8 << 20) as wav:
                clip_sha = _write_segment(reader, start, stop, info, wav)
                if (
                    clip_sha in seen
                    or Clip.objects.filter(project=project, sha256=clip_sha).exists()
                ):
                    repeated += 1
                    continue
                seen.add(clip_sha)
                wav.seek(0)
                original = writes.save(f"clips/original/{clip_sha[:2]}/{clip_sha}.wav", File(wav))
            canonical_piece = mono[
                int(segment.start_s * audio.CANONICAL_RATE) : int(
                    segment.end_s * audio.CANONICAL_RATE
                )
            ]
            clips.append(
                Clip(
                    project=project,
                    batch=item.batch,
                    start_s=segment.start_s,
                    end_s=segment.end_s,
                    original=original,
                    canonical=writes.save(
                        f"clips/canonical/{clip_sha[:2]}/{clip_sha}.wav",
                        ContentFile(audio.wav_bytes(canonical_piece, audio.CANONICAL_RATE)),
                    ),
                    original_name=f"{item.name}@{segment.start_s:.2f}-{segment.end_s:.2f}"[:500],
                    original_format="WAV",
                    sha256=clip_sha,
                    duration_s=segment.end_s - segment.start_s,
                    sample_rate=info.sample_rate,
                    channels=info.channels,
                    peaks=audio.peaks(canonical_piece, audio.CANONICAL_RATE),
                    rms_dbfs=rms_dbfs(canonical_piece),
                    source=ClipSource.PRODUCTION,
                    **fields,
                )
            )
    return clips, repeated


def _write_segment(
    reader: soundfile.SoundFile, start: int, stop: int, info: audio.AudioInfo, out: IO[bytes]
) -> str:
    """Frames [start, stop) of the open file as a PCM_16 WAV into ``out``; its SHA-256.

    Read and written one block at a time (the same bytes as writing the segment at once).
    """
    reader.seek(start)
    with soundfile.SoundFile(
        out,
        "w",
        samplerate=info.sample_rate,
        channels=info.channels,
        format="WAV",
        subtype="PCM_16",
    ) as writer:
        left = stop - start
        while left > 0:
            block = reader.read(
                min(left, audio.DECODE_BLOCK_FRAMES), dtype="float32", always_2d=True
            )
            if block.shape[0] == 0:
                break
            writer.write(block)
            left -= block.shape[0]
    out.seek(0)
    digest = hashlib.sha256()
    while chunk := out.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def _save_recording(
    project: Project, recording: Recording, clips: list[Clip], writes: storage.FileWrites
) -> tuple[list[Clip] | None, int]:
    """Insert the recording and its clips; (clips inserted, segments lost to a concurrent
    import). None when the recording itself turned out to be a duplicate."""
    lost = 0
    for _ in range(_ATTEMPTS):
        try:
            with transaction.atomic():
                recording.pk = None
                recording.save()
                for clip in clips:
                    clip.recording = recording
                Clip.objects.bulk_create(clips)
                queue.enqueue_clips(project, clips)
                writes.check_reused()
            return clips, lost
        except IntegrityError:
            if Recording.objects.filter(project=project, sha256=recording.sha256).exists():
                return None, lost
            taken = set(
                Clip.objects.filter(
                    project=project, sha256__in=[c.sha256 for c in clips]
                ).values_list("sha256", flat=True)
            )
            if not taken:
                raise  # some other constraint: report it as it is
            lost += sum(1 for c in clips if c.sha256 in taken)
            clips = [c for c in clips if c.sha256 not in taken]
            if not clips:
                return [], lost
    raise RuntimeError("the recording's clips kept colliding with concurrent imports")


# --- Batch bookkeeping ------------------------------------------------------------------


def batch_counts(batch_id: int) -> BatchCounts:
    """Outcomes of the batch's files; an expanded archive is not a file (its members are)."""
    agg = (
        ImportItem.objects.filter(batch_id=batch_id)
        .exclude(status=Status.EXPANDED)  # an expanded archive is not a file outcome
        .aggregate(
            total=Count("pk"),
            pending=Count("pk", filter=Q(status=Status.PENDING)),
            accepted=Count("pk", filter=Q(status=Status.ACCEPTED)),
            duplicate=Count("pk", filter=Q(status=Status.DUPLICATE)),
            rejected=Count("pk", filter=Q(status=Status.REJECTED)),
        )
    )
    clips = Clip.objects.filter(batch_id=batch_id).count()
    return BatchCounts(clips=clips, **agg)


def finish_batch_if_complete(batch_id: int) -> bool:
    """Mark the batch done once no item is pending (compare-and-set: runs once)."""
    if ImportItem.objects.filter(batch_id=batch_id, status=Status.PENDING).exists():
        return False
    updated = ImportBatch.objects.filter(
        pk=batch_id, status__in=[ImportBatch.Status.PENDING, ImportBatch.Status.RUNNING]
    ).update(status=ImportBatch.Status.DONE, finished_at=timezone.now())
    if updated:
        shutil.rmtree(staging_dir(batch_id), ignore_errors=True)
    return True


def pending_item_ids(batch: ImportBatch) -> list[int]:
    return list(batch.items.filter(status=Status.PENDING).values_list("pk", flat=True))


def mark_dispatched(batch_id: int, *, sent: bool = True) -> None:
    """Record that the batch's pending items were handed to workers (or, sent=False, that
    some may not have been: the beat task sends them again)."""
    ImportBatch.objects.filter(pk=batch_id).update(dispatched_at=timezone.now() if sent else None)


def _open_batches_with_pending():
    pending = ImportItem.objects.filter(batch=OuterRef("pk"), status=Status.PENDING)
    return ImportBatch.objects.filter(
        Exists(pending),
        status__in=[ImportBatch.Status.PENDING, ImportBatch.Status.RUNNING],
    )


def undispatched_batch_ids(grace_s: float = 10.0) -> list[int]:
    """Batches with pending items that were never sent (the broker was down), oldest first.

    ``grace_s`` leaves a batch alone while the request that staged it is still sending it.
    """
    cutoff = timezone.now() - timedelta(seconds=grace_s)
    return list(
        _open_batches_with_pending()
        .filter(dispatched_at__isnull=True, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:1000]
    )


def stalled_batch_ids(older_than_s: int) -> list[int]:
    """Sent batches with pending items and no progress for ``older_than_s``: lost messages.

    Progress is the last item outcome; a long batch that keeps finishing items is not stalled.
    The caller re-stamps ``dispatched_at`` when it sends again, so a batch is sent again at
    most once per period.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    return list(
        _open_batches_with_pending()
        .filter(dispatched_at__lt=cutoff)
        .annotate(last_done=Max("items__processed_at"))
        .filter(Q(last_done__isnull=True) | Q(last_done__lt=cutoff))
        .order_by("created_at")
        .values_list("pk", flat=True)[:1000]
    )
