"""Celery tasks: thin wrappers over labelling.services (ids in, nothing heavy out)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import OperationalError, transaction

from labelling.models import ImportBatch
from labelling.services import ingest


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError,),  # database restarts and lock time-outs are transient
    retry_backoff=True,
    max_retries=5,
    time_limit=1800,
    soft_time_limit=1700,
)
def ingest_item(item_id: int) -> str | None:
    item = ingest.process_item(item_id)
    return item.status if item else None


@shared_task(acks_late=True)
def redispatch_stalled_imports() -> int:
    """Send again the items whose task was lost (a broker restart, a killed worker)."""
    ids = ingest.stalled_item_ids(settings.EMOLOOP_IMPORT_STALL_SECONDS)
    for item_id in ids:
        ingest_item.delay(item_id)
    return len(ids)


@shared_task(acks_late=True)
def reclaim_expired_leases() -> int:
    """Give back the slots of abandoned leases in every active project."""
    from labelling.models import Project
    from labelling.services import queue

    return sum(queue.reclaim_expired(project) for project in Project.objects.filter(is_active=True))


def dispatch_batch(batch: ImportBatch) -> int:
    """Queue every pending item of a batch once the batch's rows are committed."""
    ids = ingest.pending_item_ids(batch)

    def send() -> None:
        for item_id in ids:
            ingest_item.delay(item_id)
        if not ids:
            ingest.finish_batch_if_complete(batch.pk)

    transaction.on_commit(send)
    return len(ids)
