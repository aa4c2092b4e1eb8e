"""Processing one staged item: expand an archive, or decode, check, store and register a file.

``process_item`` (run by a Celery task, or in-process by the CLI when asked) decodes a file
in bounded memory (``audio.decode_mono_16k``), refuses bad input with a per-file reason,
refuses audio the project already has (``duplicate``), stores the original and a canonical
16 kHz mono copy and creates the clip, queued for labelling in the same transaction. A
segmented batch's files go to ``recordings.process_recording`` instead.

Idempotent: an item no longer pending is left alone, its outcome is written by
compare-and-set (a second concurrent attempt cannot overwrite the first), file names derive
from content hashes, and the (project, sha256) unique constraint turns a concurrent duplicate
into a "duplicate" outcome rather than a second clip. Files an attempt created are deleted
again when its rows do not commit (``storage.FileWrites``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, OperationalError, transaction

from emoloop.storage import StorageUnavailable, is_transient_error
from labelling import audio
from labelling.models import Clip, ClipSource, ImportBatch, ImportItem
from labelling.services import queue, storage
from labelling.services.ingest.batches import finish_batch_if_complete
from labelling.services.ingest.expansion import expand_archive, is_archive_item
from labelling.services.ingest.recordings import process_recording
from labelling.services.ingest.records import (
    ATTEMPTS,
    FORMAT_FILES,
    Status,
    clip_fields,
    clip_source,
    finish_item,
    rms_dbfs,
)
from labelling.services.ingest.staging import fetch_url_item

__all__ = ["process_item"]

log = logging.getLogger(__name__)


def process_item(item_id: int) -> ImportItem | None:
    """Expand an archive item, or decode, validate, store and register one staged file.

    Safe to call twice, and concurrently. Every outcome is recorded on the item with its real
    reason: an unexpected error rejects the item with code `failed` and the error (and is
    logged with its traceback); only database outages (OperationalError) and passing
    object-store failures (StorageUnavailable: no answer, a 5xx, throttling) propagate, for
    the task to retry; the item then stays pending and keeps its staged file.
    """
    item = ImportItem.objects.select_related("batch__project").filter(pk=item_id).first()
    if item is None or item.status != Status.PENDING:
        return item
    batch = item.batch
    ImportBatch.objects.filter(pk=batch.pk, status=ImportBatch.Status.PENDING).update(
        status=ImportBatch.Status.RUNNING
    )
    try:
        if is_archive_item(item):
            _run_guarded(item, lambda: expand_archive(item))
        else:
            _process_file(item)
    except Exception as exc:
        if is_transient_error(exc):
            # The item stays pending with its staged object; the task retries it.
            raise StorageUnavailable(f"import item {item.pk}: {exc}") from exc
        raise
    finish_batch_if_complete(batch.pk)
    item.refresh_from_db()
    return item


def _process_file(item: ImportItem) -> None:
    if item.batch.source == ClipSource.URL and not item.staged_path:
        fetch_url_item(item)
        item.refresh_from_db()
        if item.status != Status.PENDING:
            return
    if not storage.staged_exists(item.staged_path):
        # The staged bytes are gone: an earlier attempt finished the item and a retry
        # arrived late, or the staging area was cleaned. Say so rather than guess.
        finish_item(item, Status.REJECTED, code="missing", reason="staged file is missing")
        return
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _run_guarded(item, lambda: _process_staged(item))
            return
        except storage.FileVanished as exc:
            # A file we reused was deleted by a concurrent clip/project deletion before our
            # rows committed; nothing of ours was kept, so the next attempt writes it anew.
            log.warning("item %s: stored file %s vanished (attempt %d)", item.pk, exc, attempt)
    finish_item(
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
        finish_item(item, Status.REJECTED, code=exc.code, reason=str(exc))
    except (storage.FileVanished, OperationalError):
        raise  # retried: by _process_file, or by the task (a database outage)
    except Exception as exc:
        if is_transient_error(exc):
            raise  # the object store did not answer: retried by the task, nothing rejected
        log.exception("import item %s (%s) failed", item.pk, item.name)
        finish_item(
            item,
            Status.REJECTED,
            code="failed",
            reason=f"Import failed ({type(exc).__name__}: {exc}); nothing was stored.",
        )


def _process_staged(item: ImportItem) -> None:
    # A local path with the staged bytes: the file itself (local storage) or a temporary
    # copy of the object (S3: this worker may be on another host than the one that staged).
    with storage.staged_file(item.staged_path) as path:
        _process_path(item, path)


def _process_path(item: ImportItem, path: Path) -> None:
    batch = item.batch
    project = batch.project
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
        process_recording(item, path, sha, mono, info)
        return
    if Clip.objects.filter(project=project, sha256=sha).exists():
        finish_item(
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
            source=clip_source(batch),
            **clip_fields(item),
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
        finish_item(
            item, Status.DUPLICATE, code="duplicate", reason="the project already has this audio"
        )
        return
    except BaseException:
        writes.discard()
        raise
    finish_item(item, Status.ACCEPTED, clips=1)
