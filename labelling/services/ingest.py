"""Audio ingestion: staging files into an import batch, then processing each file.

Two steps, so that the web process and the CLI only copy bytes:
1. `stage_*` functions create an ImportBatch with one ImportItem per file; the bytes are
   copied into the staging area under MEDIA_ROOT (never under the user's file name).
2. `process_item` (run by a Celery task, or in-process by the CLI when asked) decodes the
   file, refuses bad input with a per-file reason, stores the original and a canonical 16 kHz
   mono copy, optionally cuts a long recording into utterances, and creates the clips.

`process_item` is idempotent: an item no longer pending is left alone, file names derive
from content hashes (a second attempt rewrites nothing), and the (project, sha256) unique
constraint turns a concurrent duplicate into a "duplicate" outcome rather than a second clip.
"""

from __future__ import annotations

import io
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from labelling import audio
from labelling.archives import is_archive_name, is_ignored_name, iter_members
from labelling.manifest import ClipMetadata, lookup, read_manifest
from labelling.models import Clip, ClipSource, ImportBatch, ImportItem, Project, Recording
from labelling.services import queue

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


def staging_dir(batch: ImportBatch) -> Path:
    return Path(settings.MEDIA_ROOT) / "staging" / f"batch-{batch.pk}"


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


def _add_archive(
    batch: ImportBatch, archive: Path, display_prefix: str, manifest: dict | None
) -> list[ImportItem]:
    items: list[ImportItem] = []
    dest = staging_dir(batch) / f"a{uuid.uuid4().hex[:8]}"
    try:
        for member, extracted in iter_members(
            archive, dest, settings.EMOLOOP_MAX_FILE_BYTES, settings.EMOLOOP_MAX_ARCHIVE_MEMBERS
        ):
            name = f"{display_prefix}{member.name}"
            item = ImportItem(
                batch=batch,
                name=name[:500],
                size_bytes=member.size,
                metadata=_metadata_for(manifest, member.name),
            )
            if extracted is None:
                item.status = Status.REJECTED
                item.reason_code, item.reason = member.problem_code, member.problem
                item.processed_at = timezone.now()
            else:
                item.staged_path = str(extracted)
            items.append(item)
    except Exception as exc:  # a broken archive as a whole is one rejected item
        log.info("archive %s unreadable: %s", archive.name, exc)
        items.append(
            ImportItem(
                batch=batch,
                name=display_prefix.rstrip("/")[:500] or archive.name,
                status=Status.REJECTED,
                reason_code="corrupt",
                reason=f"archive could not be read: {exc}",
                processed_at=timezone.now(),
            )
        )
    return items


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
        ImportItem.objects.bulk_create(_add_archive(batch, folder, "", manifest))
        return batch
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is neither a folder nor an archive")
    batch = _new_batch(project, source, str(folder), segment, user)
    skip = {manifest_path.resolve()} if manifest_path else set()
    items: list[ImportItem] = []
    for index, path in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        relative = path.relative_to(folder).as_posix()
        if path.resolve() in skip or is_ignored_name(relative):
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(folder):
            items.append(_refused(batch, relative, "path_escape", "link points outside the folder"))
            continue
        if is_archive_name(path.name):
            items.extend(_add_archive(batch, path, f"{relative}/", manifest))
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
    ImportItem.objects.bulk_create(items)
    return batch


def _refused(batch: ImportBatch, name: str, code: str, reason: str) -> ImportItem:
    return ImportItem(
        batch=batch,
        name=name[:500],
        status=Status.REJECTED,
        reason_code=code,
        reason=reason,
        processed_at=timezone.now(),
    )


def stage_uploads(
    project: Project,
    files: list[UploadedFile],
    *,
    manifest_path: Path | None = None,
    segment: bool = False,
    user: AbstractBaseUser | None = None,
) -> ImportBatch:
    """Stage uploaded files (archives among them are expanded) as a new batch."""
    manifest = read_manifest(manifest_path) if manifest_path else None
    batch = _new_batch(project, ClipSource.UPLOAD, f"{len(files)} uploaded file(s)", segment, user)
    items: list[ImportItem] = []
    for index, upload in enumerate(files):
        name = (upload.name or f"upload-{index}").replace("\\", "/").split("/")[-1]
        if upload.size is not None and upload.size > settings.EMOLOOP_MAX_FILE_BYTES:
            items.append(
                _refused(
                    batch,
                    name,
                    "too_large",
                    f"{upload.size} bytes is over the limit of {settings.EMOLOOP_MAX_FILE_BYTES}",
                )
            )
            continue
        suffix = Path(name).suffix.lower()[:8]
        staged = staging_dir(batch) / f"u{index:06d}{suffix}"
        with staged.open("wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        if is_archive_name(name):
            items.extend(_add_archive(batch, staged, f"{name}/", manifest))
            staged.unlink(missing_ok=True)
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


# --- Processing -------------------------------------------------------------------------


def _finish(
    item: ImportItem, status: str, *, code: str = "", reason: str = "", clips: int = 0
) -> None:
    ImportItem.objects.filter(pk=item.pk).update(
        status=status,
        reason_code=code,
        reason=reason[:2000],
        clips_created=clips,
        processed_at=timezone.now(),
    )
    if item.staged_path:
        Path(item.staged_path).unlink(missing_ok=True)


def _store(name: str, data: bytes) -> str:
    """Save bytes under a content-derived name; an existing file of that name is the same
    content (the name holds its hash), so it is reused."""
    if default_storage.exists(name):
        return name
    return default_storage.save(name, ContentFile(data))


def _encode(samples: np.ndarray, sample_rate: int) -> bytes:
    """Multi-channel float samples -> PCM_16 WAV bytes (for cut segments)."""
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


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
    """Decode, validate, store and register one staged file. Safe to call twice."""
    item = ImportItem.objects.select_related("batch__project").filter(pk=item_id).first()
    if item is None or item.status != Status.PENDING:
        return item
    batch = item.batch
    ImportBatch.objects.filter(pk=batch.pk, status=ImportBatch.Status.PENDING).update(
        status=ImportBatch.Status.RUNNING
    )
    if batch.source == ClipSource.URL and not item.staged_path:
        fetch_url_item(item)
        item.refresh_from_db()
        if item.status != Status.PENDING:
            finish_batch_if_complete(batch.pk)
            return item
    try:
        _process_staged(item)
    except audio.AudioRejected as exc:
        _finish(item, Status.REJECTED, code=exc.code, reason=str(exc))
    except FileNotFoundError:
        # The staged bytes are gone: an earlier attempt finished the item and a retry
        # arrived late, or the staging area was cleaned. Say so rather than guess.
        item.refresh_from_db()
        if item.status == Status.PENDING:
            _finish(item, Status.REJECTED, code="missing", reason="staged file is missing")
    finish_batch_if_complete(batch.pk)
    item.refresh_from_db()
    return item


def _process_staged(item: ImportItem) -> None:
    batch = item.batch
    project = batch.project
    path = Path(item.staged_path)
    max_seconds = (
        settings.EMOLOOP_MAX_RECORDING_SECONDS
        if batch.segment
        else settings.EMOLOOP_MAX_CLIP_SECONDS
    )
    samples, info = audio.decode(
        path, max_bytes=settings.EMOLOOP_MAX_FILE_BYTES, max_seconds=max_seconds
    )
    sha = audio.sha256_file(path)
    if batch.segment:
        _process_recording(item, path, sha, samples, info)
        return
    if Clip.objects.filter(project=project, sha256=sha).exists():
        _finish(
            item, Status.DUPLICATE, code="duplicate", reason="the project already has this audio"
        )
        return
    extension, _ = FORMAT_FILES.get(info.format, ("bin", ""))
    mono = audio.to_mono_16k(samples, info.sample_rate)
    original_name = _store(f"clips/original/{sha[:2]}/{sha}.{extension}", path.read_bytes())
    canonical_name = _store(
        f"clips/canonical/{sha[:2]}/{sha}.wav", audio.wav_bytes(mono, audio.CANONICAL_RATE)
    )
    clip = Clip(
        project=project,
        batch=batch,
        original=original_name,
        canonical=canonical_name,
        original_name=item.name,
        original_format=info.format,
        sha256=sha,
        duration_s=info.duration_s,
        sample_rate=info.sample_rate,
        channels=info.channels,
        peaks=audio.peaks(mono, audio.CANONICAL_RATE),
        source=_clip_source(batch),
        **_clip_fields(item),
    )
    try:
        with transaction.atomic():
            clip.save()
            queue.enqueue_clips(project, [clip])
    except IntegrityError:
        # Another worker stored the same audio between our check and our insert.
        _finish(
            item, Status.DUPLICATE, code="duplicate", reason="the project already has this audio"
        )
        return
    _finish(item, Status.ACCEPTED, clips=1)


def _clip_source(batch: ImportBatch) -> str:
    return ClipSource.PRODUCTION if batch.segment else batch.source


def _process_recording(
    item: ImportItem, path: Path, sha: str, samples: np.ndarray, info: audio.AudioInfo
) -> None:
    """Cut a long recording into utterance clips, each keeping its place in the parent."""
    batch, project = item.batch, item.batch.project
    if Recording.objects.filter(project=project, sha256=sha).exists():
        _finish(
            item,
            Status.DUPLICATE,
            code="duplicate",
            reason="the project already has this recording",
        )
        return
    mono = audio.to_mono_16k(samples, info.sample_rate)
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
    recording_name = _store(f"recordings/{sha[:2]}/{sha}.{extension}", path.read_bytes())
    fields = _clip_fields(item)
    clips: list[Clip] = []
    for segment in segments:
        start = round(segment.start_s * info.sample_rate)
        stop = round(segment.end_s * info.sample_rate)
        original_bytes = _encode(samples[start:stop], info.sample_rate)
        canonical_piece = mono[
            int(segment.start_s * audio.CANONICAL_RATE) : int(segment.end_s * audio.CANONICAL_RATE)
        ]
        clip_sha = audio.sha256_bytes(original_bytes)
        clips.append(
            Clip(
                project=project,
                batch=batch,
                start_s=segment.start_s,
                end_s=segment.end_s,
                original=_store(f"clips/original/{clip_sha[:2]}/{clip_sha}.wav", original_bytes),
                canonical=_store(
                    f"clips/canonical/{clip_sha[:2]}/{clip_sha}.wav",
                    audio.wav_bytes(canonical_piece, audio.CANONICAL_RATE),
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
    try:
        with transaction.atomic():
            recording = Recording.objects.create(
                project=project,
                batch=batch,
                original=recording_name,
                original_name=item.name,
                sha256=sha,
                duration_s=info.duration_s,
                sample_rate=info.sample_rate,
                channels=info.channels,
                metadata=fields["metadata"],
            )
            for clip in clips:
                clip.recording = recording
            Clip.objects.bulk_create(clips)
            queue.enqueue_clips(project, clips)
    except IntegrityError:
        _finish(
            item,
            Status.DUPLICATE,
            code="duplicate",
            reason="the project already has this recording",
        )
        return
    _finish(item, Status.ACCEPTED, clips=len(clips))


# --- Batch bookkeeping ------------------------------------------------------------------


def batch_counts(batch_id: int) -> BatchCounts:
    agg = ImportItem.objects.filter(batch_id=batch_id).aggregate(
        total=Count("pk"),
        pending=Count("pk", filter=Q(status=Status.PENDING)),
        accepted=Count("pk", filter=Q(status=Status.ACCEPTED)),
        duplicate=Count("pk", filter=Q(status=Status.DUPLICATE)),
        rejected=Count("pk", filter=Q(status=Status.REJECTED)),
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
        batch = ImportBatch.objects.get(pk=batch_id)
        shutil.rmtree(staging_dir(batch), ignore_errors=True)
    return True


def pending_item_ids(batch: ImportBatch) -> list[int]:
    return list(batch.items.filter(status=Status.PENDING).values_list("pk", flat=True))


def stalled_item_ids(older_than_s: int) -> list[int]:
    """Pending items of batches started long ago: their task was probably lost."""
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_s)
    return list(
        ImportItem.objects.filter(status=Status.PENDING, batch__created_at__lt=cutoff).values_list(
            "pk", flat=True
        )[:10_000]
    )
