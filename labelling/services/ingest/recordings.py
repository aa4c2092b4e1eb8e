"""Segmented imports: a long recording cut into utterance clips that keep their place in it.

``process_recording`` runs silero-vad on the 16 kHz mono decode (``audio.segment_speech``),
stores the recording's original once and, per segment, an original-rate WAV read from the
file for that frame range only (the original rate is never held whole) and its canonical
copy. A segment whose audio repeats (earlier in the recording, or already in the project)
is skipped and counted in the item's reason; segments lost to a concurrent import of the
same audio are dropped and their rows inserted again (``_save_recording``).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import IO

import numpy as np
import soundfile
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, transaction

from labelling import audio
from labelling.models import Clip, ClipSource, ImportItem, Project, Recording
from labelling.services import queue, storage
from labelling.services.ingest.records import (
    ATTEMPTS,
    FORMAT_FILES,
    Status,
    clip_fields,
    finish_item,
    rms_dbfs,
)

__all__ = ["process_recording"]


def _recording_duplicate(item: ImportItem) -> None:
    finish_item(
        item, Status.DUPLICATE, code="duplicate", reason="the project already has this recording"
    )


def process_recording(
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
        finish_item(
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
            finish_item(
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
            metadata=clip_fields(item)["metadata"],
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
            keep=[recording_name]
            + [n for c in saved for n in (c.original.name, c.canonical.name) if n]
        )
    if not saved:
        finish_item(
            item,
            Status.DUPLICATE,
            code="duplicate",
            reason="every speech segment of this recording is already in the project",
        )
        return
    note = f"{repeated} repeated segment{'s' if repeated != 1 else ''} skipped" if repeated else ""
    finish_item(item, Status.ACCEPTED, clips=len(saved), reason=note)


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
    fields = clip_fields(item)
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
    for _ in range(ATTEMPTS):
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
