"""Import-batch bookkeeping: counts, completion, and finding batches whose work was lost.

A batch is done once no item is pending (``finish_batch_if_complete``, compare-and-set, which
also removes its staging folder). ``mark_dispatched`` records that its items were handed to
workers; the beat task finds batches never sent (``undispatched_batch_ids``: the broker was
down) or sent without progress since (``stalled_batch_ids``: lost messages) and sends them
again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Exists, Max, OuterRef, Q
from django.utils import timezone

from labelling.models import Clip, ImportBatch, ImportItem
from labelling.services.ingest.records import Status
from labelling.services.storage import remove_staging

__all__ = [
    "BatchCounts",
    "batch_counts",
    "finish_batch_if_complete",
    "mark_dispatched",
    "pending_item_ids",
    "stalled_batch_ids",
    "undispatched_batch_ids",
]


@dataclass(frozen=True)
class BatchCounts:
    total: int
    pending: int
    accepted: int
    duplicate: int
    rejected: int
    clips: int

    @property
    def done(self) -> bool:
        return self.pending == 0


def batch_counts(batch_id: int) -> BatchCounts:
    """Outcomes of the batch's files; an expanded archive is not a file (its members are)."""
    agg = (
        ImportItem.objects.filter(batch_id=batch_id)
        .exclude(status=Status.EXPANDED)  # an expanded archive is not a file outcome
        .aggregate(
            total=Count("pk"),
            pending=Count("pk", filter=Q(status=Status.PENDING)),
            accepted=Count("pk", filter=Q(status=Status.ACCEPTED)),
            duplicate=Count("pk", filter=Q(status=Status.DUPLICATE)),
            rejected=Count("pk", filter=Q(status=Status.REJECTED)),
        )
    )
    clips = Clip.objects.filter(batch_id=batch_id).count()
    return BatchCounts(clips=clips, **agg)


def finish_batch_if_complete(batch_id: int) -> bool:
    """Mark the batch done once no item is pending (compare-and-set: runs once)."""
    if ImportItem.objects.filter(batch_id=batch_id, status=Status.PENDING).exists():
        return False
    updated = ImportBatch.objects.filter(
        pk=batch_id, status__in=[ImportBatch.Status.PENDING, ImportBatch.Status.RUNNING]
    ).update(status=ImportBatch.Status.DONE, finished_at=timezone.now())
    if updated:
        remove_staging(batch_id)
    return True


def pending_item_ids(batch: ImportBatch) -> list[int]:
    return list(batch.items.filter(status=Status.PENDING).values_list("pk", flat=True))


def mark_dispatched(batch_id: int, *, sent: bool = True) -> None:
    """Record that the batch's pending items were handed to workers (or, sent=False, that
    some may not have been: the beat task sends them again)."""
    ImportBatch.objects.filter(pk=batch_id).update(dispatched_at=timezone.now() if sent else None)


def _open_batches_with_pending():
    pending = ImportItem.objects.filter(batch=OuterRef("pk"), status=Status.PENDING)
    return ImportBatch.objects.filter(
        Exists(pending),
        status__in=[ImportBatch.Status.PENDING, ImportBatch.Status.RUNNING],
    )


def undispatched_batch_ids(grace_s: float = 10.0) -> list[int]:
    """Batches with pending items that were never sent (the broker was down), oldest first.

    ``grace_s`` leaves a batch alone while the request that staged it is still sending it.
    """
    cutoff = timezone.now() - timedelta(seconds=grace_s)
    return list(
        _open_batches_with_pending()
        .filter(dispatched_at__isnull=True, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:1000]
    )


def stalled_batch_ids(older_than_s: int) -> list[int]:
    """Sent batches with pending items and no progress for ``older_than_s``: lost messages.

    Progress is the last item outcome; a long batch that keeps finishing items is not stalled.
    The caller re-stamps ``dispatched_at`` when it sends again, so a batch is sent again at
    most once per period.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    return list(
        _open_batches_with_pending()
        .filter(dispatched_at__lt=cutoff)
        .annotate(last_done=Max("items__processed_at"))
        .filter(Q(last_done__isnull=True) | Q(last_done__lt=cutoff))
        .order_by("created_at")
        .values_list("pk", flat=True)[:1000]
    )
