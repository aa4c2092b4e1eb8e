"""Workers that stopped answering stay on the operations page: "not answering" while their
heartbeat is fresh, "missing" once it is older than OPS_HEARTBEAT_FRESH_SECONDS, gone a day
after their last heartbeat (ops.services.celery_state.silent_workers)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from ops.models import WorkerHeartbeat
from ops.services import celery_state


def _ours(workers: list[dict]) -> list[dict]:
    """This test's workers only: the suite's live Celery worker (session-scoped) writes its
    own heartbeat, committed, whenever it runs."""
    return [w for w in workers if w["hostname"].endswith("@h")]


def _beat(hostname: str, seconds_ago: float) -> None:
    WorkerHeartbeat.objects.create(
        hostname=hostname, last_seen=timezone.now() - timedelta(seconds=seconds_ago)
    )


def test_silent_workers_are_missing_once_their_heartbeat_is_stale(db, settings):
    settings.OPS_HEARTBEAT_FRESH_SECONDS = 30
    _beat("answering@h", 1)
    _beat("quiet@h", 10)
    _beat("dead@h", 45)
    _beat("long-gone@h", 25 * 3600)

    silent = _ours(celery_state.silent_workers(["answering@h"]))

    assert [(w["hostname"], w["state"]) for w in silent] == [
        ("dead@h", "missing"),
        ("quiet@h", "not answering"),
    ]
    ages = {w["hostname"]: w["age_s"] for w in silent}
    assert 44 <= ages["dead@h"] <= 60
    assert 9 <= ages["quiet@h"] <= 25


def test_every_worker_seen_is_silent_when_none_answers(db, settings):
    settings.OPS_HEARTBEAT_FRESH_SECONDS = 5
    _beat("a@h", 10)
    assert [w["state"] for w in _ours(celery_state.silent_workers([]))] == ["missing"]
    assert _ours(celery_state.silent_workers(["a@h"])) == []
