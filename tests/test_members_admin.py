"""The Membership admin is a door to the same service: deactivating a member there releases
their leases and is recorded; the last active admin stays; the project's inline only shows
whether a member is active."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from labelling.models import Lease, Membership, QueueEntry, Role
from labelling.services import membership as membership_service
from labelling.services import queue
from tests.conftest import make_user
from tests.factories import ClipFactory
from tests.test_admin_door import _project_form

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_admin(project):
    """Staff (the admin site's login) and admin of the project."""
    user = make_user("sara", is_staff=True)
    Membership.objects.create(user=user, project=project, role=Role.ADMIN)
    return user


def _change(client, membership: Membership, **fields):
    data = {"role": membership.role, **fields}
    if membership.is_active and "is_active" not in fields:
        data["is_active"] = "on"
    return client.post(f"/admin/labelling/membership/{membership.pk}/change/", data)


def test_deactivating_in_the_admin_releases_leases_and_is_recorded(
    client, project, staff_admin, annotator
):
    clip = ClipFactory(project=project)
    queue.enqueue_clips(project, [clip])
    queue.next_clip(project, annotator)
    assert QueueEntry.objects.get(clip=clip).open_slots == 1
    membership = Membership.objects.get(user=annotator)
    client.force_login(staff_admin)

    listing = client.get("/admin/labelling/membership/?is_active__exact=1")
    response = _change(client, membership)  # unchanged: is_active stays on
    assert response.status_code == 302
    assert not AuditEvent.objects.filter(action__startswith="membership.").exists()
    response = _change(client, membership, is_active="")  # the box unticked

    assert listing.status_code == 200
    assert "anna" in listing.content.decode()
    assert response.status_code == 302, response.content.decode()[:2000]
    membership.refresh_from_db()
    assert (membership.is_active, membership.deactivated_by) == (False, staff_admin)
    assert Lease.objects.get(annotator=annotator).status == "expired"
    assert QueueEntry.objects.get(clip=clip).open_slots == 2
    event = AuditEvent.objects.get(action="membership.deactivated")
    assert (event.actor, event.details["leases_released"]) == (staff_admin, 1)
    inactive = client.get("/admin/labelling/membership/?is_active__exact=0").content.decode()
    assert "anna" in inactive


def test_the_admin_refuses_to_deactivate_the_last_active_admin_beside_the_form(
    client, project, staff_admin
):
    membership = Membership.objects.get(user=staff_admin)
    other = make_user("adam")
    second = Membership.objects.create(user=other, project=project, role=Role.ADMIN)
    client.force_login(staff_admin)

    own = _change(client, membership, is_active="")
    assert own.status_code == 200
    assert "You cannot deactivate yourself" in own.content.decode()
    assert _change(client, second, is_active="").status_code == 302
    demote = _change(client, membership, role=Role.REVIEWER)

    assert demote.status_code == 200, "the form comes back with the error"
    assert "at least one active admin" in demote.content.decode()
    membership.refresh_from_db()
    assert (membership.is_active, membership.role) == (True, Role.ADMIN)
    assert AuditEvent.objects.filter(action="membership.deactivated").count() == 1


def test_the_project_inline_shows_but_does_not_change_whether_a_member_is_active(
    client, project, staff_admin, annotator
):
    membership = Membership.objects.get(user=annotator)
    client.force_login(staff_admin)

    page = client.get(f"/admin/labelling/project/{project.pk}/change/").content.decode()

    assert "memberships-0-role" in page
    assert 'name="memberships-0-is_active"' not in page
    assert 'name="memberships-1-is_active"' not in page
    membership.refresh_from_db()
    assert membership.is_active


def _project_page_post(client, project, rows: list[tuple[Membership, dict]]):
    """The project's change page posted with its members' inline rows (`rows`: each member
    with the fields that change: role, DELETE)."""
    data = _project_form(project)
    data.update({
        "memberships-TOTAL_FORMS": str(len(rows)), "memberships-INITIAL_FORMS": str(len(rows)),
    })  # fmt: skip
    for i, (member, changes) in enumerate(rows):
        data.update({
            f"memberships-{i}-id": str(member.pk), f"memberships-{i}-project": str(project.pk),
            f"memberships-{i}-user": str(member.user_id), f"memberships-{i}-role": member.role,
        })  # fmt: skip
        data.update({f"memberships-{i}-{key}": value for key, value in changes.items()})
    return client.post(f"/admin/labelling/project/{project.pk}/change/", data)


def test_the_project_inline_keeps_the_last_admin_and_goes_through_the_service(
    client, project, staff_admin, annotator
):
    """The inline is a door to the membership service too: the last active admin can be
    neither demoted nor removed there; a removal releases the member's leases and is
    recorded, a change of role is recorded."""
    mine = Membership.objects.get(user=staff_admin)
    theirs = Membership.objects.get(user=annotator)
    clip = ClipFactory(project=project)
    queue.enqueue_clips(project, [clip])
    queue.next_clip(project, annotator)
    client.force_login(staff_admin)

    demote = _project_page_post(client, project, [(mine, {"role": Role.REVIEWER}), (theirs, {})])
    remove_self = _project_page_post(client, project, [(mine, {"DELETE": "on"}), (theirs, {})])

    for refused in (demote, remove_self):
        assert refused.status_code == 200, "the page comes back with the error"
        assert "at least one active admin" in refused.content.decode()
    mine.refresh_from_db()
    assert mine.role == Role.ADMIN
    assert not AuditEvent.objects.filter(action__startswith="membership.").exists()

    promoted = _project_page_post(client, project, [(mine, {}), (theirs, {"role": Role.ADMIN})])
    assert promoted.status_code == 302, promoted.content.decode()[:2000]
    theirs.refresh_from_db()
    assert theirs.role == Role.ADMIN
    assert AuditEvent.objects.filter(action="membership.role_changed").count() == 1

    removed = _project_page_post(client, project, [(mine, {}), (theirs, {"DELETE": "on"})])
    assert removed.status_code == 302, removed.content.decode()[:2000]
    assert not Membership.objects.filter(pk=theirs.pk).exists()
    assert Lease.objects.get(annotator=annotator).status == "expired"
    assert QueueEntry.objects.get(clip=clip).open_slots == 2
    assert AuditEvent.objects.filter(action="membership.removed").count() == 1


def test_the_project_page_marks_a_deactivated_member(client, project, reviewer, annotator):
    """The team list of the project page (reviewers and up) shows who is deactivated, after
    the active members."""
    membership_service.deactivate(Membership.objects.get(user=annotator), by=reviewer)
    client.force_login(reviewer)

    page = client.get(f"/projects/{project.slug}/").content.decode()
    team = page[page.index("<h2>Team</h2>") :]

    assert f'{annotator.username} — Annotator <span class="muted">(deactivated)</span>' in team
    assert f"{reviewer.username} — Reviewer</li>" in team
    assert team.index(reviewer.username) < team.index(annotator.username)


def test_the_project_inline_judges_the_post_as_a_whole(client, project, staff_admin, annotator):
    """Promote one member and demote the only admin in one post: allowed (the rows as they
    will be keep an admin), made in that order; demote one admin and remove the other in
    one post: refused above the rows, nothing changed. A row added there is recorded."""
    mine = Membership.objects.get(user=staff_admin)
    theirs = Membership.objects.get(user=annotator)
    client.force_login(staff_admin)

    swap = _project_page_post(
        client, project, [(mine, {"role": Role.REVIEWER}), (theirs, {"role": Role.ADMIN})]
    )
    assert swap.status_code == 302, swap.content.decode()[:2000]
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.role, theirs.role) == (Role.REVIEWER, Role.ADMIN)

    # Back to one admin (the page is for the project's admins), then two admins.
    Membership.objects.filter(pk=mine.pk).update(role=Role.ADMIN)
    both = _project_page_post(
        client, project, [(mine, {"role": Role.REVIEWER}), (theirs, {"DELETE": "on"})]
    )
    assert both.status_code == 200, "demote one admin and remove the other: refused"
    assert "at least one active admin" in both.content.decode()
    assert Membership.objects.filter(pk=theirs.pk, role=Role.ADMIN).exists()
    assert Membership.objects.get(pk=mine.pk).role == Role.ADMIN

    newcomer = make_user("nina")
    data = _project_form(project)
    mine = Membership.objects.get(user=staff_admin)
    data.update({
        "memberships-TOTAL_FORMS": "2", "memberships-INITIAL_FORMS": "1",
        "memberships-0-id": str(mine.pk), "memberships-0-project": str(project.pk),
        "memberships-0-user": str(staff_admin.pk), "memberships-0-role": Role.ADMIN,
        "memberships-1-id": "", "memberships-1-project": str(project.pk),
        "memberships-1-user": str(newcomer.pk), "memberships-1-role": Role.ANNOTATOR,
    })  # fmt: skip
    added = client.post(f"/admin/labelling/project/{project.pk}/change/", data)
    assert added.status_code == 302, added.content.decode()[:2000]
    assert Membership.objects.filter(user=newcomer, project=project, role="annotator").exists()
    event = AuditEvent.objects.get(action="membership.added")
    assert (event.actor, event.details["user"]) == (staff_admin, "nina")
