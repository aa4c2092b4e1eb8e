"""Bad input gets a clear per-file reason and stores nothing; the rest of the batch goes on."""

from __future__ import annotations

import importlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.apps import apps
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from kombu.exceptions import OperationalError as KombuOperationalError

from labelling import archives, tasks
from labelling.models import Clip, ImportBatch, ImportItem
from labelling.services import ingest, queue
from labelling.services.ingest import expansion
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
    """Process the batch as the workers would, archives' members included."""
    while ids := ingest.pending_item_ids(batch):
        for item_id in ids:
            ingest.process_item(item_id)


def _files(batch: ImportBatch):
    """The batch's file items: an expanded archive is not one (its members are)."""
    return batch.items.exclude(status="expanded")


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

    outcome = {item.name: item.reason_code for item in _files(batch)}
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

    outcome = {item.name: (item.status, item.reason_code) for item in _files(batch)}
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


# --- Hidden files -----------------------------------------------------------------------


def test_hidden_files_and_resource_forks_get_a_refusal_each_not_silence(project, tmp_path):
    folder = tmp_path / "in"
    (folder / ".git").mkdir(parents=True)
    (folder / "sub").mkdir()
    _good_wav(folder / "a.wav")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".git" / "config").write_text("[core]\n")
    (folder / "sub" / "._a.wav").write_bytes(b"\0\5\26\7" + b"\0" * 60)
    bundle = _zip_with(
        tmp_path / "bundle.zip",
        {
            "calls/c1.wav": _good_wav(tmp_path / "c1.wav", seed=1).read_bytes(),
            "__MACOSX/calls/._c1.wav": b"\0\5\26\7",
            "__MACOSX/._calls": b"\0\5\26\7",
            "calls/.hidden.wav": b"RIFF",
        },
    )
    (folder / "bundle.zip").write_bytes(bundle.read_bytes())

    batch = ingest.stage_folder(project, folder)
    _run(batch)

    outcome = {item.name: (item.status, item.reason_code) for item in _files(batch)}
    assert outcome == {
        "a.wav": ("accepted", ""),
        ".DS_Store": ("rejected", "hidden"),
        ".git/": ("rejected", "hidden"),
        "sub/._a.wav": ("rejected", "hidden"),
        "bundle.zip/calls/c1.wav": ("accepted", ""),
        "bundle.zip/__MACOSX/": ("rejected", "hidden"),
        "bundle.zip/calls/.hidden.wav": ("rejected", "hidden"),
    }
    git = batch.items.get(name=".git/")
    assert git.reason.startswith("Hidden files and macOS resource forks")
    assert "(2 files in this folder.)" in git.reason
    assert batch.items.get(name=".DS_Store").reason == archives.HIDDEN_REASON


# --- Archives are expanded by the worker ------------------------------------------------


def test_staging_an_archive_copies_its_bytes_and_nothing_more(project, tmp_path):
    members = {
        f"calls/c{i}.wav": _good_wav(tmp_path / f"{i}.wav", seed=i).read_bytes() for i in range(3)
    }
    archive = _zip_with(tmp_path / "calls.zip", members)

    batch = ingest.stage_folder(project, archive)

    item = batch.items.get()
    assert (item.name, item.status, item.size_bytes) == (
        "calls.zip",
        "pending",
        archive.stat().st_size,
    )
    staged = sorted(p.name for p in ingest.staging_dir(batch).rglob("*"))
    assert staged == [Path(item.staged_path).name]
    assert default_storage.open(item.staged_path).read() == archive.read_bytes()

    ingest.process_item(item.pk)

    item.refresh_from_db()
    assert (item.status, item.reason) == ("expanded", "3 member(s) read")
    assert sorted(i.name for i in _files(batch)) == [f"calls/c{i}.wav" for i in range(3)]
    assert ingest.batch_counts(batch.pk).total == 3
    _run(batch)
    assert ingest.batch_counts(batch.pk) == ingest.BatchCounts(3, 0, 3, 0, 0, 3)


def test_expanding_an_archive_twice_creates_its_members_once(project, tmp_path):
    good = _good_wav(tmp_path / "g.wav").read_bytes()
    archive = _zip_with(tmp_path / "calls.zip", {"a.wav": good, "b/c.wav": good})
    batch = ingest.stage_folder(project, tmp_path / "calls.zip")
    item = batch.items.get()
    stale = ImportItem.objects.select_related("batch__project").get(pk=item.pk)

    ingest.process_item(item.pk)
    ingest.process_item(item.pk)  # a retried task: the item is no longer pending
    expansion.expand_archive(stale)  # a concurrent worker that read it while still pending

    assert sorted(i.name for i in _files(batch)) == ["a.wav", "b/c.wav"]
    # The loser's extraction folder is gone; only the winner's members are staged.
    folders = [p for p in ingest.staging_dir(batch).iterdir() if p.is_dir()]
    assert len(folders) == 1
    assert archive.exists()


def test_manifest_metadata_reaches_the_members_of_an_archive(project, tmp_path):
    good = _good_wav(tmp_path / "g.wav").read_bytes()
    archive = _zip_with(tmp_path / "calls.zip", {"x/c1.wav": good})
    manifest = tmp_path / "meta.csv"
    manifest.write_text("file,speaker,gender,mood\nc1.wav,s9,f,calm\n")

    batch = ingest.stage_folder(project, archive, manifest_path=manifest)
    _run(batch)

    clip = Clip.objects.get()
    assert (clip.original_name, clip.speaker_id, clip.gender) == ("x/c1.wav", "s9", "female")
    assert clip.metadata == {"mood": "calm"}


def test_an_archive_that_breaks_off_keeps_what_was_read_and_says_so(project, tmp_path):
    archive = tmp_path / "calls.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for i in range(3):
            data = _good_wav(tmp_path / f"{i}.wav", seconds=2.0, seed=i).read_bytes()
            info = tarfile.TarInfo(f"c{i}.wav")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])

    batch = ingest.stage_folder(project, archive)
    _run(batch)

    item = batch.items.get(name="calls.tar.gz")
    assert (item.status, item.reason_code) == ("rejected", "corrupt")
    assert "archive could not be read" in item.reason
    assert "member(s) read before it broke off" in item.reason
    assert _files(batch).filter(status="accepted").count() >= 1
    assert ingest.batch_counts(batch.pk).total == _files(batch).count()


# --- Loudness and failures --------------------------------------------------------------


def test_every_imported_clip_gets_its_loudness(project, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _good_wav(folder / "a.wav")

    _run(ingest.stage_folder(project, folder))

    clip = Clip.objects.get()
    mono, _ = soundfile.read(clip.canonical.path, dtype="float32")
    assert clip.rms_dbfs == pytest.approx(ingest.rms_dbfs(mono), abs=0.05)
    assert clip.rms_dbfs == pytest.approx(-20.0, abs=0.2)  # 0.1 x N(0, 1) noise


def test_a_clip_whose_rows_fail_leaves_no_file_and_keeps_shared_ones(
    project, other_project, tmp_path, media_root, monkeypatch
):
    folder = tmp_path / "in"
    folder.mkdir()
    _good_wav(folder / "shared.wav", seed=1)
    _run(ingest.stage_folder(other_project, folder))
    shared = sorted(_stored_files(media_root))
    _good_wav(folder / "new.wav", seed=2)

    def broken_queue(*args, **kwargs):
        raise RuntimeError("disk quota exceeded on the queue tablespace")

    monkeypatch.setattr(queue, "enqueue_clips", broken_queue)
    batch = ingest.stage_folder(project, folder)
    _run(batch)

    for item in batch.items.all():
        assert (item.status, item.reason_code) == ("rejected", "failed"), item.name
        assert "RuntimeError: disk quota exceeded" in item.reason
    assert not Clip.objects.filter(project=project).exists()
    assert sorted(_stored_files(media_root)) == shared


def test_the_loudness_migration_fills_old_clips_and_skips_missing_files(project, tmp_path):
    migration = importlib.import_module("labelling.migrations.0006_clip_rms_backfill")
    folder = tmp_path / "in"
    folder.mkdir()
    _good_wav(folder / "kept.wav", seed=1)
    _good_wav(folder / "lost.wav", seed=2, seconds=0.5)
    _run(ingest.stage_folder(project, folder))
    expected = Clip.objects.get(original_name="kept.wav").rms_dbfs
    Clip.objects.update(rms_dbfs=None)  # as every clip imported before this release
    lost = Clip.objects.get(original_name="lost.wav")
    Path(lost.canonical.path).unlink()

    migration.fill_rms(apps, None)

    assert Clip.objects.get(original_name="kept.wav").rms_dbfs == pytest.approx(expected, abs=0.01)
    assert Clip.objects.get(pk=lost.pk).rms_dbfs is None


# --- Doors: uploads and the CLI ---------------------------------------------------------


def test_an_uploaded_archive_is_staged_as_its_bytes_and_a_hidden_upload_is_refused(
    project, tmp_path
):
    good = _good_wav(tmp_path / "g.wav").read_bytes()
    bundle = _zip_with(tmp_path / "bundle.zip", {"calls/c1.wav": good, "calls/c2.wav": good})
    uploads = [
        SimpleUploadedFile("bundle.zip", bundle.read_bytes()),
        SimpleUploadedFile("._bundle.zip", b"\0\5\26\7"),
    ]

    batch = ingest.stage_uploads(project, uploads)

    outcome = {item.name: (item.status, item.reason_code) for item in batch.items.all()}
    assert outcome == {"bundle.zip": ("pending", ""), "._bundle.zip": ("rejected", "hidden")}
    assert [p.name for p in ingest.staging_dir(batch).rglob("*.wav")] == []


def test_the_cli_in_process_expands_archives_and_processes_their_members(project, tmp_path):
    good = _good_wav(tmp_path / "g.wav").read_bytes()
    other = _good_wav(tmp_path / "h.wav", seed=3).read_bytes()
    folder = tmp_path / "in"
    folder.mkdir()
    _good_wav(folder / "a.wav", seed=5)
    _zip_with(folder / "bundle.zip", {"calls/c1.wav": good, "calls/c2.wav": other})
    out = io.StringIO()

    call_command("ingest", project.slug, str(folder), in_process=True, verbosity=0, stdout=out)

    assert "accepted=3 duplicate=0 rejected=0 pending=0 clips=3" in out.getvalue()
    batch = ImportBatch.objects.get()
    assert batch.status == ImportBatch.Status.DONE
    assert batch.dispatched_at is not None  # taken by the command: the beat leaves it alone


@pytest.mark.django_db(transaction=True)  # as in real use: no transaction around the command
def test_the_cli_says_what_to_do_when_the_broker_is_down(project, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    _good_wav(folder / "a.wav")

    def refuse(*args, **kwargs):
        raise KombuOperationalError("Error 111 connecting to 127.0.0.1:6379. Refused.")

    monkeypatch.setattr(tasks.ingest_item, "apply_async", refuse)
    with pytest.raises(CommandError, match="--in-process") as caught:
        call_command("ingest", project.slug, str(folder), no_wait=True, verbosity=0)

    assert "will be sent to the workers as soon as the task queue is back" in str(caught.value)
    assert ImportBatch.objects.get().dispatched_at is None
