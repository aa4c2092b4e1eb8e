"""Celery tasks: thin wrappers over labelling.services (ids in, nothing heavy out)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from emoloop.dispatch import BrokerUnavailable, publish, publish_after_commit
from emoloop.storage import StorageUnavailable
from labelling.models import ImportBatch, ImportItem, Project
from labelling.services import ingest, queue

log = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    # Transient: database restarts and lock time-outs, an object store that did not answer.
    autoretry_for=(OperationalError, StorageUnavailable),
    retry_backoff=True,
    max_retries=5,
    time_limit=1800,
    soft_time_limit=1700,
)
def ingest_item(item_id: int) -> str | None:
    item = ingest.process_item(item_id)
    if (
        item is not None
        and ingest.is_archive_item(item)
        and item.status != ImportItem.Status.PENDING
    ):
        # Its members are items of their own now: send them to the workers.
        _send_items(item.batch_id, ingest.child_item_ids(item))
    return item.status if item else None


def _send_items(batch_id: int, item_ids: list[int]) -> None:
    """Publish the expanded members of an archive (from the worker that expanded it).

    On a broker failure the batch is marked unsent, so the beat sends its pending items
    again, and the error propagates (the task fails loudly).
    """
    try:
        for item_id in item_ids:
            publish(ingest_item, item_id)
    except BrokerUnavailable:
        ingest.mark_dispatched(batch_id, sent=False)
        raise


def send_batch(batch_id: int, *, stale_before: datetime | None = None) -> int | None:
    """Publish one task per pending item of a batch and record when; None if not wanted.

    Without `stale_before`: only a batch never sent (dispatched_at null). With it: only one
    sent before that instant (its messages were lost). The batch row is locked while it is
    sent (FOR UPDATE SKIP LOCKED), so a request and the beat never send it both; a failed
    publish raises BrokerUnavailable and writes nothing (the next beat tick tries again).
    The items are committed before this runs, so the workers find them.
    """
    wanted = (
        Q(dispatched_at__isnull=True) if stale_before is None else Q(dispatched_at__lt=stale_before)
    )
    with transaction.atomic():
        batch = (
            ImportBatch.objects.select_for_update(skip_locked=True)
            .filter(wanted, pk=batch_id)
            .first()
        )
        if batch is None:
            return None
        ids = ingest.pending_item_ids(batch)
        for item_id in ids:
            publish(ingest_item, item_id)
        ImportBatch.objects.filter(pk=batch_id).update(dispatched_at=timezone.now())
    return len(ids)


def dispatch_batch(batch: ImportBatch) -> int:
    """Send every pending item of a new batch to the workers; return how many are pending.

    Publishes now, or once the current transaction commits. When the broker is down this
    raises BrokerUnavailable naming the batch (the API answers 503); the batch is saved and
    stays unsent, and `redispatch_stalled_imports` sends it as soon as the broker is back.
    """
    batch_id = batch.pk
    pending = len(ingest.pending_item_ids(batch))

    def send() -> None:
        try:
            send_batch(batch_id)
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"Import #{batch_id} is saved; its files will be sent to the workers as soon "
                f"as the task queue is back. {exc.message}"
            ) from exc
        ingest.finish_batch_if_complete(batch_id)  # nothing to process (all refused at staging)

    publish_after_commit(send)
    return pending


@shared_task(acks_late=True)
def redispatch_stalled_imports() -> int:
    """Beat: send the batches never sent (the broker was down when they were staged), and
    again those whose messages were lost (pending items and no progress for
    EMOLOOP_IMPORT_STALL_SECONDS: a broker restart, a killed worker). Returns items sent.

    A broker still down ends the run with BrokerUnavailable; the next tick tries again.
    """
    sent = 0
    for batch_id in ingest.undispatched_batch_ids():
        sent += send_batch(batch_id) or 0
    stall = settings.EMOLOOP_IMPORT_STALL_SECONDS
    cutoff = timezone.now() - timedelta(seconds=stall)
    for batch_id in ingest.stalled_batch_ids(stall):
        sent += send_batch(batch_id, stale_before=cutoff) or 0
    return sent


class ReclaimFailed(Exception):
    """Some projects' expired leases could not be reclaimed (the others were)."""


@shared_task(acks_late=True)
def reclaim_expired_leases() -> int:
    """Give back the slots of abandoned leases in every active project.

    One project's failure does not hold up the others: it is logged with the project's slug
    and the run goes on; the task then fails naming those projects, so the failure shows.
    """
    reclaimed = 0
    failed: list[str] = []
    for project in Project.objects.filter(is_active=True).order_by("pk"):
        try:
            reclaimed += queue.reclaim_expired(project)
        except Exception:
            log.exception("reclaiming expired leases failed in project %s", project.slug)
            failed.append(project.slug)
    if failed:
        raise ReclaimFailed(
            f"reclaiming expired leases failed in {', '.join(failed)} "
            f"({reclaimed} lease(s) reclaimed in the other projects)"
        )
    return reclaimed
