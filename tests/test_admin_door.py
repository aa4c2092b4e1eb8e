"""The Django admin is a door like the API: same rules, same services, scoped to projects."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from labelling.models import Annotation, GoldResult, Membership, Project, QueueEntry
from labelling.services import annotations as annotation_service
from labelling.services import queue, taxonomy
from tests.conftest import make_user
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(client):
    user = get_user_model().objects.create_superuser("root", password="pw-root-long-enough")
    client.force_login(user)
    return user


def _project_form(project: Project, **changes) -> dict:
    data = {
        "name": project.name,
        "slug": project.slug,
        "description": project.description,
        "guidelines": project.guidelines,
        "taxonomy_version": project.taxonomy_version_id or "",
        "annotators_per_clip": project.annotators_per_clip,
        "is_active": "on",
        "queue_policy": project.queue_policy,
        "lease_seconds": project.lease_seconds,
        "gold_rate": project.gold_rate,
        "agreement_target": project.agreement_target,
        "max_annotators_per_clip": project.max_annotators_per_clip,
        "autoplay": "on",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    data.update(changes)
    return data


def test_the_admin_cannot_switch_a_labelled_project_to_an_unrelated_wheel(
    client, root, project, annotator
):
    annotation_service.record_annotation(
        clip=ClipFactory(project=project), annotator=annotator, node_key="mad"
    )
    basic = taxonomy.install_preset("basic")
    url = f"/admin/labelling/project/{project.pk}/change/"

    response = client.post(url, _project_form(project, taxonomy_version=basic.pk))

    assert response.status_code == 200, "the form comes back with the error"
    assert "switch only to a later version" in response.content.decode()
    project.refresh_from_db()
    assert project.taxonomy_version.taxonomy.slug == "willcox"
    changed = client.post(url, _project_form(project, assisted="on"))
    assert changed.status_code == 302
    project.refresh_from_db()
    assert project.assisted is True


def test_derived_state_and_labels_are_read_only_in_the_admin(client, root, project, annotator):
    clip = ClipFactory(project=project)
    queue.enqueue_clips(project, [clip])
    entry = QueueEntry.objects.get(clip=clip)
    annotation = annotation_service.record_annotation(
        clip=clip, annotator=annotator, node_key="mad"
    )

    edit_entry = client.post(
        f"/admin/labelling/queueentry/{entry.pk}/change/",
        {"priority": -99, "open_slots": 9, "target": 9, "reason": '{"why": "me"}'},
    )
    add_annotation = client.post(
        "/admin/labelling/annotation/add/",
        {"clip": clip.pk, "annotator": annotator.pk, "node": "", "skip_reason": "noise"},
    )
    add_gold_result = client.get("/admin/labelling/goldresult/add/")
    edit_annotation = client.post(
        f"/admin/labelling/annotation/{annotation.pk}/change/", {"skip_reason": "noise"}
    )

    assert edit_entry.status_code == 403
    assert add_annotation.status_code == 403
    assert add_gold_result.status_code == 403
    assert edit_annotation.status_code == 403
    entry.refresh_from_db()
    assert (entry.priority, entry.open_slots, entry.reason) != (-99, 9, {"why": "me"})
    assert Annotation.objects.count() == 1
    assert not GoldResult.objects.exists()
    # Still visible, read-only.
    assert client.get(f"/admin/labelling/queueentry/{entry.pk}/change/").status_code == 200


def test_staff_see_only_projects_they_administer(client, project, other_project):
    ClipFactory(project=project, original_name="mine.wav")
    ClipFactory(project=other_project, original_name="theirs.wav")
    staff = make_user("stan", is_staff=True)
    Membership.objects.create(user=staff, project=project, role="admin")
    client.force_login(staff)

    clips = client.get("/admin/labelling/clip/").content.decode()
    projects = client.get("/admin/labelling/project/").content.decode()
    foreign = other_project.clips.get()

    assert "mine.wav" in clips
    assert "theirs.wav" not in clips
    assert "Game chat" not in projects
    assert client.get(f"/admin/labelling/clip/{foreign.pk}/change/").status_code in (302, 404)
    assert client.get(f"/admin/labelling/project/{other_project.pk}/change/").status_code in (
        302,
        404,
    )

    Membership.objects.filter(user=staff).update(role="ml_engineer")
    assert "mine.wav" not in client.get("/admin/labelling/clip/").content.decode()


def test_learner_settings_are_bounded_in_the_admin_too(client, root, project):
    from learner.services import project_settings

    row = project_settings.settings_for(project)
    response = client.post(
        f"/admin/learner/learnersettings/{project.pk}/change/",
        {
            "feature_set": "acoustic",
            "speaker_normalisation": "auto",
            "augmentation": "on",
            "retrain_after_labels": 50,
            "retrain_interval_hours": 134377414,
            "min_labelled_clips": 20,
            "unsure_weight": 0.5,
            "epochs": 2000000000,
            "seed": 0,
            "query_strategy": row.query_strategy,
            "query_params": "{}",
            "query_batch_size": 20,
            "coverage_min_share": "{}",
            "coverage_max_share": "{}",
        },
    )

    assert response.status_code == 200, "refused: the form comes back"
    row.refresh_from_db()
    assert row.retrain_interval_hours == 0
    assert row.epochs is None
