"""Deleting clips and projects removes their audio, except files another row still uses.

Stored audio is content-addressed, so the same file can belong to clips of two projects; it
goes only with the last row that points at it, and only once the deletion commits.

Every test runs twice: on the local filesystem and on S3 (a bucket on the moto server of
tests/s3server.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from labelling.models import Clip, ImportItem, Project, Recording
from labelling.services import ingest, storage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, params=["local", "s3"])
def backend(request) -> str:
    """The storage this test runs on (s3: default_storage is a fresh bucket)."""
    if request.param == "s3":
        request.getfixturevalue("s3_storage")
    return request.param


def _staged(batch) -> list[str]:
    return storage.stored_names(storage.staging_prefix(batch))


def _wav(path: Path, seed: int, seconds: float = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    samples = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
    soundfile.write(path, samples, 16000, subtype="PCM_16")
    return path


def _import(project: Project, folder: Path, **options) -> None:
    batch = ingest.stage_folder(project, folder, **options)
    while ids := ingest.pending_item_ids(batch):
        for item_id in ids:
            ingest.process_item(item_id)


def _files(clip: Clip) -> list[str]:
    return [clip.original.name, clip.canonical.name]


def _exists(names: list[str]) -> list[bool]:
    return [default_storage.exists(name) for name in names]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "in"
    path.mkdir()
    _wav(path / "shared.wav", seed=1)
    _wav(path / "own.wav", seed=2)
    return path


@pytest.fixture
def registry(monkeypatch):
    """The project-file registry, emptied for the test (the learner registers its own)."""
    callbacks: list = []
    monkeypatch.setattr(storage, "_PROJECT_FILES", callbacks)
    return callbacks


def test_the_files_of_a_deleted_clip_are_gone(project, folder, django_capture_on_commit_callbacks):
    _import(project, folder)
    clip = Clip.objects.get(original_name="own.wav")
    names = _files(clip)
    assert _exists(names) == [True, True]

    with django_capture_on_commit_callbacks(execute=True):
        storage.delete_clip(clip)

    assert not Clip.objects.filter(pk=clip.pk).exists()
    assert _exists(names) == [False, False]


def test_a_file_shared_with_a_clip_of_another_project_stays(
    project, other_project, folder, django_capture_on_commit_callbacks
):
    _import(project, folder)
    _import(other_project, folder)
    mine = Clip.objects.get(project=project, original_name="shared.wav")
    theirs = Clip.objects.get(project=other_project, original_name="shared.wav")
    assert _files(mine) == _files(theirs)  # one file, two rows

    with django_capture_on_commit_callbacks(execute=True):
        storage.delete_clip(mine)

    assert _exists(_files(theirs)) == [True, True]
    with django_capture_on_commit_callbacks(execute=True):
        storage.delete_clip(theirs)
    assert _exists(_files(theirs)) == [False, False]


def _delete_then_fail(clip: Clip) -> None:
    with transaction.atomic():
        storage.delete_clip(clip)
        raise RuntimeError("the admin action failed after the delete")


def test_a_rolled_back_delete_removes_nothing(project, folder, django_capture_on_commit_callbacks):
    _import(project, folder)
    clip = Clip.objects.get(original_name="own.wav")

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
    ):
        _delete_then_fail(clip)

    assert callbacks == []
    assert Clip.objects.filter(pk=clip.pk).exists()
    assert _exists(_files(clip)) == [True, True]


def test_deleting_a_project_removes_its_audio_staging_and_registered_files(
    project, other_project, folder, tmp_path, registry, django_capture_on_commit_callbacks, backend
):
    calls = tmp_path / "calls"
    calls.mkdir()
    gap = np.zeros(16000, dtype=np.float32)
    speech, _ = soundfile.read(Path("demo/emodb/wav/03a01Fa.wav"), dtype="float32")
    soundfile.write(calls / "call.wav", np.concatenate([gap, speech, gap]), 16000)
    _import(project, folder)
    _import(project, calls, segment=True)
    _import(other_project, folder)
    pending = ingest.stage_folder(project, folder)  # staged, never processed
    model_file = default_storage.save(f"learner/models/{project.slug}.pt", ContentFile(b"w"))
    registry.append(lambda p: [model_file] if p.pk == project.pk else [])
    mine = [n for c in Clip.objects.filter(project=project) for n in _files(c)]
    recording = Recording.objects.get(project=project).original.name
    shared = [n for c in Clip.objects.filter(project=other_project) for n in _files(c)]
    assert len(_staged(pending)) == 2

    with django_capture_on_commit_callbacks(execute=True):
        storage.delete_project(project)

    assert not Project.objects.filter(pk=project.pk).exists()
    assert not ImportItem.objects.filter(batch=pending).exists()
    gone = [n for n in mine if n not in shared] + [recording, model_file]
    assert _exists(gone) == [False] * len(gone)
    assert _exists(shared) == [True] * 4  # the other project imported the same two files
    assert _staged(pending) == []
    if backend == "local":
        assert not ingest.staging_dir(pending).exists()
    assert Clip.objects.filter(project=other_project).count() == 2


def test_registering_a_callback_twice_counts_once(registry):
    def files(project):
        return []

    storage.register_project_files(files)
    storage.register_project_files(files)
    assert registry == [files]


def test_an_attempt_discards_what_it_created_and_never_what_it_found(tmp_path):
    existing = default_storage.save("clips/canonical/aa/existing.wav", ContentFile(b"theirs"))
    writes = storage.FileWrites()

    assert writes.save(existing, ContentFile(b"theirs")) == existing
    new = writes.save("clips/canonical/bb/new.wav", ContentFile(b"mine"))
    source = tmp_path / "original.flac"
    source.write_bytes(b"fLaC...")
    from_path = writes.save("clips/original/cc/new.flac", source)

    assert (writes.created, writes.reused) == ([new, from_path], [existing])
    assert sorted(writes.discard()) == sorted([new, from_path])
    assert _exists([existing, new, from_path]) == [True, False, False]


def test_a_reused_file_deleted_before_commit_makes_the_attempt_retry():
    name = default_storage.save("clips/canonical/dd/gone.wav", ContentFile(b"x"))
    writes = storage.FileWrites()
    writes.save(name, ContentFile(b"x"))
    default_storage.delete(name)  # a concurrent clip deletion found it unreferenced

    with pytest.raises(storage.FileVanished), transaction.atomic():
        writes.check_reused()


def test_a_name_a_committed_row_uses_is_never_removed(project, folder):
    _import(project, folder)
    clip = Clip.objects.get(original_name="own.wav")

    assert storage.remove_unreferenced([*_files(clip), "clips/canonical/ee/orphan.wav"]) == [
        "clips/canonical/ee/orphan.wav"
    ]
    assert _exists(_files(clip)) == [True, True]
