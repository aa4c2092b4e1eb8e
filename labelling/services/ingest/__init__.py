"""Audio ingestion: staging files into an import batch, then processing each file.

Two steps, so that the web process and the CLI only copy bytes:
1. `stage_*` functions create an ImportBatch with one ImportItem per file; the bytes are
   stored through default_storage under ``staging/batch-<id>/`` (never under the user's file
   name), so a worker on another host reads them from the object store. An
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

The rooms, each importing only those above it:

- ``records``: an item's outcome (compare-and-set), refusals, the metadata clips inherit;
- ``staging``: ``stage_folder``, ``stage_uploads``, ``stage_url`` and the worker's URL
  download, ``fetch_url_item``;
- ``expansion``: an archive item expanded into member items;
- ``batches``: batch counts, completion, undispatched and stalled batches;
- ``recordings``: a segmented import cut into utterance clips;
- ``processing``: ``process_item``, one item's work from staged bytes to clips.

Callers import from ``labelling.services.ingest``; the names below are its public interface.
"""

from __future__ import annotations

from labelling.services.ingest.batches import (
    BatchCounts,
    batch_counts,
    finish_batch_if_complete,
    mark_dispatched,
    pending_item_ids,
    stalled_batch_ids,
    undispatched_batch_ids,
)
from labelling.services.ingest.expansion import child_item_ids, is_archive_item
from labelling.services.ingest.processing import process_item
from labelling.services.ingest.records import FORMAT_FILES, rms_dbfs
from labelling.services.ingest.staging import (
    fetch_url_item,
    stage_folder,
    stage_uploads,
    stage_url,
)
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
