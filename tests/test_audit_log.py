"""The audit log: each wired action leaves exactly one event with what changed, events are
append-only through every ORM path and the admin, and only admins read them."""

from __future__ import annotations

import pytest
from django.db import transaction

from audit import services as audit
from audit.models import AppendOnly, AuditEvent
from labelling.models import Membership, Role, TaxonomyVersion
from labelling.services import invitations, projects, taxonomy
from learner.models import ModelVersion
from learner.services import training
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

SMALL = {
    "format": "emoloop-taxonomy/1",
    "name": "Support calls",
    "slug": "support",
    "nodes": [{"key": "angry", "name": "Angry"}, {"key": "calm", "name": "Calm"}],
}


def only_event(action: str, **where: object) -> AuditEvent:
    events = list(AuditEvent.objects.filter(action=action, **where))
    assert len(events) == 1, [str(e) for e in events]
    return events[0]


# --- Wired actions ------------------------------------------------------------------------


def test_a_settings_change_through_the_api_names_the_admin_and_the_changed_fields(
    client_for, project, project_admin
):
    before = project.gold_rate
    response = client_for(project_admin).patch(
        f"/api/projects/{project.slug}/",
        {"gold_rate": 0.1, "lease_seconds": project.lease_seconds},
        format="json",
        REMOTE_ADDR="203.0.113.7",
    )
    assert response.status_code == 200, response.content

    event = only_event("project.settings_changed")
    assert event.actor == project_admin
    assert event.project == project
    assert event.ip == "203.0.113.7"
    # Only what changed: lease_seconds was sent with its current value.
    assert event.details == {"gold_rate": {"before": before, "after": 0.1}}


def test_a_settings_change_that_changes_nothing_leaves_no_event(project):
    projects.update_project(project, {"gold_rate": project.gold_rate})
    assert not AuditEvent.objects.filter(action="project.settings_changed").exists()


def test_a_new_taxonomy_version_and_the_project_switch_are_recorded(client_for, engineer, project):
    api = client_for(engineer)
    imported = api.post("/api/taxonomies/import/?project=callcentre", SMALL, format="json")
    assert imported.status_code == 201, imported.content
    # (The project fixture's preset install is an event of its own, by the system.)
    imported = only_event("taxonomy.imported", target_label__startswith="Support")
    assert (imported.actor, imported.project) == (engineer, project)
    v1 = TaxonomyVersion.objects.get(taxonomy__slug="support")
    taxonomy.assign_to_project(project, v1)
    switched = only_event("project.taxonomy_changed")
    assert switched.details["taxonomy_version"]["after"] == str(v1)

    v2_doc = {**SMALL, "nodes": [{"key": "cross", "name": "Cross"}]}
    created = api.post(
        "/api/taxonomies/support/versions/",
        {"based_on": 1, "document": v2_doc, "mapping": {"angry": "cross", "calm": None}},
        format="json",
    )
    assert created.status_code == 201, created.content

    event = only_event("taxonomy.version_created")
    assert event.actor == engineer
    assert event.project == project
    assert event.target_type == "labelling.taxonomyversion"
    assert (event.details["previous"], event.details["number"]) == (1, 2)
    assert event.details["dropped"] == ["calm"]


def test_an_invitation_and_its_redemption_are_recorded(project, project_admin):
    _, token = invitations.create(project, role=Role.REVIEWER, by=project_admin, by_role=Role.ADMIN)
    newcomer = make_user("nina")
    invitations.accept(token, newcomer)

    invited = only_event("membership.invited")
    assert (invited.actor, invited.details["role"]) == (project_admin, "reviewer")
    added = only_event("membership.added")
    assert (added.actor, added.project, added.details["role"]) == (newcomer, project, "reviewer")

    _, promote = invitations.create(project, role=Role.ADMIN, by=project_admin, by_role=Role.ADMIN)
    invitations.accept(promote, newcomer)
    changed = only_event("membership.role_changed")
    assert changed.details == {"role": {"before": "reviewer", "after": "admin"}}
    assert Membership.objects.get(user=newcomer, project=project).role == Role.ADMIN


def test_a_learner_settings_change_through_the_api_is_recorded(client_for, engineer, project):
    url = f"/api/projects/{project.slug}/learner-settings"
    current = client_for(engineer).get(url).json()["augmentation"]
    response = client_for(engineer).patch(url, {"augmentation": not current}, format="json")
    assert response.status_code == 200, response.content

    event = only_event("learner.settings_changed")
    assert event.actor == engineer
    assert event.details == {"augmentation": {"before": current, "after": not current}}


def _version(project, number: int) -> ModelVersion:
    return ModelVersion.objects.create(
        project=project,
        number=number,
        extractor="egemaps",
        extractor_version="test",
        artifact=f"learner/models/test-{number}.bin",
        artifact_sha256="0" * 64,
    )


def test_each_model_activation_is_one_event_naming_the_previous_model(project):
    first, second = _version(project, 1), _version(project, 2)
    with transaction.atomic():
        training._activate(first)
    with transaction.atomic():
        training._activate(second)

    events = list(AuditEvent.objects.filter(action="model.activated").order_by("pk"))
    assert [e.details for e in events] == [
        {"number": 1, "previous": None},
        {"number": 2, "previous": 1},
    ]
    assert all(e.actor is None and e.project == project for e in events), "system activations"


# --- Append-only --------------------------------------------------------------------------


def test_events_cannot_be_changed_or_deleted_through_the_orm(project, project_admin):
    event = audit.record(project_admin, "project.created", project=project, target=project)
    event.action = "project.deleted"
    with pytest.raises(AppendOnly):
        event.save()
    with pytest.raises(AppendOnly):
        event.delete()
    with pytest.raises(AppendOnly):
        AuditEvent.objects.filter(pk=event.pk).update(action="x")
    with pytest.raises(AppendOnly):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "project.created"


def test_deleting_the_project_or_the_actor_keeps_the_event_and_its_labels(project):
    actor = make_user("temp")
    event = audit.record(actor, "project.created", project=project, target=project)
    actor.delete()
    project.delete()
    event = AuditEvent.objects.get(pk=event.pk)
    assert (event.actor, event.project) == (None, None)
    assert (event.actor_label, event.project_label) == ("temp", "callcentre")


def test_the_admin_shows_events_read_only(client, superuser, project):
    event = audit.record(superuser, "project.created", project=project, target=project)
    client.force_login(superuser)
    assert client.get("/admin/audit/auditevent/").status_code == 200
    change = client.post(f"/admin/audit/auditevent/{event.pk}/change/", {"action": "x"})
    assert change.status_code == 403
    delete = client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).action == "project.created"


# --- Who reads the log --------------------------------------------------------------------


@pytest.fixture
def two_projects_events(project, other_project, project_admin):
    audit.record(project_admin, "project.created", project=project, target=project)
    audit.record(None, "project.created", project=other_project, target=other_project)
    audit.record(None, "task.retried")  # instance-wide, no project
    return project, other_project


def _actions(response) -> list[tuple[str, str]]:
    """(project, action) of each event listed, without the fixtures' preset installs."""
    rows = response.json()["results"]
    return sorted((r["project"], r["action"]) for r in rows if r["action"] != "taxonomy.imported")


def test_the_superuser_reads_every_event_staff_the_instance_ones_and_admins_their_projects(
    client_for, two_projects_events, project_admin, staff, superuser, annotator, engineer
):
    everything = [
        ("", "task.retried"),
        ("callcentre", "project.created"),
        ("gamechat", "project.created"),
    ]
    assert _actions(client_for(superuser).get("/api/audit/")) == everything
    # Staff are not members of every project (docs/security.md): instance-wide events only,
    # and the events of projects they administer.
    assert _actions(client_for(staff).get("/api/audit/")) == [("", "task.retried")]
    Membership.objects.create(user=staff, project=two_projects_events[1], role=Role.ADMIN)
    assert _actions(client_for(staff).get("/api/audit/")) == [
        ("", "task.retried"),
        ("gamechat", "project.created"),
    ]
    assert _actions(client_for(project_admin).get("/api/audit/")) == [
        ("callcentre", "project.created")
    ]
    for user in (annotator, engineer):
        refused = client_for(user).get("/api/audit/")
        assert refused.status_code == 403
        assert refused.json()["code"] == "permission_denied"
    assert client_for(None).get("/api/audit/").status_code in (401, 403)


def test_the_api_filters_by_project_actor_and_action(client_for, two_projects_events, superuser):
    api = client_for(superuser)
    assert _actions(api.get("/api/audit/?project=gamechat")) == [("gamechat", "project.created")]
    assert _actions(api.get("/api/audit/?actor=ada")) == [("callcentre", "project.created")]
    assert _actions(api.get("/api/audit/?action=task.")) == [("", "task.retried")]
    assert api.get("/api/audit/?colour=red").status_code == 400


def test_the_page_is_for_admins(client, two_projects_events, project_admin, annotator):
    assert client.get("/audit/").status_code == 302  # to the login page
    client.force_login(annotator)
    assert client.get("/audit/").status_code == 403
    client.force_login(project_admin)
    page = client.get("/audit/")
    assert page.status_code == 200
    assert page.content.decode().count('data-action="project.created"') == 1


def test_members_added_re_roled_and_removed_through_the_api_are_recorded(
    client_for, project, project_admin, superuser
):
    make_user("mira")
    base = f"/api/projects/{project.slug}/members/"
    created = client_for(superuser).post(base, {"username": "mira", "role": "annotator"})
    assert created.status_code == 201, created.content[:300]
    added = only_event("membership.added")
    assert (added.actor, added.project) == (superuser, project)
    assert added.details == {"role": "annotator", "user": "mira"}

    member = f"{base}{created.json()['id']}/"
    admin = client_for(project_admin)
    assert admin.patch(member, {"role": "reviewer"}, format="json").status_code == 200
    changed = only_event("membership.role_changed")
    assert changed.actor == project_admin
    assert changed.details == {"role": {"before": "annotator", "after": "reviewer"}, "user": "mira"}
    assert admin.patch(member, {"role": "reviewer"}, format="json").status_code == 200
    assert AuditEvent.objects.filter(action="membership.role_changed").count() == 1  # no change

    assert admin.delete(member).status_code == 204
    removed = only_event("membership.removed")
    assert (removed.actor, removed.details) == (project_admin, {"role": "reviewer", "user": "mira"})
    assert not Membership.objects.filter(user__username="mira").exists()
