"""Who may read the quality and review pages and API: reviewers, ML engineers, admins (and
superusers); annotators 403; members of other projects 404; anonymous users are sent to
sign in (pages) or refused (API)."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.review_world import World, build

pytestmark = pytest.mark.django_db

ALLOWED = {"reviewer": 200, "engineer": 200, "project_admin": 200, "superuser": 200}
REFUSED = {"annotator": 403, "outsider": 404}


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(project) -> World:
    return build(project)


def pages(world: World) -> list[str]:
    alma, clip = world.raters["alma"].pk, world.clips[2].pk
    return [
        "/projects/callcentre/quality/",
        f"/projects/callcentre/quality/annotators/{alma}/",
        "/projects/callcentre/quality/agreement/",
        "/projects/callcentre/review/",
        f"/projects/callcentre/review/clips/{clip}/",
    ]


def apis(world: World) -> list[str]:
    alma, clip = world.raters["alma"].pk, world.clips[2].pk
    return [
        "/api/projects/callcentre/quality/",
        f"/api/projects/callcentre/quality/annotators/{alma}/",
        "/api/projects/callcentre/quality/agreement/",
        "/api/projects/callcentre/review/",
        f"/api/projects/callcentre/review/clips/{clip}/",
        "/api/projects/callcentre/review/adjudications/",
    ]


@pytest.mark.parametrize("role", [*ALLOWED, *REFUSED])
def test_every_page_and_api_answers_by_role(role, world, request):
    user = request.getfixturevalue(role)
    expected = {**ALLOWED, **REFUSED}[role]
    browser = Client()
    browser.force_login(user)
    for url in pages(world):
        assert browser.get(url).status_code == expected, (role, url)
    api = APIClient()
    api.force_authenticate(user)
    for url in apis(world):
        assert api.get(url).status_code == expected, (role, url)


def test_anonymous_users_sign_in_first(world):
    for url in pages(world):
        response = Client().get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/")
    for url in apis(world):
        assert APIClient().get(url).status_code == 401, url


@pytest.mark.parametrize("role", ["annotator", "outsider"])
def test_who_may_not_read_may_not_adjudicate(role, world, request):
    user = request.getfixturevalue(role)
    clip = world.clips[2].pk
    api = APIClient()
    api.force_authenticate(user)
    response = api.post(f"/api/projects/callcentre/review/clips/{clip}/", {"node": "mad"})
    assert response.status_code == REFUSED[role]
    browser = Client()
    browser.force_login(user)
    page = browser.post(f"/projects/callcentre/review/clips/{clip}/", {"node": "mad"})
    assert page.status_code == REFUSED[role]


def test_another_projects_clip_and_a_stranger_are_not_found(world, other_project, reviewer):
    from tests.factories import ClipFactory

    elsewhere = ClipFactory(project=other_project)
    api = APIClient()
    api.force_authenticate(reviewer)
    assert api.get(f"/api/projects/callcentre/review/clips/{elsewhere.pk}/").status_code == 404
    assert api.get(f"/api/projects/callcentre/quality/annotators/{reviewer.pk}/").status_code == 404
    browser = Client()
    browser.force_login(reviewer)
    assert browser.get(f"/projects/callcentre/review/clips/{elsewhere.pk}/").status_code == 404
