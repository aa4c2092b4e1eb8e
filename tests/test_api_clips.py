"""Clip listing, filtering and audio serving."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labelling.services import ingest
from tests.factories import ClipFactory, tone_wav

pytestmark = pytest.mark.django_db


def test_audio_is_served_as_audio_whatever_the_uploaded_name(
    client_for, project, engineer, tmp_path
):
    upload = SimpleUploadedFile("<script>alert(1)</script>.html", tone_wav(0.5))
    batch = ingest.stage_uploads(project, [upload])
    for item_id in ingest.pending_item_ids(batch):
        ingest.process_item(item_id)
    clip = batch.clips.get()
    api = client_for(engineer)

    for variant in ("canonical", "original"):
        response = api.get(f"/api/clips/{clip.pk}/audio/?variant={variant}")
        assert response.status_code == 200
        assert response["Content-Type"] == "audio/wav"
        assert response["Content-Disposition"] == f'inline; filename="clip-{clip.pk}.wav"'
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response["Content-Security-Policy"]
        body = b"".join(response.streaming_content)
        assert body[:4] == b"RIFF"


def test_audio_supports_range_requests_for_seeking(client_for, project, annotator):
    clip = ClipFactory(project=project)
    full = clip.canonical.read()
    api = client_for(annotator)

    response = api.get(f"/api/clips/{clip.pk}/audio/", HTTP_RANGE="bytes=100-199")

    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 100-199/{len(full)}"
    assert b"".join(response.streaming_content) == full[100:200]
    tail = api.get(f"/api/clips/{clip.pk}/audio/", HTTP_RANGE="bytes=-10")
    assert b"".join(tail.streaming_content) == full[-10:]
    beyond = api.get(f"/api/clips/{clip.pk}/audio/", HTTP_RANGE=f"bytes={len(full) + 5}-")
    assert beyond.status_code == 416


def test_clip_filters_accept_only_whitelisted_fields(client_for, project, annotator):
    ClipFactory(project=project, speaker_id="s1", gender="female")
    ClipFactory(project=project, speaker_id="s2", gender="male")
    api = client_for(annotator)

    assert api.get("/api/clips/?gender=female").json()["count"] == 1
    assert api.get(f"/api/clips/?project={project.slug}&speaker_id=s2").json()["count"] == 1
    assert api.get("/api/clips/?unlabelled=true").json()["count"] == 2
    for probe in (
        "annotations__annotator__password__startswith=pbkdf2",
        "project__members__username=admin",
        "speaker_id__regex=.*",
    ):
        response = api.get(f"/api/clips/?{probe}")
        assert response.status_code == 400, probe
        assert "Unknown query parameter" in response.json()["detail"]
    assert api.get("/api/clips/?ordering=-duration_s").status_code == 200


def test_peaks_endpoint_returns_the_waveform_outline(client_for, project, annotator):
    clip = ClipFactory(project=project)

    body = client_for(annotator).get(f"/api/clips/{clip.pk}/peaks/").json()

    assert body["points_per_second"] == 100
    assert body["peaks"] == clip.peaks


def test_openapi_schema_is_served_and_documents_the_endpoints(client_for, annotator):
    response = client_for(annotator).get("/api/schema/?format=json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/projects/",
        "/api/projects/{slug}/imports/",
        "/api/clips/{id}/audio/",
        "/api/taxonomies/import/",
        "/api/annotations/",
    ):
        assert path in paths, path


def test_only_descriptive_clip_metadata_is_editable(client_for, project, engineer):
    clip = ClipFactory(project=project, speaker_id="s1")

    response = client_for(engineer).patch(
        f"/api/clips/{clip.pk}/",
        {"speaker_id": "s2", "duration_s": 99.0, "sha256": "0" * 64, "source": "url"},
        format="json",
    )

    assert response.status_code == 200
    clip.refresh_from_db()
    assert clip.speaker_id == "s2"
    assert (clip.duration_s, clip.source) == (0.5, "upload")
    assert clip.sha256 != "0" * 64
