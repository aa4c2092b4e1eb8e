"""The quality snapshot's Celery task, and the one function the pages and the API call to
get figures that are as fresh as is cheap (`fresh_snapshot`)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache

from emoloop.dispatch import BrokerUnavailable, publish
from labelling.models import Project
from review.models import QualitySnapshot
from review.services import snapshots

log = logging.getLogger(__name__)

# One refresh request per project at a time: a page hit while the task runs asks nothing.
REFRESH_LOCK_SECONDS = 300


@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1700)
def refresh_quality(project_id: int) -> None:
    """Recompute a project's quality snapshot (seconds on a big project)."""
    project = Project.objects.filter(pk=project_id).first()
    try:
        if project is not None:
            snapshots.compute(project)
    finally:
        cache.delete(_lock_key(project_id))


def _lock_key(project_id: int) -> str:
    return f"review:refresh-quality:{project_id}"


def fresh_snapshot(
    project: Project, parts: tuple[str, ...] = ("figures",)
) -> tuple[QualitySnapshot | None, snapshots.Freshness]:
    """The project's snapshot, recomputed here when it is missing or stale and the project
    is small (SYNC_LIMIT labels), else the stored one while a task recomputes it.

    A broker that is down is said on the page (`refreshing` False, `stale` True); the
    stored figures are still shown."""
    snapshot, stale = snapshots.current(project, parts)
    refreshing = False
    if stale:
        if snapshots.human_label_count(project) <= snapshots.SYNC_LIMIT:
            snapshot, stale = snapshots.compute(project), False
        elif cache.add(_lock_key(project.pk), 1, REFRESH_LOCK_SECONDS):
            try:
                publish(refresh_quality, project.pk)
                refreshing = True
            except BrokerUnavailable:
                cache.delete(_lock_key(project.pk))
        else:
            refreshing = True
    return snapshot, snapshots.Freshness(
        computed_at=snapshot.computed_at if snapshot else None,
        stale=stale,
        refreshing=refreshing,
        seconds=snapshot.seconds if snapshot else None,
    )
