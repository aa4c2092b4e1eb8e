"""The dataset versions page (/projects/<slug>/datasets/): who may open it, what it carries,
and the link to it on the project page (ML engineers and admins only)."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import Client

from labelling.models import ImportBatch

pytestmark = pytest.mark.django_db

PAGE = "/projects/callcentre/datasets/"
PROJECT_PAGE = "/projects/callcentre/"


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("annotator", 403),
        ("reviewer", 403),
        ("engineer", 200),
        ("project_admin", 200),
        ("superuser", 200),
        ("outsider", 404),
        ("staff", 404),
    ],
)
def test_the_page_is_for_ml_engineers_and_admins_of_the_project(request, project, who, status):
    response = client_of(request.getfixturevalue(who)).get(PAGE)
    assert response.status_code == status


def test_anonymous_visitors_are_sent_to_the_login_page(project):
    response = Client().get(PAGE)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={PAGE}"


def test_another_projects_page_is_not_found_for_our_engineer(engineer, other_project):
    assert client_of(engineer).get(f"/projects/{other_project.slug}/datasets/").status_code == 404


def test_only_get_is_served(engineer):
    assert client_of(engineer).post(PAGE).status_code == 405


def test_the_page_carries_its_config_the_batches_and_the_formats_under_the_csp(project, engineer):
    batch = ImportBatch.objects.create(project=project, source="upload", origin="<b>calls</b>.zip")
    response = client_of(engineer).get(PAGE)
    html = response.content.decode()

    assert response["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY
    start = html.index('<script id="datasets-config" type="application/json">')
    config = json.loads(html[start:].split(">", 1)[1].split("</script>", 1)[0])
    assert config["urls"]["list"] == "/api/projects/callcentre/datasets/"
    assert [f["value"] for f in config["formats"]] == ["native", "hf", "audformat", "labelstudio"]
    assert f'<option value="{batch.pk}">' in html
    # Batch origins are user input: escaped, never markup.
    assert "<b>calls</b>" not in html
    assert "&lt;b&gt;calls&lt;/b&gt;" in html
    # No inline script: only the module and the JSON config.
    scripts = [part.split(">", 1)[0] for part in html.split("<script")[1:]]
    assert scripts == [' id="datasets-config" type="application/json"',
                       ' type="module" src="/static/js/datasets/main.js"']  # fmt: skip


@pytest.mark.parametrize(
    ("who", "shown"),
    [
        ("annotator", False),
        ("reviewer", False),
        ("engineer", True),
        ("project_admin", True),
        ("superuser", True),
    ],
)
def test_the_project_page_links_to_the_datasets_for_engineers_and_admins(
    request, project, who, shown
):
    html = client_of(request.getfixturevalue(who)).get(PROJECT_PAGE).content.decode()
    assert (f'href="{PAGE}"' in html) is shown


@pytest.mark.parametrize(
    ("who", "offered"),
    [
        ("annotator", ["Label"]),
        ("reviewer", ["Quality", "Label"]),
        ("engineer", ["Overview", "Imports", "Training & models", "Ranking", "Datasets",
                      "Quality", "Settings", "Label"]),
    ],
)  # fmt: skip
def test_the_project_navigation_offers_each_role_its_pages(request, project, who, offered):
    import re

    html = client_of(request.getfixturevalue(who)).get(PROJECT_PAGE).content.decode()
    nav = re.search(r'<nav class="project-nav".*?</nav>', html, re.S)
    assert nav is not None
    links = re.findall(r"<a [^>]*>([^<]+)</a>", nav.group(0))
    assert [text.replace("&amp;", "&") for text in links[1:]] == offered


def test_the_datasets_page_is_marked_current_in_the_navigation(engineer):
    html = client_of(engineer).get(PAGE).content.decode()
    assert f'<a href="{PAGE}" aria-current="page">Datasets</a>' in html
