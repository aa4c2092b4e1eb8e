"""A long production recording is cut into utterance clips that keep their place.

The recordings are built from EmoDB clips present both in the demo subset (demo/emodb) and in
the whole corpus, so the tests run the same with either behind the `emodb` fixture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional as taf

from labelling.models import Clip, ClipSource, ImportItem, Recording
from labelling.services import ingest, queue

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# Five speakers, five emotions; the VAD finds each within 0.11 s of its speech energy.
FILES = ["03a01Fa.wav", "08a01Lc.wav", "09a01Nb.wav", "10a01Wa.wav", "13a01Ea.wav"]
CALL_RATE = 44100
VAD_FRAME = 512  # silero's hop at 16 kHz


def _read(emodb: Path, name: str) -> np.ndarray:
    samples, rate = soundfile.read(emodb / "wav" / name, dtype="float32")
    assert rate == 16000
    return samples


def _long_recording(emodb: Path, path: Path, gap_s: float = 1.2) -> list[tuple[float, float]]:
    """EmoDB clips of five speakers joined by silence, at 44.1 kHz stereo like a call export."""
    rate = 16000
    pieces, truth, cursor = [], [], 0.0
    for name in FILES:
        samples = _read(emodb, name)
        pieces += [samples, np.zeros(int(gap_s * rate), dtype=np.float32)]
        truth.append((cursor, cursor + len(samples) / rate))
        cursor += (len(samples) + int(gap_s * rate)) / rate
    mono = taf.resample(torch.from_numpy(np.concatenate(pieces)), rate, CALL_RATE).numpy()
    soundfile.write(path, np.stack([mono, 0.5 * mono], axis=1), CALL_RATE, subtype="PCM_16")
    return truth


def _aligned(samples: np.ndarray) -> np.ndarray:
    """Pad to whole VAD frames, so that a copy of it later in a recording is cut identically."""
    return np.concatenate([samples, np.zeros(-samples.size % VAD_FRAME, dtype=np.float32)])


def _recording_of(path: Path, pieces: list[np.ndarray]) -> Path:
    gap = np.zeros(40 * VAD_FRAME, dtype=np.float32)
    parts = [gap]
    for piece in pieces:
        parts += [_aligned(piece), gap]
    mono = np.concatenate(parts)
    soundfile.write(path, np.stack([mono, mono], axis=1), 16000, subtype="PCM_16")
    return path


def _ingest(project, folder: Path) -> ImportItem:
    batch = ingest.stage_folder(project, folder, segment=True)
    for item_id in ingest.pending_item_ids(batch):
        ingest.process_item(item_id)
    return batch.items.get()


def _stored(media_root: Path) -> list[Path]:
    return sorted(
        p for sub in ("clips", "recordings") for p in (media_root / sub).rglob("*") if p.is_file()
    )


def test_a_long_recording_is_segmented_at_the_clip_boundaries(emodb, project, tmp_path):
    folder = tmp_path / "calls"
    folder.mkdir()
    truth = _long_recording(emodb, folder / "call-0001.wav")

    item = _ingest(project, folder)

    assert (item.status, item.reason) == ("accepted", "")
    recording = Recording.objects.get()
    assert recording.original_name == "call-0001.wav"
    assert (recording.sample_rate, recording.channels) == (CALL_RATE, 2)
    clips = list(Clip.objects.filter(recording=recording).order_by("start_s"))
    assert len(clips) == len(FILES)
    for clip, (start, end) in zip(clips, truth, strict=True):
        assert clip.start_s == pytest.approx(start, abs=0.25)
        assert clip.end_s == pytest.approx(end, abs=0.25)
        assert clip.source == ClipSource.PRODUCTION
        assert clip.duration_s == pytest.approx(clip.end_s - clip.start_s)
        assert clip.rms_dbfs is not None
        canonical = soundfile.info(clip.canonical.path)
        assert canonical.samplerate == 16000
        assert canonical.frames / 16000 == pytest.approx(clip.duration_s, abs=0.01)
        # The original-rate cut, read from the file for the segment's frame range.
        original = soundfile.info(clip.original.path)
        assert (original.samplerate, original.channels) == (CALL_RATE, 2)
        assert original.frames == round(clip.end_s * CALL_RATE) - round(clip.start_s * CALL_RATE)

    # The same recording again adds nothing.
    again = _ingest(project, folder)
    assert (again.status, again.reason) == ("duplicate", "the project already has this recording")
    assert Clip.objects.count() == len(FILES)


def test_repeated_segments_are_skipped_and_counted(emodb, project, tmp_path, media_root):
    a, b, c = (_read(emodb, name) for name in FILES[:3])
    folder = tmp_path / "calls"
    folder.mkdir()
    # The same utterance three times (a looped prompt, a re-sent buffer), and two others.
    _recording_of(folder / "loop.wav", [a, b, a, c, a])

    item = _ingest(project, folder)

    assert item.status == "accepted", item.reason
    assert item.reason == "2 repeated segments skipped"
    assert item.clips_created == 3
    assert Clip.objects.filter(project=project).count() == 3
    # Nothing stored without a row: the recording and each clip's two files.
    assert len(_stored(media_root)) == 1 + 3 * 2


def test_a_segment_already_in_the_project_is_skipped(emodb, project, tmp_path):
    a, b, c = (_read(emodb, name) for name in FILES[:3])
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    _recording_of(first / "call-1.wav", [a, b])
    _recording_of(second / "call-2.wav", [a, c])

    assert _ingest(project, first).status == "accepted"
    item = _ingest(project, second)

    assert (item.status, item.reason, item.clips_created) == (
        "accepted",
        "1 repeated segment skipped",
        1,
    )
    assert Recording.objects.count() == 2
    assert Clip.objects.filter(project=project).count() == 3


def test_a_recording_whose_rows_fail_leaves_no_file_and_says_why(
    emodb, project, other_project, tmp_path, media_root, monkeypatch
):
    a, b = (_read(emodb, name) for name in FILES[:2])
    folder = tmp_path / "calls"
    folder.mkdir()
    _recording_of(folder / "call.wav", [a, b])
    # Another project already holds the same recording: its files are shared by name.
    assert _ingest(other_project, folder).status == "accepted"
    shared = _stored(media_root)
    assert len(shared) == 1 + 2 * 2
    (tmp_path / "more").mkdir()
    _recording_of(tmp_path / "more" / "call-2.wav", [b, a, _read(emodb, FILES[2])])

    def broken_queue(*args, **kwargs):
        raise RuntimeError("queue table is locked for maintenance")

    monkeypatch.setattr(queue, "enqueue_clips", broken_queue)
    first = _ingest(project, folder)
    second = _ingest(project, tmp_path / "more")

    for item in (first, second):
        assert (item.status, item.reason_code) == ("rejected", "failed")
        assert "RuntimeError: queue table is locked for maintenance" in item.reason
    assert not Recording.objects.filter(project=project).exists()
    assert not Clip.objects.filter(project=project).exists()
    # The other project's files are all still there; nothing new was left behind.
    assert _stored(media_root) == shared
