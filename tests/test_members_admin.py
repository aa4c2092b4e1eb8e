"""The Membership admin is a door to the same service: deactivating a member there releases
their leases and is recorded; the last active admin stays; the project's inline only shows
whether a member is active."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from labelling.models import Lease, Membership, QueueEntry, Role
from labelling.services import queue
from tests.conftest import make_user
from tests.factories import ClipFactory

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
