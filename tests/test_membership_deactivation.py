"""Deactivating a member (labelling.services.membership): leases released and slots given
back in the same transaction, no access at any door, audit events, reactivation, the last
active admin, oneself, idempotence."""

from __future__ import annotations

import random
import uuid

import pytest

from audit.models import AuditEvent
from labelling.models import Annotation, Lease, Membership, QueueEntry, Role
from labelling.services import invitations, queue
from labelling.services import membership as service
from tests.conftest import make_user
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


class _AlwaysGold(random.Random):
    """Every draw is 0.0: next_clip serves a gold clip when one is open."""

    def random(self) -> float:
        return 0.0


def _clips(project, n):
    clips = [ClipFactory(project=project) for _ in range(n)]
    queue.enqueue_clips(project, clips, seed=1)
    return clips


def _slots(clips) -> dict[int, int]:
    return dict(QueueEntry.objects.filter(clip__in=clips).values_list("clip_id", "open_slots"))


def _membership(user) -> Membership:
    return Membership.objects.get(user=user)


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("pk"))


def test_deactivation_releases_the_members_leases_and_gives_their_slots_back(
    client_for, project, annotator, second_annotator, project_admin
):
    clips = _clips(project, 3)  # overlap 2: every clip opens with 2 slots
    mine = [client_for(annotator).post(f"/api/projects/{project.slug}/next/") for _ in range(2)]
    theirs = client_for(second_annotator).post(f"/api/projects/{project.slug}/next/")
    assert [r.status_code for r in (*mine, theirs)] == [200, 200, 200]
    my_clips = {r.json()["clip"]["id"] for r in mine}
    before = _slots(clips)

    changed = service.deactivate(_membership(annotator), by=project_admin)

    after = _slots(clips)
    assert (changed.active_changed, changed.leases_released) == (True, 2)
    assert {pk: after[pk] - before[pk] for pk in before} == {
        clip.pk: int(clip.pk in my_clips) for clip in clips
    }
    assert set(Lease.objects.filter(annotator=annotator).values_list("status", flat=True)) == {
        "expired"
    }
    theirs_lease = Lease.objects.get(pk=theirs.json()["lease"]["id"])
    assert theirs_lease.status == "active", "another annotator's lease is left alone"
    row = _membership(annotator)
    assert (row.is_active, row.deactivated_by) == (False, project_admin)
    assert row.deactivated_at is not None


def test_a_gold_lease_is_released_too_and_takes_no_slot_back(
    project, annotator, reviewer, project_admin
):
    regular, gold_clip = _clips(project, 2)
    queue.mark_gold(gold_clip, "mad", reviewer)
    project.gold_rate = 0.5
    project.save()
    gold = queue.next_clip(project, annotator, rng=_AlwaysGold())
    assert gold is not None
    assert gold.clip.pk == gold_clip.pk
    gold_slots = QueueEntry.objects.get(clip=gold_clip).open_slots
    assert Lease.objects.get(pk=gold.lease.id).is_gold

    service.deactivate(_membership(annotator), by=project_admin)

    assert Lease.objects.get(pk=gold.lease.id).status == "expired"
    assert QueueEntry.objects.get(clip=gold_clip).open_slots == gold_slots
    assert QueueEntry.objects.get(clip=regular).open_slots == 2


def test_submitted_labels_stay_and_their_slots_stay_taken(project, annotator, project_admin):
    clips = _clips(project, 2)
    done = queue.next_clip(project, annotator)
    assert done is not None
    queue.submit(project, annotator, lease_id=done.lease.id, client_id=uuid.uuid4(), node_key="mad")
    held = queue.next_clip(project, annotator)
    assert held is not None
    before = _slots(clips)

    service.deactivate(_membership(annotator), by=project_admin)

    assert Annotation.objects.filter(annotator=annotator, is_current=True).count() == 1
    assert Lease.objects.get(pk=done.lease.id).status == "done"
    after = _slots(clips)
    assert after[done.clip.pk] == before[done.clip.pk]
    assert after[held.clip.pk] == before[held.clip.pk] + 1


def test_a_deactivated_annotator_gets_404_at_the_queue_and_the_audio(
    client_for, project, annotator, project_admin
):
    _clips(project, 3)
    api = client_for(annotator)
    leased = api.post(f"/api/projects/{project.slug}/next/").json()
    clip_id, lease_id = leased["clip"]["id"], leased["lease"]["id"]
    assert api.get(f"/api/clips/{clip_id}/audio/").status_code == 200

    service.deactivate(_membership(annotator), by=project_admin)

    assert api.post(f"/api/projects/{project.slug}/next/").status_code == 404
    submit = api.post(
        f"/api/projects/{project.slug}/annotations/",
        {"lease": lease_id, "client_id": str(uuid.uuid4()), "node": "mad"},
        format="json",
    )
    assert submit.status_code == 404, submit.content
    assert api.get(f"/api/clips/{clip_id}/audio/").status_code == 404
    assert api.get(f"/api/projects/{project.slug}/").status_code == 404
    assert api.get("/api/projects/").json()["count"] == 0
    assert not Annotation.objects.filter(annotator=annotator).exists()
    assert queue.next_clip(project, annotator) is not None, (
        "the queue service itself trusts its caller; the door is what refuses"
    )


def test_reactivation_restores_access_and_an_old_lease_is_refused_as_expired(
    client_for, project, annotator, project_admin
):
    _clips(project, 3)
    api = client_for(annotator)
    old = api.post(f"/api/projects/{project.slug}/next/").json()
    service.deactivate(_membership(annotator), by=project_admin)

    changed = service.reactivate(_membership(annotator), by=project_admin)

    assert changed.active_changed
    row = _membership(annotator)
    assert (row.is_active, row.deactivated_at, row.deactivated_by) == (True, None, None)
    stale = api.post(
        f"/api/projects/{project.slug}/annotations/",
        {"lease": old["lease"]["id"], "client_id": str(uuid.uuid4()), "node": "mad"},
        format="json",
    )
    assert (stale.status_code, stale.json()["code"]) == (409, "lease_expired")
    assert api.post(f"/api/projects/{project.slug}/next/").status_code == 200


def test_deactivation_and_reactivation_are_recorded_once_each(project, annotator, project_admin):
    _clips(project, 1)
    queue.next_clip(project, annotator)
    membership = _membership(annotator)

    service.deactivate(membership, by=project_admin)
    again = service.deactivate(membership, by=project_admin)
    service.reactivate(membership, by=project_admin)
    still = service.reactivate(membership, by=project_admin)

    assert (again.active_changed, again.leases_released) == (False, 0)
    assert not still.active_changed
    (off,) = _events("membership.deactivated")
    (on,) = _events("membership.reactivated")
    assert (off.actor, off.project, off.target_id) == (project_admin, project, str(membership.pk))
    assert off.details == {"user": "anna", "role": "annotator", "leases_released": 1}
    assert (on.actor, on.details) == (project_admin, {"user": "anna", "role": "annotator"})
    assert not _events("membership.role_changed")


def test_the_last_active_admin_cannot_be_deactivated_demoted_or_removed(
    project, project_admin, superuser
):
    ada = _membership(project_admin)
    for attempt in (
        lambda: service.deactivate(ada, by=superuser),
        lambda: service.change(ada, by=superuser, role=Role.REVIEWER),
        lambda: service.remove(ada, by=superuser),
    ):
        with pytest.raises(service.MembershipRefused) as refused:
            attempt()
        assert refused.value.code == "last_admin"
    ada.refresh_from_db()
    assert (ada.is_active, ada.role) == (True, Role.ADMIN)
    assert not AuditEvent.objects.filter(action__startswith="membership.").exists()


def test_a_deactivated_admin_does_not_count_as_the_remaining_admin(
    project, project_admin, superuser
):
    second = make_user("adam")
    adam = Membership.objects.create(user=second, project=project, role=Role.ADMIN)
    service.deactivate(adam, by=project_admin)

    with pytest.raises(service.MembershipRefused):
        service.deactivate(_membership(project_admin), by=superuser)
    # Demoting or removing the deactivated admin leaves the active one: allowed.
    assert service.change(adam, by=project_admin, role=Role.ANNOTATOR).role_changed
    service.remove(adam, by=project_admin)
    assert not Membership.objects.filter(pk=adam.pk).exists()


def test_an_admin_cannot_deactivate_themselves_but_another_admin_can(project, project_admin):
    second = make_user("adam")
    Membership.objects.create(user=second, project=project, role=Role.ADMIN)
    ada = _membership(project_admin)

    with pytest.raises(service.MembershipRefused) as refused:
        service.deactivate(ada, by=project_admin)

    assert refused.value.code == "self"
    assert service.deactivate(ada, by=second).active_changed


def test_a_role_change_and_a_deactivation_in_one_call_record_both(
    project, annotator, project_admin
):
    changed = service.change(
        _membership(annotator), by=project_admin, role=Role.REVIEWER, is_active=False
    )

    assert (changed.role_changed, changed.active_changed) == (True, True)
    assert (changed.membership.role, changed.membership.is_active) == (Role.REVIEWER, False)
    assert len(_events("membership.role_changed")) == len(_events("membership.deactivated")) == 1


def test_removing_a_member_releases_their_leases(project, annotator, project_admin):
    (clip,) = _clips(project, 1)
    queue.next_clip(project, annotator)
    assert QueueEntry.objects.get(clip=clip).open_slots == 1

    service.remove(_membership(annotator), by=project_admin)

    assert QueueEntry.objects.get(clip=clip).open_slots == 2
    assert Lease.objects.get(annotator=annotator).status == "expired"
    (removed,) = _events("membership.removed")
    assert removed.details == {"role": "annotator", "user": "anna"}


def test_an_invitation_is_not_a_way_back_in(project, annotator, project_admin):
    service.deactivate(_membership(annotator), by=project_admin)
    invitation, token = invitations.create(
        project, role=Role.REVIEWER, by=project_admin, by_role=Role.ADMIN
    )

    with pytest.raises(invitations.InvitationRefused, match="deactivated"):
        invitations.accept(token, annotator)

    invitation.refresh_from_db()
    assert invitation.accepted_at is None, "the token stays unused"
    row = _membership(annotator)
    assert (row.is_active, row.role) == (False, Role.ANNOTATOR)
