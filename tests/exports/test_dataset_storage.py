"""Dataset versions through Django's storage API, and format conversion as a Celery task.

- On S3 storage (moto): a build saves every file as an object under the version's folder
  and nothing under MEDIA_ROOT; the file list, one file, the zip and the diff read the
  objects; deleting the project deletes them.
- A format other than native is converted by a real Celery worker (local storage, and a
  worker on S3): the request answers 202 with the progress, the worker stores the zip, then
  the download is that zip, the bytes a conversion of the native folder gives.
- A failed conversion is shown, not restarted by polls; `?retry=1` starts it again; a down
  broker answers 503.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import pytest

from exports.core.archive import deterministic_zip
from exports.formats import materialise
from exports.models import DatasetConversion, DatasetVersion
from exports.services import build, conversions, versions
from labelling.services import queue
from labelling.services.storage import delete_project
from tests.broker import broker_down
from tests.conftest import wait_until
from tests.factories import ClipFactory

BASE = "/api/projects/callcentre/datasets/"


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


def _ready(project, annotators, engineer) -> DatasetVersion:
    clips = [ClipFactory(project=project, speaker_id=f"s{n}") for n in range(4)]
    queue.enqueue_clips(project, clips, seed=1)
    for user, key in zip(annotators, ("mad.angry", "sad"), strict=True):
        while (leased := queue.next_clip(project, user)) is not None:
            queue.submit(project, user, lease_id=leased.lease.pk, client_id=uuid.uuid4(),
                         node_key=key)  # fmt: skip
    built = build.run_build(versions.create_version(project, user=engineer, seed=1).pk)
    assert built is not None
    assert built.status == DatasetVersion.Status.READY
    return built


def _body(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def _expected_conversion(version: DatasetVersion, fmt: str, scratch: Path) -> bytes:
    """The zip of the format as `formats.materialise` writes it from the native folder."""
    with versions.local_copy(version) as native:
        folder = materialise(native, fmt, scratch / f"callcentre-v1-{fmt}")
        deterministic_zip(folder, scratch / "expected.zip")
    return (scratch / "expected.zip").read_bytes()


def _poll_until_ready(client, fmt: str) -> dict:
    url = f"{BASE}1/download/{fmt}.zip?status&retry=0"
    seen: list[dict] = []

    def ready() -> bool:
        answer = client.get(url).json()
        seen.append(answer)
        assert answer["status"] != "failed", answer
        return answer["status"] == "ready"

    wait_until(ready, timeout=180, what=f"the worker to convert to {fmt}")
    return seen[-1]


@pytest.mark.django_db
def test_a_version_on_s3_is_objects_in_the_bucket_and_is_served_from_them(
    s3_storage,
    media_root,
    project,
    annotator,
    second_annotator,
    engineer,
    client_for,
    tmp_path,
    django_capture_on_commit_callbacks,
):
    version = _ready(project, [annotator, second_annotator], engineer)

    keys = s3_storage.keys("datasets/callcentre-v1/")
    listed = versions.manifest(version)
    assert sorted(keys) == sorted(f"datasets/callcentre-v1/{n}" for n in [*listed, "SHA256SUMS"])
    assert any(key.endswith(".wav") for key in keys)  # the audio copies too
    assert _files_under(media_root) == []  # built in a scratch folder, stored in the bucket

    client = client_for(engineer)
    files = {row["path"]: row for row in client.get(f"{BASE}1/files/").json()}
    clips = s3_storage.get("datasets/callcentre-v1/clips.csv")
    assert files["clips.csv"]["size"] == len(clips)
    assert _body(client.get(f"{BASE}1/files/clips.csv")) == clips
    assert client.get(f"{BASE}1/files/../SHA256SUMS").status_code == 404

    body = _body(client.get(f"{BASE}1/download.zip"))
    with versions.local_copy(version) as folder:  # a private copy of the objects
        deterministic_zip(folder, tmp_path / "expected.zip")
        copied = folder
    assert body == (tmp_path / "expected.zip").read_bytes()
    assert not copied.exists()  # the copy is gone
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None

    second = build.run_build(versions.create_version(project, user=engineer, seed=1).pk)
    assert second is not None
    diff = client.get(f"{BASE}1/diff/2/").json()
    assert diff["summary"]["clips_added"] == 0
    assert diff["split_moves"] == []

    with django_capture_on_commit_callbacks(execute=True):  # the files go on commit
        delete_project(project)
    assert s3_storage.keys("datasets/") == []
    assert _files_under(media_root) == []


@pytest.mark.django_db
def test_local_storage_keeps_the_folder_under_media_root(
    media_root, project, annotator, second_annotator, engineer
):
    version = _ready(project, [annotator, second_annotator], engineer)

    folder = media_root / "datasets" / "callcentre-v1"
    assert versions.folder_of(version) == folder
    assert (folder / "SHA256SUMS").is_file()
    assert [p.name for p in (media_root / "datasets").iterdir()] == ["callcentre-v1"]
    with versions.local_copy(version) as local:
        assert local == folder  # no copy with local storage


@pytest.mark.celery
@pytest.mark.parametrize("fmt", ["hf", "audformat", "labelstudio"])
def test_a_format_is_converted_by_the_worker_and_then_downloaded(
    worker, project, annotator, second_annotator, engineer, client_for, tmp_path, fmt
):
    version = _ready(project, [annotator, second_annotator], engineer)
    client = client_for(engineer)
    url = f"{BASE}1/download/{fmt}.zip"

    first = client.get(url)
    assert first.status_code == 202, first.content[:300]
    answer = first.json()
    assert answer["status"] in {"queued", "converting", "ready"}
    assert answer["url"].endswith(url)
    assert set(answer["progress"]) >= {"stage", "done", "total"}

    final = _poll_until_ready(client, fmt)
    assert final["progress"] == {"stage": "ready", "done": 4, "total": 4}
    archive = Path(worker["media_root"]) / f"datasets/callcentre-v1-{fmt}.zip"
    assert archive.is_file()  # stored by the worker next to the version's folder
    assert final["size"] == archive.stat().st_size

    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    body = _body(response)
    assert body == archive.read_bytes()
    assert body == _expected_conversion(version, fmt, tmp_path)
    assert _body(client.get(url)) == body  # served from storage, not converted again
    assert DatasetConversion.objects.get(version=version, fmt=fmt).status == "ready"


@pytest.mark.celery
@pytest.mark.slow
def test_a_worker_on_s3_converts_from_the_bucket(
    s3_worker, media_root, project, annotator, second_annotator, engineer, client_for, tmp_path
):
    version = _ready(project, [annotator, second_annotator], engineer)
    client = client_for(engineer)

    assert client.get(f"{BASE}1/download/hf.zip").status_code == 202
    _poll_until_ready(client, "hf")
    body = _body(client.get(f"{BASE}1/download/hf.zip"))

    bucket = s3_worker.bucket
    key = f"{bucket.prefix}/datasets/callcentre-v1-hf.zip".lstrip("/")
    assert bucket.get(key) == body
    assert body == _expected_conversion(version, "hf", tmp_path)
    assert _files_under(s3_worker.media_root) == []
    assert _files_under(media_root) == []


@pytest.mark.django_db(transaction=True)  # the task is sent on commit
def test_a_failed_conversion_is_shown_and_restarted_only_when_asked(
    project, annotator, second_annotator, engineer, client_for, monkeypatch
):
    _ready(project, [annotator, second_annotator], engineer)
    client = client_for(engineer)
    sent: list[int] = []
    monkeypatch.setattr("exports.tasks.publish", lambda task, pk: sent.append(pk))

    real = materialise
    failing = [True]

    def broken(*args, **kwargs):
        if failing[0]:
            raise OSError("disk full")
        return real(*args, **kwargs)

    assert client.get(f"{BASE}1/download/hf.zip?status&retry=0").json()["status"] == "queued"
    conversion = DatasetConversion.objects.get()
    assert sent == [conversion.pk]
    assert client.get(f"{BASE}1/download/hf.zip?status&retry=0").json()["status"] == "queued"
    assert sent == [conversion.pk]  # sent once

    monkeypatch.setattr("exports.formats.materialise", broken)
    with pytest.raises(OSError, match="disk full"):
        conversions.run(conversion.pk)
    answer = client.get(f"{BASE}1/download/hf.zip?status&retry=0").json()
    assert (answer["status"], answer["error"]) == ("failed", "OSError: disk full")
    assert sent == [conversion.pk]  # a poll does not restart it

    assert client.get(f"{BASE}1/download/hf.zip?status&retry=1").json()["status"] == "queued"
    assert sent == [conversion.pk, conversion.pk]
    failing[0] = False
    assert conversions.run(conversion.pk).status == "ready"
    assert client.get(f"{BASE}1/download/hf.zip?status&retry=0").json()["status"] == "ready"
    assert client.get(f"{BASE}1/download/csv.zip?status").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_down_broker_answers_503_and_the_next_request_sends_it(
    project, annotator, second_annotator, engineer, client_for, monkeypatch
):
    _ready(project, [annotator, second_annotator], engineer)
    client = client_for(engineer)

    with broker_down():
        response = client.get(f"{BASE}1/download/labelstudio.zip")
    assert response.status_code == 503
    assert DatasetConversion.objects.get().status == "queued"

    sent: list[int] = []
    monkeypatch.setattr("exports.tasks.publish", lambda task, pk: sent.append(pk))
    assert client.get(f"{BASE}1/download/labelstudio.zip").status_code == 202
    assert sent == [DatasetConversion.objects.get().pk]
