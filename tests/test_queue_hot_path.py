"""The hot path's shortcuts answer exactly what the general code answers.

The annotator's round trip skips three general mechanisms (emoloop.rows): DRF's serializer
for a well-formed submit body (`queue_api.well_formed_submit`), the ORM's compiled queries
for the token, the project and role (`emoloop.token_auth`, `access.project_and_role`), and
the ORM's insert of the label (`rows.insert`). Each is checked here against the mechanism it
stands in for.
"""

from __future__ import annotations

import uuid

import pytest
from django.db.models import signals
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labelling.models import Annotation, Lease, Membership, Role
from labelling.queue_api import SubmitSerializer, well_formed_submit
from labelling.services import access, membership, queue
from labelling.services.annotations import record_annotation
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db

LEASE, CLIENT = str(uuid.uuid4()), str(uuid.uuid4())
BASE = {"lease": LEASE, "client_id": CLIENT}

# Bodies the page sends, and bodies at and past every edge of every field.
BODIES: list[object] = [
    {**BASE, "node": "mad"},
    {**BASE, "node": "mad.hurt", "next": True, "unsure": True, "intensity": "high",
     "time_spent_ms": 1520, "play_count": 2, "heard_to_end": True, "suggestion_shown": False,
     "valence": -0.5, "arousal": 1},
    {**BASE, "skip_reason": "noise"},
    {**BASE, "skip_reason": "noise", "node": ""},
    {**BASE, "node": "mad", "skip_reason": ""},
    {**BASE, "node": "mad", "skip_reason": "noise"},
    {**BASE},
    {**BASE, "node": ""},
    {**BASE, "node": " mad "},
    {**BASE, "node": "m" * 80},
    {**BASE, "node": "m" * 81},
    {**BASE, "node": "ma\x00d"},
    {**BASE, "node": 5},
    {**BASE, "node": None},
    {**BASE, "skip_reason": "bored"},
    {**BASE, "skip_reason": ["noise"]},
    {**BASE, "node": "mad", "intensity": "extreme"},
    {**BASE, "node": "mad", "intensity": ""},
    {**BASE, "node": "mad", "unsure": "true"},
    {**BASE, "node": "mad", "unsure": 1},
    {**BASE, "node": "mad", "next": None},
    {**BASE, "node": "mad", "time_spent_ms": -1},
    {**BASE, "node": "mad", "time_spent_ms": 24 * 3600 * 1000},
    {**BASE, "node": "mad", "time_spent_ms": 24 * 3600 * 1000 + 1},
    {**BASE, "node": "mad", "time_spent_ms": 12.0},
    {**BASE, "node": "mad", "time_spent_ms": "12"},
    {**BASE, "node": "mad", "time_spent_ms": True},
    {**BASE, "node": "mad", "play_count": 10_000},
    {**BASE, "node": "mad", "play_count": 10_001},
    {**BASE, "node": "mad", "valence": None, "arousal": 0},
    {**BASE, "node": "mad", "valence": 1.0000001},
    {**BASE, "node": "mad", "valence": -1},
    {**BASE, "node": "mad", "valence": float("nan")},
    {**BASE, "node": "mad", "valence": float("inf")},
    {**BASE, "node": "mad", "valence": "0.5"},
    {**BASE, "node": "mad", "valence": False},
    {**BASE, "node": "mad", "extra": 1},
    {**BASE, "node": "mad", "csrfmiddlewaretoken": "x"},
    {"lease": LEASE.replace("-", ""), "client_id": CLIENT, "node": "mad"},
    {"lease": LEASE.upper(), "client_id": CLIENT, "node": "mad"},
    {"lease": "not-a-uuid-but-thirty-six-characters", "client_id": CLIENT, "node": "mad"},
    {"lease": LEASE, "node": "mad"},
    {"lease": None, "client_id": CLIENT, "node": "mad"},
    [BASE],
    "lease",
    None,
]  # fmt: skip


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_well_formed_submit_gives_what_the_serializer_gives(body):
    fast = well_formed_submit(body)
    serializer = SubmitSerializer(data=body)
    if fast is None:
        return  # the serializer answers this body (tests/test_api_annotations.py)
    assert serializer.is_valid(), (body, serializer.errors)
    assert fast == dict(serializer.validated_data)
    assert all(type(fast[key]) is type(value) for key, value in serializer.validated_data.items())


def test_the_pages_bodies_take_the_short_way():
    """Not a test that cannot fail: the shortcut must serve what the page sends."""
    assert well_formed_submit(BODIES[0]) is not None
    assert well_formed_submit(BODIES[1]) is not None
    assert well_formed_submit(BODIES[2]) is not None
    accepted = sum(well_formed_submit(body) is not None for body in BODIES)
    assert 5 <= accepted < len(BODIES)


def test_token_authentication_refuses_as_drf_does(project, annotator):
    token = Token.objects.create(user=annotator)
    path = f"/api/projects/{project.slug}/next/"

    def call(key: str):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client.post(path)

    assert call(token.key).status_code in (200, 204)
    wrong = call("0" * 40)
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "Invalid token."
    assert call("a\x00b").status_code == 401
    annotator.is_active = False
    annotator.save(update_fields=["is_active"])
    inactive = call(token.key)
    assert inactive.status_code == 401
    assert inactive.json()["detail"] == "User inactive or deleted."


def test_project_and_role_matches_the_orm(
    project, other_project, annotator, reviewer, outsider, superuser
):
    """The hand-written lookup (no `related`) and the ORM's (with it) agree for every
    kind of caller, deactivated members included."""

    def both(user, slug):
        fast = access.project_and_role(user, slug)
        orm = access.project_and_role(user, slug, related=("taxonomy_version",))
        return fast, orm

    for user, slug in [
        (annotator, project.slug), (reviewer, project.slug), (outsider, project.slug),
        (outsider, other_project.slug), (superuser, other_project.slug),
        (annotator, "no-such-project"),
    ]:  # fmt: skip
        fast, orm = both(user, slug)
        assert (fast is None) == (orm is None), (user, slug)
        if fast is not None:
            assert fast[1] == orm[1]
            assert fast[0].pk == orm[0].pk
            for field in type(fast[0])._meta.concrete_fields:
                assert getattr(fast[0], field.attname) == getattr(orm[0], field.attname)
    assert both(annotator, project.slug)[0][1] == Role.ANNOTATOR
    membership.deactivate(Membership.objects.get(user=annotator, project=project), by=superuser)
    assert both(annotator, project.slug) == (None, None)


def test_a_label_insert_with_save_receivers_takes_the_orms_path(project, annotator):
    """`rows.insert` skips save signals, so a model that has receivers is saved by the ORM
    (none has today: this keeps the shortcut safe if one is added)."""
    seen: list[Annotation] = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    clip = ClipFactory(project=project)
    queue.enqueue_clips(project, [clip], seed=1)
    signals.post_save.connect(receiver, sender=Annotation, weak=False)
    try:
        first = record_annotation(clip=clip, annotator=annotator, node_key="mad")
        second = record_annotation(clip=clip, annotator=annotator, node_key="sad")
    finally:
        signals.post_save.disconnect(receiver, sender=Annotation)
    assert seen == [first, second]
    third = record_annotation(clip=clip, annotator=annotator, node_key="joyful")
    assert len(seen) == 2
    rows = list(
        Annotation.objects.filter(clip=clip, annotator=annotator)
        .order_by("pk")
        .values_list("pk", "node__key", "is_current")
    )
    assert rows == [(first.pk, "mad", False), (second.pk, "sad", False), (third.pk, "joyful", True)]
    stored = Annotation.objects.get(pk=third.pk)
    assert (stored.created_at, stored.label_source, stored.lease_id) == (
        third.created_at, third.label_source, None,
    )  # fmt: skip


def test_the_lease_statement_is_prepared_once_per_connection(project, annotator, settings):
    """Prepared on the connection's first lease, executed after; a new connection prepares
    again; EMOLOOP_PREPARED_STATEMENTS=false sends the plain statement."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    queue.enqueue_clips(project, [ClipFactory(project=project) for _ in range(4)], seed=1)

    def lease_statements() -> list[str]:
        with CaptureQueriesContext(connection) as ctx:
            assert queue.next_clip(project, annotator) is not None
        words = [q["sql"].split()[0] for q in ctx.captured_queries]
        return [word for word in words if word in ("PREPARE", "EXECUTE", "WITH")]

    assert lease_statements() == ["PREPARE", "EXECUTE"]
    assert lease_statements() == ["EXECUTE"]
    # A connection this process has not seen (reused, or pooled) is asked what it holds.
    connection.emoloop_prepared = (object(), set())
    assert lease_statements() == ["EXECUTE"]
    # A new connection holds none.
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    connection.emoloop_prepared = (object(), set())
    assert lease_statements() == ["PREPARE", "EXECUTE"]
    settings.EMOLOOP_PREPARED_STATEMENTS = False
    Lease.objects.filter(annotator=annotator).delete()
    assert lease_statements() == ["WITH"]


@pytest.mark.parametrize("path", ["next", "undo"])
def test_the_token_path_answers_every_caller_as_the_access_layer_does(
    path, project, other_project, annotator, reviewer, outsider, superuser
):
    """With a token, a project-scoped view takes the caller's role from the authentication
    query (scoping.ProjectTokenAuthentication); with a session, from project_by_slug. Both
    doors give every kind of caller the same answer."""
    queue.enqueue_clips(project, [ClipFactory(project=project) for _ in range(3)], seed=1)
    deactivated = Membership.objects.get(user=reviewer, project=project)

    def by_token(user, slug: str) -> int:
        client = APIClient()
        key = Token.objects.get_or_create(user=user)[0].key
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client.post(f"/api/projects/{slug}/{path}/").status_code

    def by_session(user, slug: str) -> int:
        client = APIClient(enforce_csrf_checks=False)
        client.force_login(user)
        return client.post(f"/api/projects/{slug}/{path}/").status_code

    callers = [
        (annotator, project.slug), (outsider, project.slug), (outsider, other_project.slug),
        (superuser, project.slug), (superuser, "no-such-project"),
        (annotator, "no-such-project"), (annotator, other_project.slug),
    ]  # fmt: skip
    answers = [(by_token(user, slug), by_session(user, slug)) for user, slug in callers]
    assert all(token == session for token, session in answers), answers
    assert [token for token, _ in answers] == [
        200 if path == "next" else 204, 404, 204,  # the outsider's own project: nothing queued
        200 if path == "next" else 204, 404, 404, 404,
    ]  # fmt: skip
    membership.deactivate(deactivated, by=superuser)
    assert by_token(reviewer, project.slug) == by_session(reviewer, project.slug) == 404
