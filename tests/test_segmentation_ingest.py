"""A long production recording is cut into utterance clips that keep their place."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from labelling.models import Clip, ClipSource, Recording
from labelling.services import ingest

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

FILES = ["03a01Fa.wav", "08a02La.wav", "10b01Lb.wav", "13a05Wa.wav", "16b10Aa.wav"]


def _long_recording(emodb, path, gap_s=1.2):
    """EmoDB clips of five speakers joined by silence, at 44.1 kHz stereo like a call export."""
    rate = 16000
    pieces, truth, cursor = [], [], 0.0
    for name in FILES:
        samples, file_rate = soundfile.read(emodb / "wav" / name, dtype="float32")
        assert file_rate == rate
        pieces += [samples, np.zeros(int(gap_s * rate), dtype=np.float32)]
        truth.append((cursor, cursor + len(samples) / rate))
        cursor += (len(samples) + int(gap_s * rate)) / rate
    mono = np.concatenate(pieces)
    soundfile.write(path, np.stack([mono, mono], axis=1), rate, subtype="PCM_16")
    return truth


def test_a_long_recording_is_segmented_at_the_clip_boundaries(emodb, project, tmp_path):
    folder = tmp_path / "calls"
    folder.mkdir()
    truth = _long_recording(emodb, folder / "call-0001.wav")

    batch = ingest.stage_folder(project, folder, segment=True)
    for item_id in ingest.pending_item_ids(batch):
        ingest.process_item(item_id)

    recording = Recording.objects.get()
    assert recording.original_name == "call-0001.wav"
    assert recording.channels == 2
    clips = list(Clip.objects.filter(recording=recording).order_by("start_s"))
    assert len(clips) == len(FILES)
    for clip, (start, end) in zip(clips, truth, strict=True):
        assert clip.start_s == pytest.approx(start, abs=0.25)
        assert clip.end_s == pytest.approx(end, abs=0.25)
        assert clip.source == ClipSource.PRODUCTION
        assert clip.duration_s == pytest.approx(clip.end_s - clip.start_s)
        canonical = soundfile.info(clip.canonical.path)
        assert canonical.samplerate == 16000
        assert canonical.frames / 16000 == pytest.approx(clip.duration_s, abs=0.01)

    # The same recording again adds nothing.
    again = ingest.stage_folder(project, folder, segment=True)
    for item_id in ingest.pending_item_ids(again):
        ingest.process_item(item_id)
    assert again.items.get().status == "duplicate"
    assert Clip.objects.count() == len(FILES)
