"""Ingesting the whole of EmoDB through the CLI, on PostgreSQL, then again (adds nothing).

`emodb` is the whole corpus when ../shared holds it (535 clips), else the 41-clip demo subset
in the repository: counts come from whichever labels.csv the fixture gives.
"""

from __future__ import annotations

import csv
import io

import pytest
import soundfile
from django.core.management import call_command

from labelling.models import Clip, ClipSource, ImportBatch, ImportItem

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_all_of_emodb_is_ingested_with_metadata_and_reingesting_adds_nothing(emodb, project):
    labels = list(csv.DictReader((emodb / "labels.csv").open()))
    n = len(labels)
    assert n > 0
    out = io.StringIO()
    call_command(
        "ingest",
        project.slug,
        str(emodb / "wav"),
        manifest=str(emodb / "labels.csv"),
        in_process=True,
        source="corpus",
        verbosity=0,
        stdout=out,
    )

    assert f"accepted={n} duplicate=0 rejected=0" in out.getvalue()
    clips = {clip.original_name: clip for clip in Clip.objects.filter(project=project)}
    assert len(clips) == n
    for row in labels:
        clip = clips[row["file"]]
        info = soundfile.info(str(emodb / "wav" / row["file"]))
        assert clip.duration_s == pytest.approx(info.frames / info.samplerate, abs=1e-6)
        assert (clip.sample_rate, clip.channels) == (16000, 1)
        assert clip.speaker_id == row["speaker"]
        assert clip.gender == row["gender"]
        assert clip.metadata["emotion"] == row["emotion"]
        assert clip.metadata["age"] == row["age"]
        assert clip.source == ClipSource.CORPUS
        assert clip.rms_dbfs is not None  # loudness, for normalised playback
        assert -60 < clip.rms_dbfs < 0
    sample = clips["03a01Fa.wav"]
    assert sample.age_band == "25-34"
    canonical = soundfile.info(sample.canonical.path)
    assert (canonical.samplerate, canonical.channels) == (16000, 1)
    assert len(sample.peaks) == pytest.approx(sample.duration_s * 100, abs=2)
    assert ImportBatch.objects.get().status == ImportBatch.Status.DONE

    again = io.StringIO()
    call_command(
        "ingest",
        project.slug,
        str(emodb / "wav"),
        manifest=str(emodb / "labels.csv"),
        in_process=True,
        verbosity=0,
        stdout=again,
    )

    assert f"accepted=0 duplicate={n} rejected=0" in again.getvalue()
    assert Clip.objects.filter(project=project).count() == n
    second = ImportBatch.objects.order_by("-pk").first()
    assert second.items.filter(status=ImportItem.Status.DUPLICATE).count() == n
