"""An import item's record, and what the clips made from it inherit.

Shared by every step of ingestion (staging, archive expansion, file processing, recording
segmentation): how an item's outcome is written once (compare-and-set on ``pending``), an
item refused at staging, the manifest metadata an item carries, and the clip fields derived
from it (source, loudness, the stored original's extension).
"""

from __future__ import annotations

import numpy as np
from django.utils import timezone

from labelling.manifest import ClipMetadata, lookup
from labelling.models import ClipSource, ImportBatch, ImportItem
from labelling.services.storage import delete_staged

__all__ = [
    "ATTEMPTS",
    "FORMAT_FILES",
    "Status",
    "clip_fields",
    "clip_source",
    "finish_item",
    "metadata_for",
    "refused_item",
    "rms_dbfs",
]

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

ATTEMPTS = 3  # a FileVanished retry or a concurrent segment insert


def finish_item(
    item: ImportItem, status: str, *, code: str = "", reason: str = "", clips: int = 0
) -> bool:
    """Record an item's outcome once (compare-and-set on pending); True if this call did.

    Only the call that recorded the outcome deletes the staged file: a losing call must not
    remove the bytes an attempt still pending (a retry after a passing failure) works on.
    """
    updated = ImportItem.objects.filter(pk=item.pk, status=Status.PENDING).update(
        status=status,
        reason_code=code,
        reason=reason[:2000],
        clips_created=clips,
        processed_at=timezone.now(),
    )
    if updated:
        delete_staged(item.staged_path)
    return bool(updated)


def refused_item(
    batch: ImportBatch, name: str, code: str, reason: str, size: int = 0
) -> ImportItem:
    """An unsaved item refused at staging (never copied), for the batch's bulk insert."""
    return ImportItem(
        batch=batch,
        name=name[:500],
        size_bytes=size,
        status=Status.REJECTED,
        reason_code=code,
        reason=reason,
        processed_at=timezone.now(),
    )


def metadata_for(manifest: dict[str, ClipMetadata] | None, name: str) -> dict:
    """The manifest's row for a file (as stored on its item), or {} without a manifest."""
    return lookup(manifest, name).as_json() if manifest else {}


def rms_dbfs(mono: np.ndarray) -> float | None:
    """Loudness of the canonical audio (RMS in dB full scale) for normalised playback."""
    if mono.size == 0:
        return None
    rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64))))
    return round(20 * np.log10(max(rms, 1e-9)), 2)


def clip_fields(item: ImportItem) -> dict:
    """Clip model fields from the item's manifest metadata; the rest (and a URL) in metadata."""
    meta = ClipMetadata.from_json(item.metadata or {})
    fields = dict(meta.fields)
    extra = dict(meta.extra)
    if item.metadata.get("url"):
        extra["url"] = item.metadata["url"]
    return {**fields, "metadata": extra}


def clip_source(batch: ImportBatch) -> str:
    """A segmented batch's clips are production audio, whatever door the recording came in."""
    return ClipSource.PRODUCTION if batch.segment else batch.source
