"""The dataset API: who may create, list and download; files by manifest name only; the
zip equals the deterministic zip of the folder; 409 before the version is ready."""

from __future__ import annotations

import io
import uuid
import zipfile
from unittest import mock

import pytest

from audit.models import AuditEvent
from exports.core.archive import deterministic_zip, sha256_file
from exports.models import DatasetConversion, DatasetVersion
from exports.services import build, versions
from labelling.services import queue
from tests.broker import broker_down
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db

BASE = "/api/projects/callcentre/datasets/"


@pytest.fixture
def ready(project, annotator, second_annotator, engineer) -> DatasetVersion:
    clips = [ClipFactory(project=project, speaker_id=f"s{n}") for n in range(4)]
    queue.enqueue_clips(project, clips, seed=1)
    for user, key in ((annotator, "mad.angry"), (second_annotator, "sad")):
        while (leased := queue.next_clip(project, user)) is not None:
            queue.submit(project, user, lease_id=leased.lease.pk, client_id=uuid.uuid4(),
                         node_key=key)  # fmt: skip
    version = versions.create_version(project, user=engineer, seed=1)
    built = build.run_build(version.pk)
    assert built is not None
    return built


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_an_ml_engineer_creates_a_version_and_its_build_is_sent_after_commit(
    project, engineer, client_for, django_capture_on_commit_callbacks
):
    with (
        mock.patch("exports.tasks.publish") as publish,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client_for(engineer).post(BASE, {"seed": 5}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["number"] == 1
    assert response.json()["status"] == "queued"
    version = DatasetVersion.objects.get(project=project, number=1)
    assert version.split_seed == 5
    assert version.created_by == engineer
    publish.assert_called_once()
    assert publish.call_args.args[1] == version.pk


def test_a_down_broker_answers_503_and_keeps_the_version_queued(
    transactional_db, project, engineer, client_for
):
    with broker_down():
        response = client_for(engineer).post(BASE, {}, format="json")

    assert response.status_code == 503
    assert response.json()["code"] == "broker_unavailable"
    assert DatasetVersion.objects.get(project=project).status == "queued"


@pytest.mark.parametrize("who", ["annotator", "reviewer"])
def test_annotators_and_reviewers_may_not_create_list_or_download(request, ready, client_for, who):
    client = client_for(request.getfixturevalue(who))
    assert client.post(BASE, {}, format="json").status_code == 403
    assert client.get(BASE).status_code == 403
    assert client.get(f"{BASE}1/download.zip").status_code == 403
    assert client.get(f"{BASE}1/files/clips.csv").status_code == 403


def test_another_projects_admin_gets_404(ready, outsider, client_for):
    client = client_for(outsider)
    assert client.get(BASE).status_code == 404
    assert client.get(f"{BASE}1/").status_code == 404
    assert client.get(f"{BASE}1/download.zip").status_code == 404


def test_the_file_list_comes_from_the_manifest(ready, engineer, client_for):
    response = client_for(engineer).get(f"{BASE}1/files/")

    assert response.status_code == 200
    listed = {row["path"]: row for row in response.json()}
    folder = versions.folder_of(ready)
    assert "clips.csv" in listed
    assert listed["clips.csv"]["sha256"] == sha256_file(folder / "clips.csv")
    assert listed["clips.csv"]["size"] == (folder / "clips.csv").stat().st_size


def test_one_file_is_served_by_its_manifest_name_only(ready, engineer, client_for):
    client = client_for(engineer)
    folder = versions.folder_of(ready)

    response = client.get(f"{BASE}1/files/version.json")
    assert response.status_code == 200
    assert _body(response) == (folder / "version.json").read_bytes()
    for bad in ("../../../etc/passwd", "audio/../version.json", "nothing.csv", "audio/"):
        assert client.get(f"{BASE}1/files/{bad}").status_code == 404, bad


def test_the_zip_is_the_deterministic_zip_of_the_folder(ready, engineer, client_for, tmp_path):
    response = client_for(engineer).get(f"{BASE}1/download.zip")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    body = _body(response)
    deterministic_zip(versions.folder_of(ready), tmp_path / "expected.zip")
    assert body == (tmp_path / "expected.zip").read_bytes()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        assert "SHA256SUMS" in archive.namelist()


def test_a_version_not_yet_built_answers_409(project, engineer, client_for):
    versions.create_version(project, user=engineer)
    client = client_for(engineer)

    assert client.get(f"{BASE}1/").json()["status"] == "queued"
    for url in (f"{BASE}1/files/", f"{BASE}1/files/clips.csv", f"{BASE}1/download.zip"):
        response = client.get(url)
        assert response.status_code == 409, url
        assert response.json()["code"] == "not_ready"


@pytest.mark.parametrize("fmt", ["hf", "audformat", "labelstudio"])
def test_another_format_is_not_converted_in_the_request_but_queued(
    ready, engineer, client_for, django_capture_on_commit_callbacks, fmt
):
    """The request answers 202 at once and queues the conversion task; the worker's side is
    in test_dataset_storage.py."""
    with (
        mock.patch("exports.tasks.publish") as publish,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client_for(engineer).get(f"{BASE}1/download/{fmt}.zip")

    assert response.status_code == 202, response.content[:200]
    assert response["Retry-After"] == "1"
    assert response.json()["status"] == "queued"
    assert publish.call_args.args[1] == DatasetConversion.objects.get(fmt=fmt).pk
    converted = versions.folder_of(ready).with_name(f"callcentre-v1-{fmt}")
    assert not converted.exists()
    assert not converted.with_name(f"{converted.name}.zip").exists()
    # The native folder is untouched (its manifest still verifies).
    assert sha256_file(versions.folder_of(ready) / "SHA256SUMS") == ready.manifest_sha256


def test_an_unknown_format_is_404_and_a_queued_version_409(ready, project, engineer, client_for):
    client = client_for(engineer)
    assert client.get(f"{BASE}1/download/parquet.zip").status_code == 404
    versions.create_version(project, user=engineer)
    response = client.get(f"{BASE}2/download/hf.zip")
    assert response.status_code == 409
    assert response.json()["code"] == "not_ready"


def test_a_version_can_be_created_with_its_audio_by_reference(project, engineer, client_for):
    client = client_for(engineer)
    with mock.patch("exports.tasks.publish"):
        response = client.post(BASE, {"seed": 2, "audio": "reference"}, format="json")
        assert response.status_code == 201
        assert response.json()["options"] == {"audio": "reference"}
        refused = client.post(BASE, {"audio": "symlink"}, format="json")
    assert refused.status_code == 400
    assert "audio" in refused.json()["errors"]
    assert DatasetVersion.objects.filter(project=project).count() == 1


def test_creating_a_version_is_written_to_the_audit_log(project, engineer, client_for):
    with mock.patch("exports.tasks.publish"):
        response = client_for(engineer).post(BASE, {"seed": 5}, format="json")
    assert response.status_code == 201
    events = list(AuditEvent.objects.filter(action="dataset.created"))
    assert len(events) == 1
    assert events[0].actor == engineer
    assert events[0].project == project
    assert events[0].details == {
        "number": 1, "seed": 5, "query": {"clips": "labelled"}, "audio": "copy"
    }  # fmt: skip
