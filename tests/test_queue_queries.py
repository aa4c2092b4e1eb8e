"""Queries per request on the annotator's hot path, pinned: next, submit, and submit with
the next lease (`next: true`), each through the whole stack with token authentication.

The counts are exact, so a change that adds a query to a hot request fails here and must
say why. Expired-lease reclaiming (at most every `lease.RECLAIM_EVERY_S` per process and
project) and the first submit of a taxonomy version (its node index, cached per process)
are kept out of the measured requests: both are amortised over many requests.

Inside the test's transaction each atomic block adds a SAVEPOINT and a RELEASE (two
queries); in production the submit's block is one transaction (BEGIN/COMMIT are not
counted as queries).
"""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labelling.models import Recording
from labelling.services import queue
from labelling.services.queue import lease
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(project, annotator, monkeypatch):
    clips = [ClipFactory(project=project) for _ in range(6)]
    queue.enqueue_clips(project, clips, seed=1)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
    # Reclaiming runs now and then, not on the measured requests.
    monkeypatch.setattr(lease, "RECLAIM_EVERY_S", 3600.0)
    monkeypatch.setitem(lease._last_reclaim, project.pk, time.monotonic())
    # The node index is built by the first submit of the process (then cached).
    warm = client.post(f"/api/projects/{project.slug}/next/").json()
    body = {"lease": warm["lease"]["id"], "client_id": str(uuid.uuid4()), "node": "sad"}
    assert client.post(f"/api/projects/{project.slug}/annotations/", body).status_code == 201
    return client


def _measured(call, *, warm: bool = True):
    """The first word of every query a call sends. `warm=False`: the connection may not have
    served a lease yet, and its once-per-connection queries (what it holds prepared, the
    lease statement's PREPARE: rows.execute_prepared) are left out."""
    with CaptureQueriesContext(connection) as ctx:
        response = call()
    queries = [q["sql"] for q in ctx.captured_queries]
    if not warm:
        queries = [
            text for text in queries
            if "pg_prepared_statements" not in text and not text.startswith("PREPARE")
        ]  # fmt: skip
    sql = [text.split()[0] for text in queries]
    response.wsgi_request.captured = queries
    return response, sql


def test_next_is_two_queries(api, project):
    response, sql = _measured(lambda: api.post(f"/api/projects/{project.slug}/next/"))
    assert response.status_code == 200
    # The token with its user, their membership and its project (labelling.scoping.
    # ProjectTokenAuthentication); the lease statement (prepared on this connection by the
    # fixture's first request: rows.execute_prepared).
    assert sql == ["SELECT", "EXECUTE"], sql


def test_submit_queries(api, project):
    leased = api.post(f"/api/projects/{project.slug}/next/").json()
    body = {"lease": leased["lease"]["id"], "client_id": str(uuid.uuid4()), "node": "mad"}
    response, sql = _measured(
        lambda: api.post(f"/api/projects/{project.slug}/annotations/", body, format="json")
    )
    assert response.status_code == 201
    # Token with membership; [savepoint] close the lease; supersede the annotator's earlier
    # label and insert this one, two statements in one round trip [release].
    assert sql == ["SELECT", "SAVEPOINT", "UPDATE", "UPDATE", "RELEASE"], sql
    assert "INSERT INTO" in response.wsgi_request.captured[3], response.wsgi_request.captured


def test_submit_with_next_queries(api, project):
    leased = api.post(f"/api/projects/{project.slug}/next/").json()
    body = {
        "lease": leased["lease"]["id"], "client_id": str(uuid.uuid4()), "node": "mad",
        "next": True,
    }  # fmt: skip
    response, sql = _measured(
        lambda: api.post(f"/api/projects/{project.slug}/annotations/", body, format="json")
    )
    assert response.status_code == 201
    assert response.json()["next"] is not None
    # The submit's statements, then the lease statement in the same transaction (one
    # commit per label in production).
    assert sql == [
        "SELECT", "SAVEPOINT", "UPDATE", "UPDATE", "EXECUTE", "RELEASE",
    ], sql  # fmt: skip


def test_a_clip_cut_from_a_recording_costs_no_extra_query(project, annotator, monkeypatch):
    """The lease statement reads the context neighbours too (no two queries per lease)."""
    recording = Recording.objects.create(
        project=project, original="r.wav", original_name="r.wav", sha256="0" * 64,
        duration_s=9.0, sample_rate=16000, channels=1,
    )  # fmt: skip
    segments = [
        ClipFactory(project=project, recording=recording, start_s=3.0 * i) for i in range(3)
    ]
    queue.enqueue_clips(project, [segments[1]], seed=1)
    client = APIClient()
    client.force_authenticate(user=annotator)
    monkeypatch.setattr(lease, "RECLAIM_EVERY_S", 3600.0)
    monkeypatch.setitem(lease._last_reclaim, project.pk, time.monotonic())

    response, sql = _measured(
        lambda: client.post(f"/api/projects/{project.slug}/next/"), warm=False
    )

    assert sql == ["SELECT", "EXECUTE"], sql  # membership; the lease statement
    context = response.json()["clip"]["context"]
    assert context == {
        "previous_audio_url": f"/api/clips/{segments[0].pk}/audio/",
        "next_audio_url": f"/api/clips/{segments[2].pk}/audio/",
    }
    assert queue.context_neighbours(segments[1]) == (segments[0].pk, segments[2].pk)


def test_at_the_lease_limit_the_pool_is_not_scanned_again(api, project):
    """An annotator holding two leases (a reloaded page) gets the oldest back after one
    lease statement: no retry over the unbounded windows, a scan of the whole pool."""
    first = api.post(f"/api/projects/{project.slug}/next/").json()
    api.post(f"/api/projects/{project.slug}/next/")

    response, sql = _measured(lambda: api.post(f"/api/projects/{project.slug}/next/"))

    assert response.status_code == 200
    assert response.json()["lease"]["id"] == first["lease"]["id"]
    assert sql.count("EXECUTE") == 1, sql
