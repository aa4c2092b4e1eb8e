"""Fill Clip.rms_dbfs where ingestion left it empty (every clip that is not a segment).

Until this release only segments of long recordings got a loudness, so normalised playback
applied no gain to ordinary imports. The value is the RMS of the stored canonical 16 kHz
WAV in dB full scale, as labelling.services.ingest.rms_dbfs computes it at ingestion. The
file is read through default_storage in blocks (never whole); a clip whose file is missing or
unreadable keeps an empty value and the migration goes on. Not atomic: each clip is saved on
its own, so a large table is not held in one transaction and a rerun resumes.
"""

from __future__ import annotations

import logging

import numpy as np
import soundfile
from django.core.files.storage import default_storage
from django.db import migrations

log = logging.getLogger(__name__)

BLOCK_FRAMES = 1 << 16


def _rms_dbfs(name: str) -> float | None:
    total, count = 0.0, 0
    with default_storage.open(name, "rb") as fh, soundfile.SoundFile(fh) as reader:
        while True:
            block = reader.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
            total += float(np.square(mono, dtype=np.float64).sum())
            count += int(mono.size)
    if count == 0:
        return None
    rms = float(np.sqrt(total / count))
    return round(20 * float(np.log10(max(rms, 1e-9))), 2)


def fill_rms(apps, schema_editor) -> None:
    Clip = apps.get_model("labelling", "Clip")
    missing = 0
    pending = Clip.objects.filter(rms_dbfs__isnull=True).exclude(canonical="")
    for pk, name in pending.values_list("pk", "canonical").iterator(chunk_size=2000):
        try:
            value = _rms_dbfs(name)
        except (OSError, RuntimeError, ValueError, soundfile.LibsndfileError):
            missing += 1
            continue
        if value is not None:
            Clip.objects.filter(pk=pk, rms_dbfs__isnull=True).update(rms_dbfs=value)
    if missing:
        log.warning(
            "rms_dbfs not filled for %d clip(s): canonical file missing or unreadable", missing
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("labelling", "0005_taxonomy_owner_invitation"),
    ]

    operations = [
        migrations.RunPython(fill_rms, migrations.RunPython.noop, elidable=True),
    ]
