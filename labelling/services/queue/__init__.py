"""The labelling queue: the unlabelled pool and its order, leasing the next clip, submitting,
undo, gold clips, routing.

Invariants, held by the database rather than by this process:
- A clip's `QueueEntry.open_slots` never drops below zero (check constraint), and a slot is
  only ever taken by a compare-and-set update (`open_slots > 0` in the WHERE clause). So
  however many annotators ask at the same moment, a clip is never leased beyond its overlap.
- The candidate is chosen with `SELECT … FOR UPDATE SKIP LOCKED` (PostgreSQL), so concurrent
  requests pick different rows instead of queueing behind one.
- A submit is idempotent by its client-generated id (unique column).

Rooms, imported one way (submit -> lease -> pool, gold, sql; none imports this package):
- `pool`: which entries still want labels (`wanting_labels`), enqueueing, policies,
  priorities and overlap changes.
- `lease`: `next_clip` (one PostgreSQL statement, or the ORM elsewhere), reclaiming expired
  leases and releasing a deactivated member's, a clip's context neighbours.
- `submit`: `submit`, `submit_and_next` (the one-request round trip), `undo_last`,
  recounting a clip's slots, agreement routing.
- `gold`: gold clips, mixed into the queue and scored.
- `sql`: the names in the hand-written statements, read from model metadata.

Callers use the names below (`from labelling.services import queue; queue.next_clip(...)`).
A module-level setting (`lease.RECLAIM_EVERY_S`, `lease.MAX_ACTIVE_LEASES`, `pool.POLICIES`)
is read where it is defined, so it is not re-exported: patch that module, not this one.
"""

from __future__ import annotations

from labelling.services.queue.gold import mark_gold
from labelling.services.queue.lease import (
    Leased,
    context_neighbours,
    next_clip,
    reclaim_expired,
    release_leases,
)
from labelling.services.queue.pool import (
    apply_priorities,
    enqueue_clips,
    random_priorities,
    reprioritise,
    retarget,
    stratified_priorities,
    wanting_labels,
)
from labelling.services.queue.submit import (
    LeaseError,
    Submitted,
    core_agreement,
    handoff_lease_id,
    recount_clip,
    submit,
    submit_and_next,
    undo_last,
)

__all__ = [
    "LeaseError",
    "Leased",
    "Submitted",
    "apply_priorities",
    "context_neighbours",
    "core_agreement",
    "enqueue_clips",
    "handoff_lease_id",
    "mark_gold",
    "next_clip",
    "random_priorities",
    "reclaim_expired",
    "recount_clip",
    "release_leases",
    "reprioritise",
    "retarget",
    "stratified_priorities",
    "submit",
    "submit_and_next",
    "undo_last",
    "wanting_labels",
]
