"""The members API: PATCH takes `is_active` beside `role`; the list shows it to those who
read the team (reviewers and above); unknown and read-only fields are refused."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from labelling.models import Lease, Membership, Role
from labelling.services import queue
from tests.conftest import make_user
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


def _url(project, membership=None) -> str:
    base = f"/api/projects/{project.slug}/members/"
    return f"{base}{membership.pk}/" if membership is not None else base


def test_an_admin_deactivates_and_reactivates_a_member_through_patch(
    client_for, project, project_admin, annotator
):
    clip = ClipFactory(project=project)
    queue.enqueue_clips(project, [clip])
    queue.next_clip(project, annotator)
    anna = Membership.objects.get(user=annotator)
    api = client_for(project_admin)

    off = api.patch(_url(project, anna), {"is_active": False}, format="json")
    listed = {row["username"]: row for row in api.get(_url(project)).json()["results"]}
    on = api.patch(_url(project, anna), {"is_active": True, "role": "reviewer"}, format="json")

    assert off.status_code == 200, off.content
    body = off.json()
    assert (body["is_active"], body["role"], body["username"]) == (False, "annotator", "anna")
    assert body["deactivated_at"] is not None
    assert (listed["anna"]["is_active"], listed["ada"]["is_active"]) == (False, True)
    assert listed["anna"]["deactivated_at"] == body["deactivated_at"]
    assert listed["ada"]["deactivated_at"] is None
    assert Lease.objects.get(annotator=annotator).status == "expired"
    assert on.status_code == 200, on.content
    assert (on.json()["is_active"], on.json()["role"], on.json()["deactivated_at"]) == (
        True,
        "reviewer",
        None,
    )
    actions = list(
        AuditEvent.objects.filter(action__startswith="membership.")
        .order_by("pk")
        .values_list("action", flat=True)
    )
    assert actions == [
        "membership.deactivated",
        "membership.role_changed",
        "membership.reactivated",
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"deactivated_at": "2026-01-01T00:00:00Z"}, "deactivated_at"),
        ({"deactivated_by": "ada"}, "deactivated_by"),
        ({"user": 1}, "user"),
        ({"username": "ada"}, "username"),
        ({"is_active": "maybe"}, "is_active"),
        ({}, "non_field_errors"),
    ],
)
def test_unknown_read_only_or_bad_fields_are_refused(
    client_for, project, project_admin, annotator, body, field
):
    anna = Membership.objects.get(user=annotator)

    response = client_for(project_admin).patch(_url(project, anna), body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.content.decode()
    anna.refresh_from_db()
    assert (anna.is_active, anna.role) == (True, Role.ANNOTATOR)


def test_the_last_active_admin_and_oneself_are_refused_clearly(
    client_for, project, project_admin, superuser
):
    ada = Membership.objects.get(user=project_admin)

    last = client_for(superuser).patch(_url(project, ada), {"is_active": False}, format="json")
    adam = Membership.objects.create(user=make_user("adam"), project=project, role=Role.ADMIN)
    own = client_for(project_admin).patch(_url(project, ada), {"is_active": False}, format="json")
    other = client_for(project_admin).patch(
        _url(project, adam), {"is_active": False}, format="json"
    )

    assert (last.status_code, last.json()["code"]) == (409, "last_admin")
    assert "at least one active admin" in last.json()["detail"]
    assert own.status_code == 400, own.content
    assert "cannot deactivate yourself" in own.content.decode()
    assert other.status_code == 200
    ada.refresh_from_db()
    assert ada.is_active


@pytest.mark.parametrize("who", ["annotator", "reviewer", "engineer"])
def test_only_admins_change_whether_a_member_is_active(
    request, client_for, project, project_admin, second_annotator, who
):
    user = request.getfixturevalue(who)
    bert = Membership.objects.get(user=second_annotator)

    response = client_for(user).patch(_url(project, bert), {"is_active": False}, format="json")

    assert response.status_code == 403, response.content
    bert.refresh_from_db()
    assert bert.is_active


def test_what_the_member_list_shows_to_each_role(
    client_for, project, project_admin, reviewer, engineer, annotator, outsider
):
    Membership.objects.filter(user=annotator).update(is_active=False)

    for user in (reviewer, engineer, project_admin):
        response = client_for(user).get(_url(project))
        assert response.status_code == 200, user
        rows = response.json()["results"]
        assert {row["username"] for row in rows} == {"ada", "rita", "emil", "anna"}
        assert set(rows[0]) == {
            "id",
            "username",
            "role",
            "is_active",
            "deactivated_at",
            "created_at",
        }
    assert client_for(annotator).get(_url(project)).status_code == 404, "deactivated: a stranger"
    assert client_for(outsider).get(_url(project)).status_code == 404
    Membership.objects.filter(user=annotator).update(is_active=True)
    assert client_for(annotator).get(_url(project)).status_code == 403


def test_a_deactivated_admin_changes_nothing(client_for, project, project_admin, annotator):
    adam = make_user("adam")
    Membership.objects.create(user=adam, project=project, role=Role.ADMIN)
    Membership.objects.filter(user=project_admin).update(is_active=False)
    anna = Membership.objects.get(user=annotator)

    response = client_for(project_admin).patch(
        _url(project, anna), {"is_active": False}, format="json"
    )

    assert response.status_code == 404
    anna.refresh_from_db()
    assert anna.is_active


def test_staff_adding_a_deactivated_member_are_told_to_reactivate(
    client_for, project, project_admin, annotator, superuser
):
    Membership.objects.filter(user=annotator).update(is_active=False)

    response = client_for(superuser).post(
        _url(project), {"username": "anna", "role": "reviewer"}, format="json"
    )

    assert response.status_code == 400
    assert "reactivate" in response.content.decode()
    assert Membership.objects.filter(user=annotator).count() == 1
