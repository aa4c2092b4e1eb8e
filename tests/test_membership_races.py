"""Two admins deactivating each other at the same moment (PostgreSQL row locks): one wins,
the other is refused as the last active admin; the project never loses its last admin."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from labelling.models import Membership, Role
from labelling.services import membership as service
from tests.conftest import make_user, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _waits_on_a_lock(pid: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


def test_two_admins_deactivating_each_other_leave_one_active(project, monkeypatch):
    assert connection.vendor == "postgresql", "this test is about PostgreSQL's row locking"
    ada, adam = make_user("ada"), make_user("adam")
    ada_row = Membership.objects.create(user=ada, project=project, role=Role.ADMIN)
    adam_row = Membership.objects.create(user=adam, project=project, role=Role.ADMIN)
    outcome: dict[str, object] = {}
    second_done = threading.Event()
    pid: list[int] = []

    def second() -> None:  # adam deactivates ada, while ada's deactivation of adam is open
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid.append(cursor.fetchone()[0])
            service.deactivate(Membership.objects.get(pk=ada_row.pk), by=adam)
            outcome["second"] = "deactivated"
        except service.MembershipRefused as exc:
            outcome["second"] = exc.code
        finally:
            second_done.set()
            connections.close_all()

    release = service.queue.release_leases
    thread = threading.Thread(target=second)

    def release_then_let_the_other_in(project_, user):
        # Inside the first deactivation's transaction, after its checks: the second one
        # starts now and must wait for this transaction (or, unlocked, would finish).
        if threading.current_thread() is thread:  # the second one got this far: no lock
            return release(project_, user)
        thread.start()
        wait_until(
            lambda: second_done.is_set() or (bool(pid) and _waits_on_a_lock(pid[0])),
            timeout=10,
            what="the second deactivation to finish or to wait for the first one's locks",
        )
        return release(project_, user)

    monkeypatch.setattr(service.queue, "release_leases", release_then_let_the_other_in)

    first = service.deactivate(adam_row, by=ada)
    thread.join(timeout=30)

    assert first.active_changed
    assert outcome == {"second": "last_admin"}
    active = Membership.objects.filter(project=project, role=Role.ADMIN, is_active=True)
    assert list(active.values_list("user__username", flat=True)) == ["ada"]
