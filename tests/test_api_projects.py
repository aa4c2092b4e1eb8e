"""Project settings, memberships and invitations through the API."""

from __future__ import annotations

import pytest

from labelling.models import Invitation, Membership, Project, QueueEntry
from labelling.services import queue
from tests.conftest import make_user
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


def test_every_setting_shown_to_an_admin_can_be_changed_and_none_is_ignored(
    client_for, project, project_admin
):
    api = client_for(project_admin)
    url = f"/api/projects/{project.slug}/"

    changed = api.patch(
        url,
        {"assisted": True, "gold_rate": 0.1, "lease_seconds": 900, "queue_policy": "random"},
        format="json",
    )
    unknown = api.patch(url, {"assisted": False, "colour": "red"}, format="json")
    read_only = api.patch(url, {"created_at": "2020-01-01T00:00:00Z"}, format="json")
    out_of_range = api.patch(url, {"gold_rate": 0.9, "lease_seconds": 1}, format="json")

    assert changed.status_code == 200, changed.content
    project.refresh_from_db()
    assert (project.assisted, project.gold_rate, project.lease_seconds) == (True, 0.1, 900)
    assert project.queue_policy == "random"
    assert unknown.status_code == 400
    assert "colour" in unknown.json()["errors"]
    assert read_only.status_code == 400
    assert out_of_range.status_code == 400
    assert set(out_of_range.json()["errors"]) == {"gold_rate", "lease_seconds"}
    project.refresh_from_db()
    assert project.assisted is True, "a refused request changes nothing"


def test_annotators_see_the_labelling_subset_of_a_project(
    client_for, project, annotator, project_admin
):
    mine = client_for(annotator).get(f"/api/projects/{project.slug}/").json()
    full = client_for(project_admin).get(f"/api/projects/{project.slug}/").json()

    assert {"gold_rate", "agreement_routing", "queue_policy", "agreement_target"} <= set(full)
    assert not {"gold_rate", "agreement_routing", "queue_policy", "annotators_per_clip"} & set(mine)
    assert mine["guidelines"] == project.guidelines
    assert "assisted" in mine


def test_a_new_overlap_retargets_the_queue(client_for, project, project_admin, annotator):
    clips = [ClipFactory(project=project) for _ in range(3)]
    queue.enqueue_clips(project, clips)
    leased = queue.next_clip(project, annotator)
    queue.submit(project, annotator, lease_id=leased.lease.id, client_id=None, node_key="mad")
    assert project.annotators_per_clip == 2

    response = client_for(project_admin).patch(
        f"/api/projects/{project.slug}/", {"annotators_per_clip": 1}, format="json"
    )

    assert response.status_code == 200
    entries = {e.clip_id: (e.target, e.open_slots) for e in QueueEntry.objects.all()}
    assert entries[leased.clip.pk] == (1, 0), "the labelled clip is now complete"
    assert sorted(v for k, v in entries.items() if k != leased.clip.pk) == [(1, 1), (1, 1)]
    too_low = client_for(project_admin).patch(
        f"/api/projects/{project.slug}/", {"max_annotators_per_clip": 0}, format="json"
    )
    assert too_low.status_code == 400


def test_project_admins_invite_and_only_staff_add_accounts_directly(
    client_for, project, project_admin, client
):
    stranger = make_user("sam")
    api = client_for(project_admin)

    direct = api.post(
        f"/api/projects/{project.slug}/members/", {"username": "sam", "role": "admin"}
    )
    assert direct.status_code == 403
    assert direct.json()["code"] == "invite_instead"
    assert not Membership.objects.filter(user=stranger).exists()

    created = api.post(
        f"/api/projects/{project.slug}/invitations/",
        {"role": "reviewer", "note": "for Sam"},
        format="json",
    )
    assert created.status_code == 201, created.content
    token = created.json()["token"]
    assert token not in str(api.get(f"/api/projects/{project.slug}/invitations/").json())
    assert not Invitation.objects.filter(token_sha256=token).exists(), "stored hashed only"

    client.force_login(stranger)
    page = client.get(f"/invitations/{token}/")
    assert page.status_code == 200
    assert "Join Call centre" in page.content.decode()
    joined = client.post(f"/invitations/{token}/")
    assert joined.status_code == 302
    assert Membership.objects.get(user=stranger, project=project).role == "reviewer"
    again = client_for(make_user("mallory")).post(
        "/api/invitations/accept/", {"token": token}, format="json"
    )
    assert again.status_code == 400, "an invitation is redeemed once"

    staff = make_user("stella", is_staff=True)
    Membership.objects.create(user=staff, project=project, role="admin")
    added = client_for(staff).post(
        f"/api/projects/{project.slug}/members/", {"username": "mallory", "role": "annotator"}
    )
    assert added.status_code == 201


def test_a_revoked_or_expired_invitation_and_a_role_above_ones_own_are_refused(
    client_for, project, engineer, project_admin
):
    from django.utils import timezone

    from labelling.services import invitations

    api = client_for(project_admin)
    token = api.post(f"/api/projects/{project.slug}/invitations/", {}, format="json").json()[
        "token"
    ]
    invitation = Invitation.objects.get()
    assert (
        api.delete(f"/api/projects/{project.slug}/invitations/{invitation.pk}/").status_code == 204
    )
    late = make_user("lena")
    assert client_for(late).post("/api/invitations/accept/", {"token": token}).status_code == 400

    _, fresh = invitations.create(project, role="annotator", by=project_admin, by_role="admin")
    Invitation.objects.filter(revoked_at__isnull=True).update(expires_at=timezone.now())
    assert client_for(late).post("/api/invitations/accept/", {"token": fresh}).status_code == 400
    assert not Membership.objects.filter(user=late).exists()
    with pytest.raises(invitations.InvitationRefused):
        invitations.create(project, role="admin", by=engineer, by_role="ml_engineer")


def test_a_membership_changes_role_only_and_the_last_admin_stays(
    client_for, project, project_admin, annotator
):
    api = client_for(project_admin)
    anna = Membership.objects.get(user=annotator)
    ada = Membership.objects.get(user=project_admin)

    renamed = api.patch(
        f"/api/projects/{project.slug}/members/{anna.pk}/", {"username": "ada"}, format="json"
    )
    promoted = api.patch(
        f"/api/projects/{project.slug}/members/{anna.pk}/", {"role": "reviewer"}, format="json"
    )
    demote_last = api.patch(
        f"/api/projects/{project.slug}/members/{ada.pk}/", {"role": "annotator"}, format="json"
    )
    remove_last = api.delete(f"/api/projects/{project.slug}/members/{ada.pk}/")

    assert renamed.status_code == 400, "who the member is cannot change (was a 500)"
    assert promoted.status_code == 200
    assert Membership.objects.get(pk=anna.pk).role == "reviewer"
    assert demote_last.status_code == 409
    assert remove_last.status_code == 409
    assert Membership.objects.get(pk=ada.pk).role == "admin"


def test_deleting_a_project_needs_its_admin(client_for, project, engineer, project_admin):
    assert client_for(engineer).delete(f"/api/projects/{project.slug}/").status_code == 403
    assert client_for(project_admin).delete(f"/api/projects/{project.slug}/").status_code == 204
    assert not Project.objects.filter(pk=project.pk).exists()
