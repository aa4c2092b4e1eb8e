"""A member of project A can neither read nor write project B through any endpoint."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labelling.models import Annotation, Clip, ImportBatch, Membership, Project
from labelling.services import annotations as annotation_service
from tests.factories import ClipFactory, tone_wav

pytestmark = pytest.mark.django_db


@pytest.fixture
def b_world(other_project, willcox):
    """Project B (gamechat) with a clip, an annotation and an import batch."""
    from tests.conftest import make_user

    b_annotator = make_user("bea")
    Membership.objects.create(user=b_annotator, project=other_project, role="annotator")
    clip = ClipFactory(project=other_project)
    annotation = annotation_service.record_annotation(
        clip=clip, annotator=b_annotator, node_key="mad"
    )
    batch = ImportBatch.objects.create(project=other_project, source="upload")
    return {"clip": clip, "annotation": annotation, "batch": batch}


@pytest.fixture
def a_admin(project):
    """Admin of project A: the strongest role that still must not reach B."""
    from tests.conftest import make_user

    user = make_user("alice")
    Membership.objects.create(user=user, project=project, role="admin")
    return user


def test_project_b_is_invisible_to_a_member_of_a(client_for, a_admin, b_world, other_project):
    api = client_for(a_admin)
    clip, annotation, batch = b_world["clip"], b_world["annotation"], b_world["batch"]
    reads = [
        f"/api/projects/{other_project.slug}/",
        f"/api/projects/{other_project.slug}/members/",
        f"/api/clips/{clip.pk}/",
        f"/api/clips/{clip.pk}/audio/",
        f"/api/clips/{clip.pk}/audio/?variant=original",
        f"/api/clips/{clip.pk}/peaks/",
        f"/api/annotations/{annotation.pk}/",
        f"/api/imports/{batch.pk}/",
        f"/api/imports/{batch.pk}/items/",
        # Filtering by a project one is not a member of says nothing about it either.
        f"/api/clips/?project={other_project.slug}",
    ]
    for url in reads:
        assert api.get(url).status_code == 404, url
    listings = {
        "/api/projects/": other_project.slug,
        "/api/clips/": clip.pk,
        "/api/annotations/": annotation.pk,
        "/api/imports/": batch.pk,
    }
    for url, foreign in listings.items():
        response = api.get(url)
        assert response.status_code == 200, url
        found = {row.get("slug") or row.get("id") for row in response.json()["results"]}
        assert foreign not in found, url


def test_project_b_cannot_be_written_by_a_member_of_a(client_for, a_admin, b_world, other_project):
    api = client_for(a_admin)
    clip = b_world["clip"]
    slug = other_project.slug
    writes = [
        ("patch", f"/api/projects/{slug}/", {"name": "pwned"}, "json"),
        ("delete", f"/api/projects/{slug}/", None, "json"),
        ("post", f"/api/projects/{slug}/members/", {"username": "alice", "role": "admin"}, "json"),
        ("post", f"/api/projects/{slug}/taxonomy/", {"taxonomy": "willcox", "version": 1}, "json"),
        (
            "post",
            f"/api/projects/{slug}/imports/",
            {"files": [SimpleUploadedFile("a.wav", tone_wav())]},
            "multipart",
        ),
        ("post", f"/api/projects/{slug}/imports/", {"url": "https://example.org/a.wav"}, "json"),
        ("patch", f"/api/clips/{clip.pk}/", {"speaker_id": "x"}, "json"),
    ]
    for method, url, data, fmt in writes:
        response = getattr(api, method)(url, data, format=fmt)
        assert response.status_code == 404, (method, url, response.status_code)
    other_project.refresh_from_db()
    assert other_project.name == "Game chat"
    assert Clip.objects.get(pk=clip.pk).speaker_id == clip.speaker_id
    assert Annotation.objects.filter(clip=clip).count() == 1
    assert not Membership.objects.filter(project=other_project, user=a_admin).exists()
    assert ImportBatch.objects.filter(project=other_project).count() == 1


def test_roles_inside_a_project(
    client_for, project, annotator, reviewer, engineer, second_annotator
):
    clip = ClipFactory(project=project)
    annotation_service.record_annotation(clip=clip, annotator=second_annotator, node_key="sad")
    upload = {"files": [SimpleUploadedFile("a.wav", tone_wav())]}

    # Annotators label but cannot import, edit clips or see other people's labels.
    as_annotator = client_for(annotator)
    assert (
        as_annotator.post(
            f"/api/projects/{project.slug}/imports/", upload, format="multipart"
        ).status_code
        == 403
    )
    assert as_annotator.patch(f"/api/clips/{clip.pk}/", {"speaker_id": "x"}).status_code == 403
    assert as_annotator.get("/api/annotations/").json()["count"] == 0
    assert as_annotator.get("/api/imports/").status_code == 403
    assert as_annotator.get("/api/clips/").status_code == 403
    assert as_annotator.patch(f"/api/projects/{project.slug}/", {"name": "x"}).status_code == 403

    # Reviewers see the project's annotations.
    assert client_for(reviewer).get("/api/annotations/").json()["count"] == 1

    # ML engineers import and edit clip metadata, but do not manage the team.
    as_engineer = client_for(engineer)
    assert as_engineer.patch(f"/api/clips/{clip.pk}/", {"speaker_id": "s9"}).status_code == 200
    assert (
        as_engineer.post(
            f"/api/projects/{project.slug}/members/", {"username": "anna", "role": "admin"}
        ).status_code
        == 403
    )


def test_only_staff_create_projects_and_the_creator_becomes_admin(client_for, annotator):
    assert (
        client_for(annotator).post("/api/projects/", {"name": "X", "slug": "x"}).status_code == 403
    )
    annotator.is_staff = True
    annotator.save()
    response = client_for(annotator).post("/api/projects/", {"name": "X", "slug": "x"})
    assert response.status_code == 201
    assert response.json()["my_role"] == "admin"
    assert Membership.objects.get(project__slug="x").role == "admin"


def test_anonymous_requests_are_refused(client, project):
    for url in ["/api/projects/", "/api/clips/", "/api/annotations/", "/api/taxonomies/"]:
        assert client.get(url).status_code in (401, 403), url
    assert Project.objects.count() == 1
