"""`manage.py export`: creates a version, builds it here, copies the folder or the zip."""

from __future__ import annotations

import uuid
import zipfile

import pytest
from django.core.management import CommandError, call_command

from exports.core.archive import verify_sha256sums
from exports.models import DatasetVersion
from labelling.services import queue
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled(project, annotator, second_annotator):
    clips = [ClipFactory(project=project, speaker_id=f"s{n}") for n in range(3)]
    queue.enqueue_clips(project, clips, seed=1)
    for user in (annotator, second_annotator):
        while (leased := queue.next_clip(project, user)) is not None:
            queue.submit(project, user, lease_id=leased.lease.pk, client_id=uuid.uuid4(),
                         node_key="joyful")  # fmt: skip
    return clips


def test_the_command_builds_a_version_and_copies_its_folder(project, labelled, tmp_path):
    call_command("export", "callcentre", "--out", str(tmp_path), "--seed", "4", verbosity=0)

    version = DatasetVersion.objects.get(project=project)
    assert version.status == DatasetVersion.Status.READY
    assert version.split_seed == 4
    copied = tmp_path / "callcentre-v1"
    assert verify_sha256sums(copied) == []
    assert sorted(p.name for p in (copied / "audio").iterdir()) == sorted(
        f"{clip.pk}.wav" for clip in labelled
    )


def test_the_command_writes_the_zip(project, labelled, tmp_path):
    call_command("export", "callcentre", "--out", str(tmp_path), "--zip", verbosity=0)

    with zipfile.ZipFile(tmp_path / "callcentre-v1.zip") as archive:
        assert archive.testzip() is None
        assert "clips.csv" in archive.namelist()


def test_an_unknown_project_is_an_error(db):
    with pytest.raises(CommandError, match="No project"):
        call_command("export", "nope", verbosity=0)
