"""Weak-label sources at the admin door: the project's ML engineers (and admins) see them with
their derived agreement, and change weight / enabled / force through the same service as the
API (audited as `weak_source.changed`); nobody else sees them."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from labelling.models import Membership, Project, Role
from labelling.models_interop import WeakLabel, WeakLabelSource
from labelling.services import annotations as annotation_service
from labelling.services.interop import sources
from tests.conftest import make_user
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/labelling/weaklabelsource/"


def staff_member(project, username: str, role: Role):
    user = make_user(username, is_staff=True)
    Membership.objects.create(user=user, project=project, role=role)
    return user


@pytest.fixture
def disagreeing_source(project, annotator, settings):
    """A source that contradicts the humans on both clips it shares with them: flagged."""
    settings.EMOLOOP_WEAK_MIN_OVERLAP = 2
    node = project.taxonomy_version.nodes.get(key="joyful")
    for _ in range(2):
        clip = ClipFactory(project=project)
        annotation_service.record_annotation(clip=clip, annotator=annotator, node_key="mad")
        WeakLabel.objects.create(
            clip=clip, model_name="ser-x", model_version="1",
            taxonomy_version=project.taxonomy_version, probabilities={"joyful": 1.0},
            top_node=node, top_probability=1.0,
        )  # fmt: skip
    return sources.set_source(project, "ser-x", weight=0.4)


def events():
    return list(AuditEvent.objects.filter(action="weak_source.changed").order_by("pk"))


def form(**changes):
    return {"weight": 0.4, "enabled": "on", **changes}


def test_an_engineer_sees_the_derived_agreement_and_changes_the_weight_audited(
    client, project, disagreeing_source
):
    engineer = staff_member(project, "erin", Role.ML_ENGINEER)
    client.force_login(engineer)
    listed = client.get(CHANGELIST)
    assert listed.status_code == 200
    page = listed.content.decode()
    assert "ser-x" in page
    assert "0%" in page, "the agreement with the humans (0 of 2 clips) is shown"
    url = f"{CHANGELIST}{disagreeing_source.pk}/change/"
    shown = client.get(url).content.decode()
    assert "clips also labelled by humans" in shown.lower()
    before = len(events())

    # model_name and project are fixed; the derived fields cannot be posted.
    changed = client.post(url, form(weight=0.7, model_name="other", force="on", flagged=""))

    assert changed.status_code == 302, changed.content.decode()[:2000]
    row = WeakLabelSource.objects.get(pk=disagreeing_source.pk)
    assert (row.model_name, row.weight, row.enabled, row.force) == ("ser-x", 0.7, True, True)
    [event] = events()[before:]
    assert event.actor == engineer
    assert event.details == {
        "model": "ser-x",
        "changes": {"weight": [0.4, 0.7], "force": [False, True]},
    }
    # The service decides what trains: flagged, but forced.
    [report] = sources.source_reports(project)
    assert report.flagged
    assert report.used_for_training


def test_a_weight_outside_0_1_is_refused_by_the_form_and_nothing_is_recorded(
    client, project, disagreeing_source
):
    client.force_login(staff_member(project, "erin", Role.ML_ENGINEER))
    before = len(events())
    response = client.post(f"{CHANGELIST}{disagreeing_source.pk}/change/", form(weight=1.5))
    assert response.status_code == 200, "the form comes back with the error"
    assert WeakLabelSource.objects.get(pk=disagreeing_source.pk).weight == 0.4
    assert len(events()) == before


def test_a_source_is_not_deleted_here(client, project, disagreeing_source):
    client.force_login(staff_member(project, "ada2", Role.ADMIN))
    response = client.post(f"{CHANGELIST}{disagreeing_source.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert WeakLabelSource.objects.filter(pk=disagreeing_source.pk).exists()


def test_an_engineer_of_another_project_and_an_annotator_see_nothing(
    client, project, other_project, disagreeing_source
):
    stranger = staff_member(other_project, "olga", Role.ML_ENGINEER)
    sources.set_source(other_project, "their-model", weight=0.2)
    client.force_login(stranger)
    page = client.get(CHANGELIST).content.decode()
    assert "their-model" in page
    assert "ser-x" not in page
    change = client.get(f"{CHANGELIST}{disagreeing_source.pk}/change/")
    assert change.status_code == 302  # the admin's "does not exist" redirect
    refused = client.post(f"{CHANGELIST}{disagreeing_source.pk}/change/", form(weight=0.9))
    assert refused.status_code == 302
    assert WeakLabelSource.objects.get(pk=disagreeing_source.pk).weight == 0.4
    # Adding one for a project where they are no ML engineer: the project is not offered.
    added = client.post(
        f"{CHANGELIST}add/", {"project": project.pk, "model_name": "sneaky", **form()}
    )
    assert added.status_code == 200
    assert not WeakLabelSource.objects.filter(model_name="sneaky").exists()

    annotator = staff_member(project, "andy", Role.ANNOTATOR)
    client.force_login(annotator)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(f"{CHANGELIST}{disagreeing_source.pk}/change/").status_code == 403
    assert "weaklabelsource" not in client.get("/admin/").content.decode()


def test_an_engineer_adds_a_source_before_its_predictions_come(client, project):
    engineer = staff_member(project, "erin", Role.ML_ENGINEER)
    client.force_login(engineer)
    response = client.post(
        f"{CHANGELIST}add/", {"project": project.pk, "model_name": "later-model", **form()}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    row = WeakLabelSource.objects.get(project=project, model_name="later-model")
    assert row.weight == 0.4
    [event] = events()
    assert event.actor == engineer
    assert event.details["changes"] == {"weight": [0.3, 0.4]}


def test_the_project_filter_offers_an_engineer_their_projects_and_no_other(
    client, project, disagreeing_source
):
    def another(slug: str) -> Project:
        made = Project.objects.create(
            name=f"Project {slug}", slug=slug, taxonomy_version=project.taxonomy_version
        )
        sources.set_source(made, "ser-x", weight=0.2)
        return made

    second, stranger = another("second-of-erin"), another("somebody-else")
    engineer = staff_member(project, "erin", Role.ML_ENGINEER)
    Membership.objects.create(user=engineer, project=second, role=Role.ML_ENGINEER)
    client.force_login(engineer)
    page = client.get(CHANGELIST).content.decode()
    # Both of theirs (an engineer, not an admin, of each), nothing of the stranger's.
    assert f"project__id__exact={project.pk}" in page
    assert f"project__id__exact={second.pk}" in page
    assert f"project__id__exact={stranger.pk}" not in page
    assert "somebody-else" not in page
