"""Submitting: recording an annotator's judgement under a lease, undoing the last one, and
keeping a clip's open slots in line with its labels (agreement routing included).

A submit is idempotent by its client-generated id (a unique column): a retried request
gets the recorded annotation back. Slot changes are made relative to the locked row, never
recomputed from a snapshot that a concurrent lease could have moved.
"""

from __future__ import annotations

import functools
import random
import uuid
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from labelling.models import Annotation, Clip, LabelSource, Lease, Project, QueueEntry
from labelling.services.annotations import core_of, forget_node_index, record_annotation
from labelling.services.queue.gold import score_gold
from labelling.services.queue.lease import (
    Leased,
    load_leased,
    new_lease,
    next_clip,
    reclaim_now_and_then,
)
from labelling.services.queue.sql import render


class LeaseError(Exception):
    """A submit against a lease that cannot take it; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Submitted:
    """The recorded annotation; `replayed` when a retried submit found it already there."""

    annotation: Annotation
    replayed: bool
    # The next clip leased in the same transaction (`submit_and_next`), if it asked.
    handed_out: Leased | None = None


def submit(
    project: Project,
    user: User,
    *,
    lease_id: uuid.UUID,
    client_id: uuid.UUID,
    node_key: str = "",
    skip_reason: str = "",
    **details: Any,
) -> Submitted:
    """Record the annotator's judgement of a leased clip (idempotent by client_id).

    The caller has checked that the user is a member of the project.
    """
    return _submit(project, user, lease_id, client_id, node_key, skip_reason, details)


def _submit(
    project: Project,
    user: User,
    lease_id: uuid.UUID,
    client_id: uuid.UUID,
    node_key: str,
    skip_reason: str,
    details: dict[str, Any],
    hand_out: uuid.UUID | None = None,
    rng: random.Random | None = None,
) -> Submitted:
    try:
        with transaction.atomic():
            annotation = _submit_locked(
                project, user, lease_id, client_id, node_key, skip_reason, details
            )
            # The next lease commits with the label: one transaction (one commit) per label.
            handed = (
                next_clip(project, user, rng=rng, lease_id=hand_out, reclaim=False)
                if hand_out is not None
                else None
            )
            return Submitted(annotation, replayed=False, handed_out=handed)
    except IntegrityError:
        # The client_id is unique: a retried request, or a double click racing itself.
        replay = Annotation.objects.filter(client_id=client_id).first()
        if replay is None:
            # Not a replay: perhaps a node id cached before an in-place edit of the taxonomy.
            if project.taxonomy_version_id:
                forget_node_index(project.taxonomy_version_id)
            raise
        if replay.annotator_id != user.pk:
            raise LeaseError(
                "client_id_taken", "This submission id belongs to someone else."
            ) from None
        return Submitted(replay, replayed=True)
    except LeaseError as exc:
        # A retry of a submit that already went through finds its lease used: answer with
        # the recorded annotation, not an error.
        if exc.code == "lease_used":
            replay = Annotation.objects.filter(client_id=client_id, annotator=user).first()
            if replay is not None:
                return Submitted(replay, replayed=True)
        raise


# The next lease a submit hands out is named after the submit's client_id (uuid5 in this
# namespace), so a retried submit finds the lease it made instead of taking a second one.
_HANDOFF_NAMESPACE = uuid.UUID("5f0f8a34-4c1e-4f0b-9a8e-2b1c7d3e6a91")


def handoff_lease_id(client_id: uuid.UUID) -> uuid.UUID:
    """The id of the lease that the submit `client_id` hands out with its answer."""
    return uuid.uuid5(_HANDOFF_NAMESPACE, str(client_id))


def submit_and_next(
    project: Project,
    user: User,
    *,
    lease_id: uuid.UUID,
    client_id: uuid.UUID,
    node_key: str = "",
    skip_reason: str = "",
    rng: random.Random | None = None,
    **details: Any,
) -> tuple[Submitted, Leased | None]:
    """`submit`, then lease the annotator's next clip: the annotator's round trip in one
    request. Idempotent as a pair: a retry answers the recorded annotation and the lease the
    first attempt handed out (found by its id, `handoff_lease_id(client_id)`), never a
    second lease. The lease is handed out as it is now: a retry long after the first
    attempt may find it submitted or expired, and the page then asks for another.

    The lease is taken in the submit's transaction, after the label is recorded (so the
    lease statement sees the submitted lease closed and the clip's slot as the submit left
    it), and commits with it: the label and its handed-out lease exist together or not at
    all, and a label costs one commit. A retry finds both (or, if the first attempt went
    without `next`, leases now, under the same derived id).
    """
    handoff = handoff_lease_id(client_id)
    # Before the submit's transaction, not inside it (see next_clip's `reclaim`).
    reclaim_now_and_then(project)
    done = _submit(project, user, lease_id, client_id, node_key, skip_reason, details, handoff, rng)
    if not done.replayed:
        return done, done.handed_out
    if Lease.objects.filter(pk=handoff).exists():
        # The first attempt handed a lease out: the same one again while it can be used.
        return done, _handed_out(project, user, handoff)
    # Inside a caller's transaction (tests) a refused insert must not abort it: a savepoint.
    guard = transaction.atomic() if connection.in_atomic_block else nullcontext()
    try:
        with guard:
            return done, next_clip(project, user, rng=rng, lease_id=handoff)
    except IntegrityError:
        # A concurrent retry of the same submit took the lease first: answer with it.
        if not Lease.objects.filter(pk=handoff, project=project, annotator=user).exists():
            raise LeaseError(
                "client_id_taken", "This submission id belongs to someone else."
            ) from None
        return done, _handed_out(project, user, handoff)


def _handed_out(project: Project, user: User, lease_id: uuid.UUID) -> Leased | None:
    """The lease a first attempt handed out, while the annotator can still use it (active and
    not expired); None otherwise, and the page asks for another clip."""
    lease = Lease.objects.filter(
        pk=lease_id,
        project=project,
        annotator=user,
        status=Lease.Status.ACTIVE,
        expires_at__gt=timezone.now(),
    ).first()
    return load_leased(lease) if lease is not None else None


def _submit_locked(
    project: Project,
    user: User,
    lease_id: uuid.UUID,
    client_id: uuid.UUID,
    node_key: str,
    skip_reason: str,
    details: dict[str, Any],
) -> Annotation:
    """The submit inside its transaction: close the lease (one statement that locks, checks
    and marks it done), record, adjust slots. A failure later in the transaction rolls the
    lease back to active with everything else."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _close_lease_sql(),
            {
                "lease": Lease._meta.pk.get_db_prep_value(lease_id, connection),
                "project": project.pk,
                "user": user.pk,
                "now": connection.ops.adapt_datetimefield_value(now),
                "active": Lease.Status.ACTIVE.value,
                "done": Lease.Status.DONE.value,
            },
        )
        row = cursor.fetchone()
    if row is None:
        raise _refusal(project, user, lease_id)
    clip_id, is_gold, revises_id = row
    clip = Clip(pk=clip_id, project=project)
    annotation = record_annotation(
        clip=clip, annotator=user, node_key=node_key, skip_reason=skip_reason,
        client_id=client_id, lease=Lease(pk=lease_id), project=project, membership_checked=True,
        **details,
    )  # fmt: skip
    if is_gold:
        score_gold(annotation)
    elif project.agreement_routing:
        entry = QueueEntry.objects.select_for_update().filter(clip_id=clip_id).first()
        if entry is not None and not entry.is_gold:
            _recount(entry, project)
    else:
        _release_slot_change(clip_id, revises_id, is_label=bool(node_key))
    return annotation


# Closing the submitted lease: only the caller's own active, unexpired lease matches, and the
# UPDATE takes its row lock (as SELECT … FOR UPDATE did, so a concurrent reclaim, which skips
# locked rows, leaves it to this submit). Replaces a locking read plus an update.
_CLOSE_LEASE = """
UPDATE {Lease} SET {Lease.status} = %(done)s
WHERE {Lease.id} = %(lease)s AND {Lease.project} = %(project)s
  AND {Lease.annotator} = %(user)s AND {Lease.status} = %(active)s
  AND {Lease.expires_at} >= %(now)s
RETURNING {Lease.clip}, {Lease.is_gold}, {Lease.revises}
"""


@functools.cache
def _close_lease_sql() -> str:
    return render(_CLOSE_LEASE)


def _refusal(project: Project, user: User, lease_id: uuid.UUID) -> LeaseError:
    """Why a lease could not be closed (the rare path: read it again to say which)."""
    row = (
        Lease.objects.filter(pk=lease_id, project=project)
        .values_list("annotator_id", "status")
        .first()
    )
    if row is None or row[0] != user.pk:
        return LeaseError("lease_foreign", "This lease is not yours: fetch the next clip.")
    if row[1] == Lease.Status.DONE:
        return LeaseError("lease_used", "This clip was already submitted under this lease.")
    return LeaseError("lease_expired", "This lease expired and the clip went back to the queue.")


def _release_slot_change(clip_id: int, revises_id: int | None, *, is_label: bool) -> None:
    """Adjust the clip's open slots for what this submit changed, relative to the row as it
    is now (never recomputed from a snapshot, which could undo a concurrent lease).

    A label under a fresh lease turns its slot from leased into labelled: no change. A skip
    gives the slot back. A revision (undo) changes the count only when it turns a label
    into a skip (+1) or a skip into a label (-1, refused if the clip filled up meanwhile).
    """
    if revises_id is None:
        delta = 0 if is_label else 1
    else:
        was_label = Annotation.objects.filter(pk=revises_id, node__isnull=False).exists()
        delta = int(was_label) - int(is_label)
    if delta == 0:
        return
    try:
        QueueEntry.objects.filter(clip_id=clip_id, is_gold=False).update(
            open_slots=F("open_slots") + delta
        )
    except IntegrityError:  # the check constraint: the clip would go past its overlap
        # The transaction is aborted; raising rolls all of this submit back.
        raise LeaseError("clip_full", "This clip already has all the labels it needs.") from None


def recount_clip(clip: Clip) -> None:
    """Bring a clip's queue entry in line with its labels (never fails: a clip labelled
    beyond its target is just full). For maintenance and test set-up that recorded labels
    without a lease; the API writes labels only through `submit`."""
    with transaction.atomic():
        entry = QueueEntry.objects.select_for_update().filter(clip=clip).first()
        if entry is not None and not entry.is_gold:
            _recount(entry, clip.project, clamp=True)


def _recount(entry: QueueEntry, project: Project, *, clamp: bool = False) -> None:
    """Recompute a locked entry's open slots from the facts; route on disagreement."""
    labels = list(
        Annotation.objects.filter(clip_id=entry.clip_id, is_current=True, node__isnull=False)
        .filter(label_source=LabelSource.HUMAN)  # imported labels take no slot
        .exclude(lease__is_gold=True)
        .values_list("node_id", flat=True)
    )
    active = Lease.objects.filter(
        clip_id=entry.clip_id, status=Lease.Status.ACTIVE, revises__isnull=True, is_gold=False
    ).count()
    target = entry.target
    if (
        project.agreement_routing
        and len(labels) >= target
        and target < project.max_annotators_per_clip
        and core_agreement(labels) < project.agreement_target
    ):
        target += 1
    open_slots = target - len(labels) - active
    if open_slots < 0 and clamp:
        open_slots = 0
    if open_slots < 0:
        raise LeaseError("clip_full", "This clip already has all the labels it needs.")
    QueueEntry.objects.filter(pk=entry.pk).update(target=target, open_slots=open_slots)


def core_agreement(node_ids: list[int]) -> float:
    """Share of labels agreeing with the most common core feeling (1.0 for one label)."""
    if not node_ids:
        return 1.0
    cores = Counter(core_of(node_id) for node_id in node_ids)
    return cores.most_common(1)[0][1] / len(node_ids)


def undo_last(project: Project, user: User) -> Leased | None:
    """Lease the annotator's most recently submitted clip back to them for revision."""
    with transaction.atomic():
        done = (
            Lease.objects.select_for_update()
            .filter(project=project, annotator=user, status=Lease.Status.DONE)
            .exclude(
                Exists(
                    Lease.objects.filter(
                        annotator=user, status=Lease.Status.ACTIVE, revises__lease=OuterRef("pk")
                    )
                )
            )
            .order_by("-created_at")
            .first()
        )
        if done is None:
            return None
        annotation = (
            Annotation.objects.filter(clip_id=done.clip_id, annotator=user, is_current=True)
            .order_by("-pk")
            .first()
        )
        if annotation is None:
            return None
        lease = new_lease(project, user, done.clip_id, revises=annotation, is_gold=done.is_gold)
        # The revised lease stands in for the old one in the "done" history.
        Lease.objects.filter(pk=done.pk).update(status=Lease.Status.EXPIRED)
    return load_leased(lease, revising=annotation)
