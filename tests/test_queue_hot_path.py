"""The hot path's shortcuts answer exactly what the general code answers.

The annotator's round trip skips three general mechanisms (emoloop.rows): DRF's serializer
for a well-formed submit body (`queue_api.well_formed_submit`), the ORM's compiled queries
for the token, the project and role (`emoloop.token_auth`, `access.project_and_role`), and
the ORM's insert of the label (`rows.insert`). Each is checked here against the mechanism it
stands in for.
"""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import signals
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labelling.models import Annotation, Lease, Membership, Role
from labelling.queue_api import SubmitSerializer, well_formed_submit
from labelling.services import access, membership, queue
from labelling.services.annotations import record_annotation
from labelling.services.queue import lease
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
    {**BASE, "node": "mad", "valence": 10**400},
    {**BASE, "node": "mad", "arousal": -(10**400)},
    {**BASE, "node": "mad", "valence": 1e308 * 10},
    {**BASE, "node": "\ud800"},
    {**BASE, "node": "m\udfffad"},
    {**BASE, "node": "wütend"},
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


_JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=90),
    st.sampled_from(["mad", "mad.hurt", " mad", "noise", "high", "", LEASE, CLIENT]),
    st.lists(st.integers(), max_size=2),
)  # fmt: skip
_SUBMIT_KEYS = [
    "lease", "client_id", "node", "skip_reason", "intensity", "unsure", "time_spent_ms",
    "play_count", "heard_to_end", "suggestion_shown", "valence", "arousal", "next", "other",
]  # fmt: skip


@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    extra=st.dictionaries(st.sampled_from(_SUBMIT_KEYS), _JSON_VALUES, max_size=6),
    base=st.sampled_from([{**BASE, "node": "mad"}, {**BASE, "skip_reason": "noise"}, {}]),
)
def test_well_formed_submit_never_disagrees_with_the_serializer(extra, base):
    """Any body: the shortcut either defers (None) or gives the serializer's fields."""
    body = {**base, **extra}
    fast = well_formed_submit(body)
    if fast is not None:
        serializer = SubmitSerializer(data=body)
        assert serializer.is_valid(), (body, serializer.errors)
        assert fast == dict(serializer.validated_data)


def test_bodies_the_serializer_refuses_answer_400_not_500(project, annotator):
    """A lone surrogate in the node and a number too large for a float: 400 from the
    serializer (the shortcut must not take them)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
    path = f"/api/projects/{project.slug}/annotations/"
    for raw in (
        f'{{"lease": "{LEASE}", "client_id": "{CLIENT}", "node": "\\ud800"}}',
        f'{{"lease": "{LEASE}", "client_id": "{CLIENT}", "node": "mad", "valence": 1{"0" * 400}}}',
    ):
        response = client.generic("POST", path, raw, content_type="application/json")
        assert response.status_code == 400, (raw[:80], response.content[:200])


def test_the_pages_bodies_take_the_short_way():
    """Not a test that cannot fail: the shortcut must serve what the page sends."""
    assert well_formed_submit(BODIES[0]) is not None
    assert well_formed_submit(BODIES[1]) is not None
    assert well_formed_submit(BODIES[2]) is not None
    accepted = sum(well_formed_submit(body) is not None for body in BODIES)
    assert 5 <= accepted < len(BODIES)


def test_token_authentication_refuses_as_drf_does(project, annotator):
    """At both token doors: a project-scoped view (scoping.ProjectTokenAuthentication) and
    any other view (emoloop.token_auth.TokenAuthentication)."""
    token = Token.objects.create(user=annotator)

    def call(key: str, scoped: bool):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        if scoped:
            return client.post(f"/api/projects/{project.slug}/next/")
        return client.get("/api/projects/")

    for scoped in (True, False):
        assert call(token.key, scoped).status_code in (200, 204)
        wrong = call("0" * 40, scoped)
        assert wrong.status_code == 401
        assert wrong.json()["detail"] == "Invalid token."
        assert call("a\x00b", scoped).status_code == 401
    annotator.is_active = False
    annotator.save(update_fields=["is_active"])
    for scoped in (True, False):
        inactive = call(token.key, scoped)
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
    """Prepared on a connection's first lease, executed after; a connection this process
    has not seen is asked what it holds; EMOLOOP_PREPARED_STATEMENTS=false (or connections
    not kept between requests) sends the plain statement."""
    queue.enqueue_clips(project, [ClipFactory(project=project) for _ in range(6)], seed=1)
    fresh_connection()
    assert lease_statements(project, annotator) == ["ASK", "PREPARE", "EXECUTE"]
    assert lease_statements(project, annotator) == ["EXECUTE"]
    # Reused, or pooled: it holds the statement already.
    connection.emoloop_prepared = (object(), set())
    assert lease_statements(project, annotator) == ["ASK", "EXECUTE"]
    Lease.objects.filter(annotator=annotator).delete()
    settings.EMOLOOP_PREPARED_STATEMENTS = False
    assert lease_statements(project, annotator) == ["WITH"]
    settings.EMOLOOP_PREPARED_STATEMENTS = True
    monkeypatch_conn_max_age = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 0
    try:
        assert lease_statements(project, annotator) == ["WITH"]
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = monkeypatch_conn_max_age


def test_a_refused_prepared_statement_fails_once_then_recovers(project, annotator):
    """The server no longer holds the statement this process recorded (a pooler swapped the
    connection): that request fails, the record is forgotten and the connection is closed
    at the end of the request; the next lease prepares it again."""
    queue.enqueue_clips(project, [ClipFactory(project=project) for _ in range(4)], seed=1)
    fresh_connection()
    assert lease_statements(project, annotator) == ["ASK", "PREPARE", "EXECUTE"]
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # behind this process's back
    with pytest.raises(DatabaseError), transaction.atomic():
        queue.next_clip(project, annotator)
    assert connection.close_at is not None
    assert connection.close_at <= time.monotonic()
    connection.close_at = None  # (the test's connection is kept: its transaction holds data)
    assert lease_statements(project, annotator) == ["ASK", "PREPARE", "EXECUTE"]


def fresh_connection() -> None:
    """As after a reconnect: the server holds no prepared statement, and this process knows."""
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    connection.emoloop_prepared = None


def lease_statements(project, annotator) -> list[str]:
    """The first words of the statements one lease sends to prepare and run the lease
    statement (ASK: the question of what the connection holds)."""
    Lease.objects.filter(annotator=annotator).delete()  # never at the two-lease limit
    lease.RECLAIM_EVERY_S, saved = 3600.0, lease.RECLAIM_EVERY_S
    lease._last_reclaim[project.pk] = time.monotonic()
    try:
        with CaptureQueriesContext(connection) as ctx:
            assert queue.next_clip(project, annotator) is not None
    finally:
        lease.RECLAIM_EVERY_S = saved
    words = [
        "ASK" if "pg_prepared_statements" in q["sql"] else q["sql"].split()[0]
        for q in ctx.captured_queries
    ]
    return [word for word in words if word in ("ASK", "PREPARE", "EXECUTE", "WITH")]


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
