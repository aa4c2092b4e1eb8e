"""The quality snapshot of a big project is recomputed by the real Celery worker: a page hit
on stale figures sends `review.tasks.refresh_quality` once, the worker stores the new
figures, and the next request reads them as up to date."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from review.models import QualitySnapshot
from review.services import snapshots
from tests.conftest import wait_until
from tests.review_world import build, label


@pytest.mark.celery
def test_the_worker_recomputes_stale_figures(worker, project, reviewer, monkeypatch):
    world = build(project)
    api = APIClient()
    api.force_authenticate(reviewer)
    first = api.get("/api/projects/callcentre/quality/").json()  # small: computed in place
    assert first["stale"] is False
    monkeypatch.setattr(snapshots, "SYNC_LIMIT", 0)  # from now on, as big as can be
    label(project, world.clips[7], world.raters["alma"], "joyful")
    marker = snapshots.latest_annotation_id(project)

    stale = api.get("/api/projects/callcentre/quality/").json()
    assert stale["stale"] is True
    assert stale["refreshing"] is True
    wait_until(
        lambda: QualitySnapshot.objects.get(project=project).last_annotation_id == marker,
        what="the worker to recompute the snapshot",
    )
    fresh = api.get("/api/projects/callcentre/quality/").json()
    assert fresh["stale"] is False
    assert {a["username"]: a["labels"] for a in fresh["annotators"]}["alma"] == 7
