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


def test_audio_supports_range_requests_for_seeking(client_for, project, reviewer):
    clip = ClipFactory(project=project)
    full = clip.canonical.read()
    api = client_for(reviewer)

    response = api.get(f"/api/clips/{clip.pk}/audio/", HTTP_RANGE="bytes=100-199")

    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 100-199/{len(full)}"
    assert b"".join(response.streaming_content) == full[100:200]
    tail = api.get(f"/api/clips/{clip.pk}/audio/", HTTP_RANGE="bytes=-10")
    assert b"".join(tail.streaming_content) == full[-10:]
    beyond = api.get(f"/api/clips/{clip.pk}/audio/", HTTP_RANGE=f"bytes={len(full) + 5}-")
    assert beyond.status_code == 416


def test_clip_filters_accept_only_whitelisted_fields(client_for, project, reviewer):
    ClipFactory(project=project, speaker_id="s1", gender="female")
    ClipFactory(project=project, speaker_id="s2", gender="male")
    api = client_for(reviewer)

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
    # Booleans and page sizes are checked, not ignored.
    assert api.get("/api/clips/?unlabelled=abc").status_code == 400
    assert api.get("/api/clips/?page_size=1").json()["results"].__len__() == 1
    assert api.get("/api/clips/?page_size=0").status_code == 400
    assert api.get("/api/clips/?page_size=lots").status_code == 400


def test_peaks_endpoint_returns_the_waveform_outline(client_for, project, reviewer):
    clip = ClipFactory(project=project)

    body = client_for(reviewer).get(f"/api/clips/{clip.pk}/peaks/").json()

    assert body["points_per_second"] == 100
    assert body["peaks"] == clip.peaks


def test_a_non_integer_clip_id_is_a_404_not_a_500(client_for, project, reviewer):
    api = client_for(reviewer)
    for url in ("/api/clips/abc/peaks/", "/api/clips/1.5/", "/api/clips/%00/audio/"):
        response = api.get(url)
        assert response.status_code == 404, url


def test_annotators_hear_only_the_clips_they_are_given(client_for, project, annotator):
    """Annotators never list or read the pool (EmoDB's file names encode the emotion, and
    metadata may hold the corpus label); they hear a clip once it is leased to them."""
    leased_clip = ClipFactory(project=project, original_name="03a01Wa.wav",
                              metadata={"emotion": "anger"})  # fmt: skip
    other = ClipFactory(project=project, original_name="03a01Fa.wav")
    from labelling.services import queue

    queue.enqueue_clips(project, [leased_clip])
    api = client_for(annotator)
    lease = api.post(f"/api/projects/{project.slug}/next/").json()
    assert lease["clip"]["id"] == leased_clip.pk
    assert "anger" not in str(lease)
    assert "03a01" not in str(lease)

    for url in ("/api/clips/", f"/api/clips/?project={project.slug}",
                f"/api/clips/{leased_clip.pk}/"):  # fmt: skip
        response = api.get(url)
        assert response.status_code == 403, url
        assert response.json()["code"] == "role_required"
        assert "anger" not in response.content.decode()
    assert api.get(f"/api/clips/{leased_clip.pk}/audio/").status_code == 200
    assert api.get(f"/api/clips/{leased_clip.pk}/peaks/").status_code == 200
    assert api.get(f"/api/clips/{leased_clip.pk}/audio/?variant=original").status_code == 403
    assert api.get(f"/api/clips/{other.pk}/audio/").status_code == 403
    assert api.get(f"/api/clips/{other.pk}/peaks/").status_code == 403


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
    api = client_for(engineer)

    refused = api.patch(
        f"/api/clips/{clip.pk}/",
        {"speaker_id": "s2", "duration_s": 99.0, "sha256": "0" * 64, "source": "url"},
        format="json",
    )
    accepted = api.patch(f"/api/clips/{clip.pk}/", {"speaker_id": "s2"}, format="json")

    assert refused.status_code == 400
    assert set(refused.json()["errors"]) == {"duration_s", "sha256", "source"}
    assert accepted.status_code == 200
    clip.refresh_from_db()
    assert clip.speaker_id == "s2"
    assert (clip.duration_s, clip.source) == (0.5, "upload")
    assert clip.sha256 != "0" * 64


@pytest.mark.parametrize("who", ["reviewer", "superuser"])
def test_a_project_name_with_a_nul_character_is_not_found_not_a_server_error(
    request, client_for, project, who
):
    # Found by schema fuzzing: PostgreSQL refuses NUL in a query parameter.
    client = client_for(request.getfixturevalue(who))
    response = client.get("/api/clips/", {"project": "call\x00centre"})
    assert response.status_code in (403, 404), response.content[:200]
    assert client.get("/api/projects/call%00centre/").status_code == 404
