"""Uploading through the API is processed by a real Celery worker on Redis."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labelling.models import Clip, ImportBatch
from tests.conftest import wait_until
from tests.factories import tone_wav

pytestmark = pytest.mark.celery


def _batch_done(batch_id: int) -> bool:
    return ImportBatch.objects.get(pk=batch_id).status == ImportBatch.Status.DONE


def test_uploaded_files_archive_and_manifest_become_clips_via_the_worker(
    worker, client_for, project, engineer
):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("calls/c1.wav", tone_wav(0.7, 300))
        zf.writestr("../evil.wav", tone_wav(0.7, 310))
    manifest = (
        b"file,speaker,gender,age,language,mood\na.wav,s1,f,41,en-GB,calm\nc1.wav,s2,m,29,,\n"
    )
    files = [
        SimpleUploadedFile("a.wav", tone_wav(0.6, 220), content_type="audio/wav"),
        SimpleUploadedFile("notes.wav", b"not audio at all" * 10, content_type="audio/wav"),
        SimpleUploadedFile("bundle.zip", archive.getvalue(), content_type="application/zip"),
    ]

    response = client_for(engineer).post(
        f"/api/projects/{project.slug}/imports/",
        {"files": files, "manifest": SimpleUploadedFile("meta.csv", manifest), "segment": False},
        format="multipart",
    )

    assert response.status_code == 202, response.content
    batch_id = response.json()["id"]
    wait_until(lambda: _batch_done(batch_id), timeout=120, what="the worker to finish the batch")
    items = client_for(engineer).get(f"/api/imports/{batch_id}/items/").json()["results"]
    outcome = {item["name"]: (item["status"], item["reason_code"]) for item in items}
    assert outcome == {
        "a.wav": ("accepted", ""),
        "notes.wav": ("rejected", "not_audio"),
        "bundle.zip/calls/c1.wav": ("accepted", ""),
        "bundle.zip/../evil.wav": ("rejected", "path_escape"),
    }
    a = Clip.objects.get(original_name="a.wav")
    assert (a.speaker_id, a.gender, a.age_band, a.language) == ("s1", "female", "35-44", "en-GB")
    assert a.metadata["mood"] == "calm"
    c1 = Clip.objects.get(original_name="bundle.zip/calls/c1.wav")
    assert (c1.speaker_id, c1.gender) == ("s2", "male")
    counts = client_for(engineer).get(f"/api/imports/{batch_id}/").json()["counts"]
    assert counts == {
        "total": 4,
        "pending": 0,
        "accepted": 2,
        "duplicate": 0,
        "rejected": 2,
        "clips": 2,
    }


def test_a_url_import_to_an_internal_address_is_refused_by_the_worker(
    worker, client_for, project, engineer
):
    # Passes the syntax check at the API (a public-looking name), but resolves to loopback
    # on the worker: the download is refused after DNS resolution.
    response = client_for(engineer).post(
        f"/api/projects/{project.slug}/imports/", {"url": "http://localhost/a.wav"}, format="json"
    )

    assert response.status_code == 202, response.content
    batch_id = response.json()["id"]
    wait_until(lambda: _batch_done(batch_id), timeout=60, what="the URL import to finish")
    item = ImportBatch.objects.get(pk=batch_id).items.get()
    assert (item.status, item.reason_code) == ("rejected", "unsafe_url")
    assert "loopback" in item.reason
    assert not Clip.objects.exists()
