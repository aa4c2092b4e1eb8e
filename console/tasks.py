"""The overview's background refresh (console.overview): figures older than a minute are
recomputed here while the page keeps showing the previous ones with their time."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache

from console import overview
from emoloop.dispatch import publish
from labelling.models import Project


@shared_task(acks_late=True, time_limit=600, soft_time_limit=570)
def refresh_overview(project_id: int) -> None:
    """Recompute a project's overview figures (about a second on 100,000 clips)."""
    try:
        project = Project.objects.filter(pk=project_id).select_related("taxonomy_version").first()
        if project is not None:
            overview.compute(project)
    finally:
        cache.delete(overview.lock_key(project_id))


def request_refresh(project_id: int) -> None:
    """Queue the refresh; BrokerUnavailable when the task queue is down (the page then keeps
    showing the figures it has, with their time, and asks again on the next load)."""
    publish(refresh_overview, project_id)
