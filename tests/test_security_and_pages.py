"""Security defaults and the server-rendered pages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.management import call_command

from labelling.models import Clip, Taxonomy
from labelling.services import taxonomy
from tests.conftest import REPO, start_django
from tests.factories import ClipFactory

XSS = '<script>alert("x")</script>'


def test_settings_refuse_to_start_without_a_secret_key_outside_development():
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "EMOLOOP_DEV", "DEBUG")}
    env["DJANGO_SETTINGS_MODULE"] = "emoloop.settings"
    result = start_django(env)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_settings_refuse_a_malformed_number():
    env = {**os.environ, "EMOLOOP_MAX_FILE_BYTES": "lots"}
    result = start_django(env)
    assert result.returncode != 0
    assert "EMOLOOP_MAX_FILE_BYTES must be a number" in result.stderr


@pytest.mark.django_db
def test_user_supplied_text_is_escaped_on_pages(client, project, annotator):
    version = taxonomy.import_document(
        taxonomy.parse_document(
            {
                "format": "emoloop-taxonomy/1",
                "name": "Evil wheel",
                "slug": "evil",
                "nodes": [{"key": "bad", "name": "Bad <b>bold</b>"}],
            }
        )
    )
    project.description = XSS
    project.guidelines = XSS
    project.name = f"Calls {XSS}"
    project.taxonomy_version = version
    project.save()
    Taxonomy.objects.filter(slug="evil").update(name=XSS)
    ClipFactory(project=project, original_name=f"{XSS}.wav")
    client.force_login(annotator)

    for url in ("/", f"/projects/{project.slug}/"):
        html = client.get(url).content.decode()
        assert "<script>alert" not in html, url
        assert "&lt;script&gt;alert" in html, url
    assert "<b>bold</b>" not in client.get(f"/projects/{project.slug}/").content.decode()


@pytest.mark.django_db
def test_pages_need_login_and_hide_other_projects(client, project, outsider, other_project):
    assert client.get("/").status_code == 302
    client.force_login(outsider)
    assert client.get(f"/projects/{project.slug}/").status_code == 404
    assert other_project.name in client.get("/").content.decode()
    assert project.name not in client.get("/").content.decode()


@pytest.mark.django_db
def test_every_response_carries_the_content_security_policy(client):
    response = client.get("/accounts/login/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
def test_health_check_answers_when_the_database_does(client):
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_the_demo_seed_creates_a_project_users_and_clips_idempotently(settings, tmp_path, capsys):
    settings.DATA_DIR = tmp_path
    call_command("seed_demo")
    first = capsys.readouterr().out
    call_command("seed_demo")
    second = capsys.readouterr().out

    assert Clip.objects.filter(project__slug="demo").count() == 41
    assert "annotator1" in first
    assert "password:" in first
    # Passwords are kept privately so a rerun prints the same logins.
    assert first.split("Demo logins")[1] == second.split("Demo logins")[1]
    assert oct((tmp_path / "demo-credentials.txt").stat().st_mode & 0o777) == "0o600"


@pytest.mark.django_db
def test_a_newcomer_logs_in_with_the_printed_credentials_and_sees_the_demo(
    client, settings, tmp_path, capsys
):
    settings.DATA_DIR = tmp_path
    call_command("seed_demo")
    lines = capsys.readouterr().out.splitlines()

    def password(username: str) -> str:
        return next(row for row in lines if username in row).split("password:")[1].strip()

    response = client.post(
        "/accounts/login/",
        {"username": "annotator1", "password": password("annotator1")},
        follow=True,
    )

    page = response.content.decode()
    assert "Demo: acted German speech" in page
    demo = client.get("/projects/demo/").content.decode()
    assert "Willcox feelings wheel" in demo
    assert "Start labelling" in demo
    # Labelling is blind: an annotator sees no label statistics and no team list.
    assert "clip-count" not in demo
    assert "Team" not in demo
    client.logout()
    client.post("/accounts/login/", {"username": "reviewer", "password": password("reviewer")})
    assert '<dd id="clip-count">41</dd>' in client.get("/projects/demo/").content.decode()


@pytest.mark.django_db
def test_admin_pages_render_for_every_model(client, project):
    from django.contrib import admin
    from django.contrib.auth import get_user_model

    call_command("seed_demo")
    staff = get_user_model().objects.create_superuser("root", password="x")
    client.force_login(staff)
    for model in admin.site._registry:
        meta = model._meta
        response = client.get(f"/admin/{meta.app_label}/{meta.model_name}/")
        assert response.status_code == 200, meta.label
        first = model.objects.first()
        if first is not None:
            change = client.get(f"/admin/{meta.app_label}/{meta.model_name}/{first.pk}/change/")
            assert change.status_code == 200, meta.label


def test_openapi_schema_validates_without_warnings():
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--file",
            os.devnull,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert result.returncode == 0, result.stderr[-3000:]
