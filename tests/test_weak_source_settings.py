"""A weak-label source's settings through the API (PATCH …/predictions/<model>/) and the
command: validated, audited once per real change, ML engineers only."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from labelling.models_interop import WeakLabelSource

pytestmark = pytest.mark.django_db


def url(project, model: str = "wav2vec-ser") -> str:
    return f"/api/projects/{project.slug}/predictions/{model}/"


def events():
    return list(AuditEvent.objects.filter(action="weak_source.changed").order_by("pk"))


def test_an_engineer_sets_a_source_up_and_the_change_is_audited_once(project, engineer, client_for):
    client = client_for(engineer)
    response = client.patch(url(project), {"weight": 0.5, "force": True}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["model_name"], body["weight"], body["enabled"], body["force"]) == (
        "wav2vec-ser", 0.5, True, True,
    )  # fmt: skip
    assert body["clips"] == 0  # set up before its predictions come
    row = WeakLabelSource.objects.get(project=project, model_name="wav2vec-ser")
    assert (row.weight, row.force) == (0.5, True)
    [event] = events()
    assert event.actor == engineer
    assert event.project_id == project.pk
    assert event.details == {
        "model": "wav2vec-ser",
        "changes": {"weight": [0.3, 0.5], "force": [False, True]},
    }
    # The same values again: nothing changes, nothing is recorded.
    assert client.patch(url(project), {"weight": 0.5}, format="json").status_code == 200
    assert len(events()) == 1
    # It is listed with the others.
    listed = client.get(f"/api/projects/{project.slug}/predictions/").json()["sources"]
    assert [s["model_name"] for s in listed] == ["wav2vec-ser"]


@pytest.mark.parametrize(
    "body",
    [{"weight": 1.5}, {"weight": -0.1}, {"weight": "NaN"}, {"colour": "red"}, {}, {"enabled": 3}],
    ids=["above-1", "negative", "nan", "unknown-field", "empty", "not-a-bool"],
)
def test_a_bad_change_is_refused_and_changes_nothing(project, engineer, client_for, body):
    response = client_for(engineer).patch(url(project), body, format="json")
    assert response.status_code == 400, response.content
    assert not WeakLabelSource.objects.exists()
    assert events() == []


def test_annotators_and_reviewers_may_not_and_strangers_do_not_see_the_project(
    project, annotator, reviewer, outsider, client_for
):
    for user, status in ((annotator, 403), (reviewer, 403), (outsider, 404)):
        response = client_for(user).patch(url(project), {"weight": 0.9}, format="json")
        assert response.status_code == status, (user.username, response.content)
    assert not WeakLabelSource.objects.exists()
    assert events() == []


def test_the_command_changes_go_to_the_audit_log_too(project):
    call_command("weak_sources", project.slug, "wav2vec-ser", "--no-enable", stdout=io.StringIO())
    [event] = events()
    assert event.actor is None  # the shell: the system
    assert event.details["changes"] == {"enabled": [True, False]}


@pytest.mark.parametrize("name", ["x" * 121, "bad\x00name"], ids=["too-long", "nul"])
def test_a_model_name_the_database_cannot_hold_is_refused(project, engineer, client_for, name):
    response = client_for(engineer).patch(url(project, name), {"weight": 0.5}, format="json")
    assert response.status_code == 400, response.content
    assert not WeakLabelSource.objects.exists()
