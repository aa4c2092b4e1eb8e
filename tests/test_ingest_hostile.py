"""Bad input gets a clear per-file reason and stores nothing; the rest of the batch goes on."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from labelling.models import Clip, ImportBatch, ImportItem
from labelling.services import ingest
from tests.hostile_files import HOSTILE_CASES

pytestmark = pytest.mark.django_db

MAX_BYTES = 150_000
MAX_SECONDS = 5.0


def _good_wav(path: Path, seconds: float = 1.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    soundfile.write(
        path,
        (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32),
        16000,
        subtype="PCM_16",
    )
    return path


def _run(batch: ImportBatch) -> None:
    for item_id in ingest.pending_item_ids(batch):
        ingest.process_item(item_id)


def _stored_files(media_root: Path) -> list[Path]:
    return [
        p for sub in ("clips", "recordings") for p in (media_root / sub).rglob("*") if p.is_file()
    ]


@pytest.fixture
def limits(settings):
    settings.EMOLOOP_MAX_FILE_BYTES = MAX_BYTES
    settings.EMOLOOP_MAX_CLIP_SECONDS = MAX_SECONDS


def test_each_hostile_file_is_refused_with_its_reason_and_nothing_is_stored(
    project, tmp_path, media_root, limits
):
    folder = tmp_path / "upload"
    folder.mkdir()
    expected: dict[str, str] = {}
    for index, case in enumerate(HOSTILE_CASES):
        sub = folder / f"case{index:02d}"
        sub.mkdir()
        path, code = case(sub, max_bytes=MAX_BYTES, max_seconds=MAX_SECONDS)
        expected[path.relative_to(folder).as_posix()] = code
    _good_wav(folder / "good.wav")

    batch = ingest.stage_folder(project, folder)
    _run(batch)

    items = {item.name: item for item in batch.items.all()}
    assert set(items) == set(expected) | {"good.wav"}
    for name, code in expected.items():
        item = items[name]
        assert (item.status, item.reason_code) == (ImportItem.Status.REJECTED, code), name
        assert len(item.reason) > 10, f"{name}: the reason must be a sentence, got {item.reason!r}"
    assert items["good.wav"].status == ImportItem.Status.ACCEPTED
    # Exactly one clip (the good one) and only its two files were stored.
    assert Clip.objects.filter(project=project).count() == 1
    assert len(_stored_files(media_root)) == 2
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.DONE
    assert not ingest.staging_dir(batch).exists(), "staging is cleaned when the batch is done"


def _zip_with(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_archive_members_escaping_the_archive_are_refused(project, tmp_path, media_root):
    good = _good_wav(tmp_path / "g.wav").read_bytes()
    archive = _zip_with(
        tmp_path / "calls.zip",
        {
            "ok/first.wav": good,
            "../escape.wav": good,
            "/etc/absolute.wav": good,
            "ok/../../sneaky.wav": good,
            "C:/windows.wav": good,
        },
    )

    batch = ingest.stage_folder(project, archive)
    _run(batch)

    outcome = {item.name: item.reason_code for item in batch.items.all()}
    assert outcome == {
        "ok/first.wav": "",
        "../escape.wav": "path_escape",
        "/etc/absolute.wav": "path_escape",
        "ok/../../sneaky.wav": "path_escape",
        "C:/windows.wav": "path_escape",
    }
    assert Clip.objects.count() == 1
    assert not (tmp_path / "escape.wav").exists()
    assert not (media_root.parent / "escape.wav").exists()


def test_tar_links_and_devices_are_refused(project, tmp_path):
    good = _good_wav(tmp_path / "g.wav").read_bytes()
    archive = tmp_path / "calls.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("a.wav")
        info.size = len(good)
        tf.addfile(info, io.BytesIO(good))
        link = tarfile.TarInfo("passwd.wav")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        fifo = tarfile.TarInfo("pipe.wav")
        fifo.type = tarfile.FIFOTYPE
        tf.addfile(fifo)

    batch = ingest.stage_folder(project, archive)
    _run(batch)

    outcome = {item.name: (item.status, item.reason_code) for item in batch.items.all()}
    assert outcome["a.wav"] == ("accepted", "")
    assert outcome["passwd.wav"] == ("rejected", "not_regular_file")
    assert outcome["pipe.wav"] == ("rejected", "not_regular_file")


def test_a_corrupt_archive_is_one_clear_rejection(project, tmp_path):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 this is not really a zip file")

    batch = ingest.stage_folder(project, tmp_path)
    _run(batch)

    item = batch.items.get()
    assert (item.status, item.reason_code) == ("rejected", "corrupt")
    assert "archive could not be read" in item.reason


def test_processing_an_item_twice_creates_one_clip(project, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _good_wav(folder / "a.wav")
    batch = ingest.stage_folder(project, folder)
    item_id = ingest.pending_item_ids(batch)[0]

    ingest.process_item(item_id)
    ingest.process_item(item_id)  # a retried task

    assert Clip.objects.count() == 1
    assert ImportItem.objects.get(pk=item_id).status == "accepted"


def test_the_same_audio_twice_in_one_batch_is_one_clip_and_one_duplicate(project, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _good_wav(folder / "a.wav")
    (folder / "copy-of-a.wav").write_bytes((folder / "a.wav").read_bytes())

    batch = ingest.stage_folder(project, folder)
    _run(batch)

    statuses = sorted(batch.items.values_list("status", flat=True))
    assert statuses == ["accepted", "duplicate"]
    assert Clip.objects.count() == 1


def test_the_same_audio_may_live_in_two_projects(project, other_project, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _good_wav(folder / "a.wav")

    _run(ingest.stage_folder(project, folder))
    _run(ingest.stage_folder(other_project, folder))

    assert Clip.objects.count() == 2


def test_files_over_the_size_limit_are_not_even_copied(project, tmp_path, settings):
    settings.EMOLOOP_MAX_FILE_BYTES = 1000
    folder = tmp_path / "in"
    folder.mkdir()
    _good_wav(folder / "big.wav")

    batch = ingest.stage_folder(project, folder)

    item = batch.items.get()
    assert (item.status, item.reason_code, item.staged_path) == ("rejected", "too_large", "")
