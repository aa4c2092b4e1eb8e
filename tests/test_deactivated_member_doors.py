"""A deactivated member is a stranger at every door: the whole access table
(tests/test_access_matrix.py) replayed for the annotator and the project admin of project A
after each was deactivated (labelling.services.membership), expecting what a principal with
no role in A gets: 404 on A's objects, A's markers in no successful body, no work. The
Django admin for a deactivated staff admin is checked at the end."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest
from django.db import transaction
from django.test import override_settings

from labelling.models import Lease, Membership
from labelling.services import membership as membership_service
from tests import access_fixtures as fx
from tests import test_access_matrix as matrix

pytestmark = pytest.mark.django_db

DEACTIVATED = ("annotator", "admin")  # anna-annotator and ada-admin, of A only


def _roles_without_a() -> dict[str, dict]:
    return {p: {k: r for k, r in fx.ROLES[p].items() if k != "A"} for p in DEACTIVATED}


def _cases() -> Iterator[matrix.Case]:
    with mock.patch.dict(fx.ROLES, _roles_without_a()):
        for row in matrix.ACCESS_TABLE:
            for target in row.targets:
                for principal in DEACTIVATED:
                    yield matrix.Case(
                        row, target, principal, matrix.expected(row, target, principal)
                    )


CASES = tuple(_cases())


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[fx.World]:
    """The matrix's world with anna and ada deactivated in A (by sara, the staff admin)."""
    media = tmp_path_factory.mktemp("deactivated-media")
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=str(media)):
        outer = transaction.atomic()
        outer.__enter__()
        try:
            built = fx.build_world()
            built.objects["media_root"] = media
            by = built.user("staff_admin")
            for principal in DEACTIVATED:
                row = Membership.objects.get(user=built.user(principal), project__slug=fx.SLUG_A)
                assert membership_service.deactivate(row, by=by).active_changed
            yield built
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def media_root(world, settings):
    settings.MEDIA_ROOT = str(world.objects["media_root"])


@pytest.fixture(autouse=True)
def without_a(monkeypatch):
    """The matrix's checks read the principals' roles from fx.ROLES: A's are gone."""
    for principal, roles in _roles_without_a().items():
        monkeypatch.setitem(fx.ROLES, principal, roles)


def test_the_annotators_leases_were_released(world: fx.World) -> None:
    statuses = set(
        Lease.objects.filter(annotator=world.user("annotator")).values_list("status", flat=True)
    )
    assert statuses == {"expired"}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_deactivated_member_is_a_stranger(case: matrix.Case, world: fx.World) -> None:
    response = matrix.request(case, world)
    content = matrix.body_bytes(response)
    is_text = any(t in response.get("Content-Type", "") for t in ("json", "html", "text"))
    text = content.decode("utf-8", "replace") if is_text else ""
    data = matrix.json_of(response, content)
    matrix.check_outcome(case, response, data, text)
    if case.row.scan and 200 <= response.status_code < 300:
        matrix.check_non_member_reads(case, text)
    if case.row.check:
        matrix.CHECKS[case.row.check](case, response, data, world, content)


def test_a_deactivated_staff_admin_sees_nothing_of_the_project_in_the_admin(
    world: fx.World, client
) -> None:
    sara = world.user("staff_admin")
    Membership.objects.filter(user=world.user("admin"), project__slug=fx.SLUG_A).update(
        is_active=True
    )
    row = Membership.objects.get(user=sara, project__slug=fx.SLUG_A)
    membership_service.deactivate(row, by=world.user("admin"))
    client.force_login(sara)

    index = client.get("/admin/")
    clips = client.get("/admin/labelling/clip/")
    project = client.get(f"/admin/labelling/project/{world.projects['A'].pk}/change/")

    assert index.status_code == 200
    assert "labelling/clip" not in index.content.decode(), "no project left to administer"
    assert clips.status_code == 403
    assert project.status_code in (302, 403, 404)
