"""Decode bombs are refused in bounded memory, and big honest files ingest in bounded memory.

Each hostile file is built here: a 400 kB FLAC of silence declaring 8 channels x 384 kHz x
119 s (1.46 GB once decoded as float32), WAV headers claiming far more audio than is read,
and archives that expand past EMOLOOP_MAX_ARCHIVE_BYTES. Memory is measured in subprocesses
(a fresh interpreter, so nothing else this test process holds counts):

- the decoder alone (no Django): the bomb is refused with a peak RSS under
  ``DECODER_PEAK_MB`` and without importing torch;
- full ingestion (`process_item` after django.setup()): the growth of the peak RSS while
  the item is processed stays under ``INGEST_GROWTH_MB``. Growth rather than the absolute
  peak: a Django process of this project already holds torch (~700 MB here) as soon as the
  learner's models are imported, which says nothing about decoding.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from django.conf import settings as django_settings

from labelling.audio import AudioRejected, decode, decode_mono_16k, probe
from labelling.models import Clip, ImportItem
from labelling.services import ingest

REPO = Path(__file__).resolve().parents[1]

BOMB_RATE, BOMB_CHANNELS, BOMB_SECONDS = 384_000, 8, 119
CLIP_LIMITS = {"max_bytes": 200 * 1024 * 1024, "max_seconds": 120.0}
SAMPLES = {"max_samples_per_second": 384_000}

# Measured on the 2-core development machine: the decoder alone peaks at 39 MB refusing the
# bomb (python + numpy + soundfile); ingestion grows the peak by 1 MB refusing it, and by
# 8.4 MB ingesting the 8-channel file whose full decode is 29.3 MiB (x 3 = 88 MiB; the old
# whole-file path grew by 58 MB). The bounds leave room for other machines and libraries.
DECODER_PEAK_MB = 150
INGEST_GROWTH_MB = 64

# Runs in a fresh interpreter: argv = [mode, item id or path]; prints one JSON line. Peaks
# are VmHWM, not ru_maxrss: a child started by vfork+exec inherits its parent's ru_maxrss
# (pytest's, with torch loaded). For ingestion the peak is reset after setup (Linux:
# clear_refs 5 resets VmHWM), so only the work counts.
_PROBE = r"""
import json, os, sys, time

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False

mode, arg = sys.argv[1], sys.argv[2]
out = {}
if mode == "decoder":
    from labelling import audio
    try:
        audio.decode_mono_16k(arg, max_bytes=200 * 1024 * 1024, max_seconds=120.0,
                              max_samples_per_second=384000)
        out["code"] = None
    except audio.AudioRejected as exc:
        out["code"] = exc.code
    out["peak_mb"] = status("VmHWM")
    out["torch"] = "torch" in sys.modules
else:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")
    import django
    django.setup()
    import numpy as np
    from labelling import audio
    from labelling.models import ImportItem
    from labelling.services import ingest
    torch_before = "torch" in sys.modules
    if mode == "ingest-warm":
        # A worker in steady state has resampled before: torch's first convolution of a
        # block's size allocates ~20 MB once (workspace, thread pool) and keeps it.
        audio.to_mono_16k(np.zeros((96000, 2), np.float32), 48000)
    out["reset"] = reset_peak()
    base = status("VmRSS")
    started = time.perf_counter()
    ingest.process_item(int(arg))
    out["seconds"] = time.perf_counter() - started
    out["growth_mb"] = status("VmHWM") - base  # without the reset: an upper bound
    out["rss_mb"] = status("VmRSS")
    out["torch_imported_by_ingestion"] = not torch_before and "torch" in sys.modules
    item = ImportItem.objects.get(pk=int(arg))
    out["status"], out["code"] = item.status, item.reason_code
print(json.dumps(out))
"""


def _measure(mode: str, arg: object) -> dict:
    env = dict(os.environ)
    db = django_settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    env["MEDIA_ROOT"] = str(django_settings.MEDIA_ROOT)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, str(arg)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(mode, result)  # the figures, for the record (pytest -s)
    return result


@pytest.fixture(scope="module")
def flac_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~400 kB: FLAC codes each 4096-frame block of digital silence in a few bytes."""
    path = tmp_path_factory.mktemp("bomb") / "silence.flac"
    second = np.zeros((BOMB_RATE, BOMB_CHANNELS), dtype=np.int16)
    with sf.SoundFile(
        path, "w", samplerate=BOMB_RATE, channels=BOMB_CHANNELS, format="FLAC", subtype="PCM_16"
    ) as out:
        for _ in range(BOMB_SECONDS):
            out.write(second)
    return path


def _stage(project, tmp_path: Path, source: Path, name: str) -> ImportItem:
    folder = tmp_path / "upload"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(source.read_bytes())
    batch = ingest.stage_folder(project, folder)
    return batch.items.get()


# --- A FLAC declaring 1.46 GB -------------------------------------------------------------


def test_a_400_kb_flac_declaring_gigabytes_is_refused_from_its_header(flac_bomb: Path) -> None:
    info = sf.info(str(flac_bomb))
    assert (info.channels, info.samplerate, info.frames) == (8, 384_000, 119 * 384_000)
    assert flac_bomb.stat().st_size < 600_000
    assert info.frames * info.channels * 4 > 1.4e9  # float32 once decoded

    for check in (probe, decode, decode_mono_16k):
        with pytest.raises(AudioRejected) as caught:
            check(flac_bomb, **CLIP_LIMITS, **SAMPLES)
        assert caught.value.code == "too_large", check.__name__
        assert "8 channels at 384000 Hz for 119.0 s" in str(caught.value)


def test_the_decoder_refuses_the_bomb_without_torch_and_in_little_memory(flac_bomb: Path) -> None:
    result = _measure("decoder", flac_bomb)

    assert result["code"] == "too_large"
    assert result["torch"] is False
    assert result["peak_mb"] < DECODER_PEAK_MB


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_ingesting_the_bomb_is_refused_and_memory_does_not_grow(
    flac_bomb: Path, project, tmp_path: Path
) -> None:
    item = _stage(project, tmp_path, flac_bomb, "call.flac")

    result = _measure("ingest", item.pk)

    assert (result["status"], result["code"]) == ("rejected", "too_large")
    assert result["growth_mb"] < INGEST_GROWTH_MB
    assert result["torch_imported_by_ingestion"] is False
    assert not Clip.objects.exists()


# --- WAV headers claiming huge frames -----------------------------------------------------


def _wav_header(channels: int, rate: int, data_bytes: int) -> bytes:
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        rate,
        rate * channels * 2,
        channels * 2,
        16,
        b"data",
        data_bytes,
    )


def test_a_wav_header_claiming_gigabytes_with_kilobytes_present_is_truncated(
    tmp_path: Path,
) -> None:
    claimed = BOMB_SECONDS * BOMB_RATE * BOMB_CHANNELS * 2  # 731 MB of PCM_16
    path = tmp_path / "claims.wav"
    path.write_bytes(_wav_header(BOMB_CHANNELS, BOMB_RATE, claimed) + b"\0" * 64_000)

    for check in (probe, decode_mono_16k):
        with pytest.raises(AudioRejected) as caught:
            check(path, **CLIP_LIMITS, **SAMPLES)
        assert caught.value.code == "truncated"


def test_a_sparse_wav_of_731_mb_is_refused_without_reading_it(tmp_path: Path) -> None:
    claimed = BOMB_SECONDS * BOMB_RATE * BOMB_CHANNELS * 2
    path = tmp_path / "sparse.wav"
    with path.open("wb") as fh:  # a hole: no disk used, every byte reads as zero
        fh.write(_wav_header(BOMB_CHANNELS, BOMB_RATE, claimed))
        fh.truncate(44 + claimed)

    with pytest.raises(AudioRejected) as by_size:
        decode_mono_16k(path, **CLIP_LIMITS, **SAMPLES)
    with pytest.raises(AudioRejected) as by_samples:
        decode_mono_16k(path, max_bytes=2**30, max_seconds=120.0, **SAMPLES)

    assert by_size.value.code == "too_large"
    assert "the limit is" in str(by_size.value)
    assert by_samples.value.code == "too_large"
    assert "365,568,000 samples to decode" in str(by_samples.value)


# --- Archives expanding past the limit ----------------------------------------------------

ARCHIVE_CAP = 1_000_000


def _wav_bytes(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    samples = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
    sf.write(buffer, samples, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _run(batch) -> None:
    while ids := ingest.pending_item_ids(batch):
        for item_id in ids:
            ingest.process_item(item_id)


@pytest.mark.django_db
def test_a_zip_is_read_up_to_the_archive_limit_and_members_beyond_are_refused(
    project, tmp_path: Path, settings
) -> None:
    settings.EMOLOOP_MAX_ARCHIVE_BYTES = ARCHIVE_CAP
    archive = tmp_path / "calls.zip"
    zeros = b"\0" * 600_000
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.wav", _wav_bytes(1.0, 1))  # 32 kB
        zf.writestr("pad1.wav", zeros)  # 600 kB: fits (632 kB so far)
        zf.writestr("pad2.wav", zeros)  # would reach 1.23 MB: refused
        zf.writestr("b.wav", _wav_bytes(1.0, 2))  # 32 kB more still fits
    assert archive.stat().st_size < 100_000  # the two WAVs (noise) are most of it

    batch = ingest.stage_folder(project, archive)
    _run(batch)

    outcome = {
        item.name: (item.status, item.reason_code)
        for item in batch.items.exclude(status="expanded")
    }
    assert outcome == {
        "a.wav": ("accepted", ""),
        "pad1.wav": ("rejected", "not_audio"),
        "pad2.wav": ("rejected", "too_large"),
        "b.wav": ("accepted", ""),
    }
    assert "limit of 1,000,000 bytes" in batch.items.get(name="pad2.wav").reason
    expanded = batch.items.filter(reason_code__in=["", "not_audio"]).values_list(
        "size_bytes", flat=True
    )
    assert sum(expanded) <= ARCHIVE_CAP


@pytest.mark.django_db
def test_a_tar_gz_bomb_stops_decompressing_at_the_archive_limit(
    project, tmp_path: Path, settings
) -> None:
    settings.EMOLOOP_MAX_ARCHIVE_BYTES = ARCHIVE_CAP
    archive = tmp_path / "calls.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in (
            ("a.wav", _wav_bytes(1.0, 1)),
            ("huge.wav", b"\0" * 50_000_000),  # 50 MB of zeros: ~50 kB compressed
            ("after.wav", _wav_bytes(1.0, 2)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert archive.stat().st_size < 200_000

    batch = ingest.stage_folder(project, archive)
    _run(batch)

    outcome = {
        item.name: (item.status, item.reason_code)
        for item in batch.items.exclude(status="expanded")
    }
    assert outcome == {
        "a.wav": ("accepted", ""),
        "huge.wav": ("rejected", "too_large"),
        # A tar has no index: skipping huge.wav would mean inflating it, so the rest of the
        # archive is one refusal, on the archive's own item.
        "calls.tar.gz": ("rejected", "too_large"),
    }
    reason = batch.items.get(name="calls.tar.gz").reason
    assert reason.startswith("The rest of the archive was not read")
    decompressed = int(re.search(r"\(([\d,]+) bytes decompressed", reason)[1].replace(",", ""))
    assert decompressed <= ARCHIVE_CAP + 3 * 2048 + (1 << 20)  # one read block past the cap


# --- A big honest file --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_an_8_channel_48k_file_ingests_in_a_fraction_of_its_decoded_size(
    project, tmp_path: Path
) -> None:
    rate, channels, seconds = 48_000, 8, 20.0
    rng = np.random.default_rng(8)
    source = tmp_path / "source.wav"
    with sf.SoundFile(
        source, "w", samplerate=rate, channels=channels, format="WAV", subtype="PCM_16"
    ) as out:
        for _ in range(int(seconds)):
            out.write((0.1 * rng.standard_normal((rate, channels))).astype(np.float32))
    full_decode_mb = rate * seconds * channels * 4 / 2**20  # 29.3 MiB of float32
    item = _stage(project, tmp_path, source, "meeting-8ch.wav")

    result = _measure("ingest-warm", item.pk)

    assert (result["status"], result["code"]) == ("accepted", "")
    # Streaming: the 16 kHz mono output (1.3 MB) plus one block, not the 29.3 MiB decode.
    assert result["growth_mb"] < full_decode_mb / 2
    clip = Clip.objects.get()
    assert (clip.channels, clip.sample_rate) == (8, 48_000)
    assert clip.duration_s == pytest.approx(seconds)
    canonical = sf.info(clip.canonical.path)
    assert (canonical.samplerate, canonical.channels, canonical.frames) == (16000, 1, 320_000)
