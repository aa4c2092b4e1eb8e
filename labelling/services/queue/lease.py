"""Leasing: handing an annotator the next clip, and taking slots back from leases that
expired. Nothing else takes a slot of a clip's overlap.

The regular lease has two paths with the same behaviour (tests/test_queue_sqlite.py runs the
queue's tests on both): on PostgreSQL one statement (`_LEASE_NEXT_PG`, built from model
metadata and from `pool.wanting_labels`) picks the entry with SKIP LOCKED, takes a slot and
creates the lease; elsewhere (SQLite, `make run`) the ORM does the same in a short
transaction with a compare-and-set on `open_slots`.

Tunables (`MAX_ACTIVE_LEASES`, `CANDIDATE_WINDOW`, `RECLAIM_EVERY_S`) are read from this
module when a lease is made: change them here, not through the package's re-exports.
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import connection, models, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from emoloop import rows
from labelling.models import Annotation, Clip, Lease, Project, QueueEntry
from labelling.services.queue.gold import take_gold
from labelling.services.queue.pool import wanting_labels
from labelling.services.queue.sql import column, render

# An annotator holds at most this many active leases: the clip on screen and the prefetched
# one. Asking for more hands back the oldest active lease instead of a new clip.
MAX_ACTIVE_LEASES = 2


@dataclass(frozen=True)
class Leased:
    """A lease handed to an annotator, with its clip (and, under undo, the annotation being
    revised)."""

    lease: Lease
    clip: Clip
    revising: Annotation | None = None
    # The clip's context neighbours (`context_neighbours`) when the lease statement already
    # read them; None: not read yet.
    neighbours: tuple[int | None, int | None] | None = None


def reclaim_expired(project: Project) -> int:
    """Expire overdue leases and give their slots back (revising leases hold no slot)."""
    now = timezone.now()
    with transaction.atomic():
        overdue = Lease.objects.filter(project=project, expires_at__lt=now)
        # SKIP LOCKED: a lease being submitted right now is left to its submit.
        return _expire(overdue.select_for_update(skip_locked=True))


def release_leases(project: Project, annotator: User) -> int:
    """Expire an annotator's active leases in a project now, gold and undo leases included,
    and give their slots back exactly as the expiry reclaim does (labelling.services.
    membership, deactivating a member). Runs in the caller's transaction."""
    mine = Lease.objects.filter(project=project, annotator=annotator)
    # A plain FOR UPDATE (no SKIP LOCKED): a submit holding one of these leases finishes
    # first; the lease is then done and no longer matches, so its slot is not given twice.
    return _expire(mine.select_for_update())


def _expire(leases: models.QuerySet[Lease]) -> int:
    """Mark the active ones of `leases` (a FOR UPDATE queryset: the caller's transaction
    holds them) expired and give one slot back per regular lease; gold and revising (undo)
    leases hold none."""
    expired = list(
        leases.filter(status=Lease.Status.ACTIVE).values_list(
            "id", "clip_id", "revises_id", "is_gold"
        )
    )
    if not expired:
        return 0
    Lease.objects.filter(id__in=[row[0] for row in expired]).update(status=Lease.Status.EXPIRED)
    slots = Counter(clip for _, clip, revises, gold in expired if revises is None and not gold)
    # In clip order, so that two releases touching the same entries lock them alike.
    for clip_id, n in sorted(slots.items()):
        QueueEntry.objects.filter(clip_id=clip_id).update(open_slots=F("open_slots") + n)
    return len(expired)


def new_lease(
    project: Project,
    user: User,
    clip_id: int,
    *,
    lease_id: uuid.UUID | None = None,
    **extra: object,
) -> Lease:
    """Create an active lease on a clip (gold and undo leases too); the caller has taken
    the slot it needs, if any."""
    return Lease.objects.create(
        id=lease_id or uuid.uuid4(),
        project=project,
        clip_id=clip_id,
        annotator=user,
        expires_at=timezone.now() + timedelta(seconds=project.lease_seconds),
        **extra,
    )


def _already_seen(user: User) -> models.QuerySet[Lease]:
    """Clips this annotator holds or has done (an expired lease does not count)."""
    return Lease.objects.filter(
        clip=OuterRef("clip_id"),
        annotator=user,
        status__in=[Lease.Status.ACTIVE, Lease.Status.DONE],
    )


def _take_regular(project: Project, user: User) -> int | None:
    """Take one slot of the best open clip; returns the clip id or None."""
    candidates = (
        wanting_labels(project)
        .exclude(Exists(_already_seen(user)))
        .exclude(
            Exists(
                Annotation.objects.filter(clip=OuterRef("clip_id"), annotator=user, is_current=True)
            )
        )
        .order_by("priority")
    )
    for _attempt in range(5):
        with transaction.atomic():
            picked = candidates.select_for_update(skip_locked=True).values_list("id", "clip_id")[:1]
            row = picked.first()
            if row is None:
                return None
            entry_id, clip_id = row
            # Compare-and-set: only succeeds while a slot is open.
            if QueueEntry.objects.filter(pk=entry_id, open_slots__gt=0).update(
                open_slots=F("open_slots") - 1
            ):
                return clip_id
    return None


def next_clip(
    project: Project,
    user: User,
    *,
    rng: random.Random | None = None,
    lease_id: uuid.UUID | None = None,
    reclaim: bool = True,
) -> Leased | None:
    """Lease the next clip to an annotator, or None when nothing is left for them.

    `lease_id` names the new lease (a submit that hands out the next clip derives it from
    its client_id, so that a retry finds the lease it made; see `submit.submit_and_next`):
    the lease id's uniqueness then refuses a second lease for the same submit. An annotator
    at the lease limit gets their oldest lease back, under its own id.

    `reclaim=False` skips the now-and-then reclaim of expired leases: a submit that leases
    inside its own transaction reclaims before it (`reclaim_now_and_then`), because the
    reclaim locks other clips' queue entries and, taken while the submit holds its own,
    two submits could deadlock.
    """
    if not project.is_active:
        return None
    if reclaim:
        reclaim_now_and_then(project)
    chance = rng.random if rng is not None else random.random
    if project.gold_rate > 0 and chance() < project.gold_rate:
        clip_id = take_gold(project, user)
        if clip_id is not None:
            return load_leased(new_lease(project, user, clip_id, lease_id=lease_id, is_gold=True))
    if connection.vendor == "postgresql":
        leased = _lease_regular_pg(project, user, lease_id or uuid.uuid4())
    else:
        leased = _lease_regular_portable(project, user, lease_id)
    return leased or _oldest_if_at_limit(project, user)


def _oldest_if_at_limit(project: Project, user: User) -> Leased | None:
    """An annotator at the lease limit (page reloaded) gets their oldest lease again."""
    active = list(
        Lease.objects.filter(annotator=user, project=project, status=Lease.Status.ACTIVE).order_by(
            "created_at"
        )[:MAX_ACTIVE_LEASES]
    )
    if len(active) < MAX_ACTIVE_LEASES:
        return None
    lease = active[0]
    lease.expires_at = timezone.now() + timedelta(seconds=project.lease_seconds)
    lease.save(update_fields=["expires_at"])
    return load_leased(lease)


def _lease_regular_portable(
    project: Project, user: User, lease_id: uuid.UUID | None
) -> Leased | None:
    """The ORM path (SQLite for `make run`); PostgreSQL uses `_lease_regular_pg`."""
    if (
        Lease.objects.filter(annotator=user, project=project, status=Lease.Status.ACTIVE).count()
        >= MAX_ACTIVE_LEASES
    ):
        return None
    clip_id = _take_regular(project, user)
    if clip_id is None:
        return None
    try:
        # A savepoint: a refused insert (a lease id already taken) leaves the caller's
        # transaction usable for giving the slot back.
        with transaction.atomic():
            lease = new_lease(project, user, clip_id, lease_id=lease_id)
    except Exception:
        # Give the slot back rather than leak it.
        QueueEntry.objects.filter(clip_id=clip_id).update(open_slots=F("open_slots") + 1)
        raise
    return load_leased(lease)


# One statement: pick the best open entry this annotator has not seen (skipping rows other
# requests hold), take a slot with a guarded decrement, create the lease and return the
# clip. The check constraint on open_slots backs the guard.
#
# Candidates come from two bounded windows of `wanting_labels` in priority order: clips some
# annotators have started (open_slots < target) and untouched clips (open_slots = target),
# each served by its partial index (QueueEntry.Meta). Without the windows, an annotator's own
# half-labelled clips (waiting for a second annotator) pile up at the head of the queue and
# every request would step over all of them. A request that finds nothing in the windows
# falls back to unbounded ones.
_LEASE_NEXT_PG = """
WITH mine AS (
    SELECT count(*) AS n FROM {Lease}
    WHERE {Lease.annotator} = %(user)s AND {Lease.project} = %(project)s
      AND {Lease.status} = %(active)s
), candidates AS (
    ({started}) UNION ALL ({fresh})
), picked AS (
    SELECT q.{QueueEntry.id} FROM {QueueEntry} q JOIN candidates c ON c.id = q.{QueueEntry.id}
    WHERE q.{QueueEntry.open_slots} > 0
      AND (SELECT n FROM mine) < %(max_active)s
      -- Scalar subqueries with LIMIT stay per-row index probes whatever the table
      -- statistics say (NOT EXISTS may be planned as a scan of all of the user's rows).
      AND (SELECT 1 FROM {Lease} l
           WHERE l.{Lease.clip} = q.{QueueEntry.clip} AND l.{Lease.annotator} = %(user)s
             AND l.{Lease.status} IN (%(active)s, %(done)s) LIMIT 1) IS NULL
      AND (SELECT 1 FROM {Annotation} a
           WHERE a.{Annotation.clip} = q.{QueueEntry.clip} AND a.{Annotation.annotator} = %(user)s
             AND a.{Annotation.is_current} LIMIT 1) IS NULL
    -- By the windows' own order (not q's): the planner merges the two index-ordered windows
    -- and stops at the first candidate that passes, instead of testing all of them.
    ORDER BY c.priority
    LIMIT 1
    FOR UPDATE OF q SKIP LOCKED
), taken AS (
    UPDATE {QueueEntry} q SET {QueueEntry.open_slots} = q.{QueueEntry.open_slots} - 1
    FROM picked WHERE q.{QueueEntry.id} = picked.{QueueEntry.id} AND q.{QueueEntry.open_slots} > 0
    RETURNING q.{QueueEntry.clip} AS clip_id
), leased AS (
    INSERT INTO {Lease}
        ({Lease.id}, {Lease.project}, {Lease.clip}, {Lease.annotator}, {Lease.status},
         {Lease.is_gold}, {Lease.revises}, {Lease.created_at}, {Lease.expires_at})
    SELECT %(lease)s, %(project)s, taken.clip_id, %(user)s, %(active)s, false, NULL, now(),
           now() + %(seconds)s * interval '1 second'
    FROM taken
    RETURNING {Lease.clip} AS clip_id, {Lease.created_at} AS created_at,
              {Lease.expires_at} AS expires_at
)
-- Always one row: the annotator's active leases before this one (so that a caller at the
-- limit does not retry with the unbounded windows, a scan of the whole pool), then the new
-- lease and its clip, or NULLs.
SELECT (SELECT n FROM mine), got.*
FROM (SELECT 1) AS one LEFT JOIN (
    SELECT leased.created_at, leased.expires_at, {clip_columns},
        -- The context neighbours (as `context_neighbours` reads them), saving the page's
        -- answer two queries for a clip cut from a recording; NULL for any other clip.
        (SELECT p.{Clip.id} FROM {Clip} p
         WHERE p.{Clip.recording} = c.{Clip.recording} AND p.{Clip.start_s} < c.{Clip.start_s}
         ORDER BY p.{Clip.start_s} DESC LIMIT 1),
        (SELECT n.{Clip.id} FROM {Clip} n
         WHERE n.{Clip.recording} = c.{Clip.recording} AND n.{Clip.start_s} > c.{Clip.start_s}
         ORDER BY n.{Clip.start_s} LIMIT 1)
    FROM leased JOIN {Clip} c ON c.{Clip.id} = leased.clip_id
) AS got ON true
"""
# Wide enough that concurrent annotators (each locking one row) rarely exhaust it.
CANDIDATE_WINDOW = 64
# The Clip fields the lease statement returns: what the annotator's page shows.
_LEASED_CLIP_FIELDS = ("id", "duration_s", "transcript", "language", "channel", "dialect",
                       "rms_dbfs", "recording_id", "start_s", "speaker_id", "gender")  # fmt: skip


# Stands for the project's id while the windows are compiled: the statement's text is the
# same for every project, which takes the id as its `%(project)s` parameter.
_ANY_PROJECT = -7_000_001


def _candidate_window(*, started: bool, windowed: bool) -> tuple[str, dict]:
    """One candidate window of the lease statement, compiled from `wanting_labels`, with
    named placeholders (the statement around it uses named ones)."""
    entries = wanting_labels(Project(pk=_ANY_PROJECT))
    if started:
        entries = entries.filter(open_slots__lt=F("target"))
    else:
        entries = entries.filter(open_slots=F("target"))
    window = entries.order_by("priority").values("id", "priority")
    if windowed:
        window = window[:CANDIDATE_WINDOW]
    sql, params = window.query.sql_with_params()
    # The compiled SQL holds no literal % (every value is a parameter): only placeholders.
    # The project's id becomes the statement's `%(project)s`; the other whole numbers (the
    # open-slot floor) are written into it: the statement is prepared (rows.
    # execute_prepared), and a generic plan for `open_slots > $n` could not use the partial
    # indexes whose predicate is `open_slots > 0`.
    names = [f"{'started' if started else 'fresh'}_{i}" for i in range(len(params))]
    parts, named = [], {}
    for name, value in zip(names, params, strict=True):
        if type(value) is int and value == _ANY_PROJECT:
            parts.append("%(project)s")
        elif type(value) is int:
            parts.append(str(value))
        else:
            parts.append(f"%({name})s")
            named[name] = value
    if "%(project)s" not in parts:
        raise AssertionError("wanting_labels no longer filters by project")
    return sql % tuple(parts), named


@functools.cache
def _lease_statement(*, windowed: bool) -> tuple[str, dict]:
    """The lease statement, with its candidate windows' parameters (compiled once per
    process: compiling the windows costs a few tenths of a ms, a noticeable share of a
    lease)."""
    started, started_params = _candidate_window(started=True, windowed=windowed)
    fresh, fresh_params = _candidate_window(started=False, windowed=windowed)
    clip_columns = ", ".join(f"c.{column(Clip, name)}" for name in _LEASED_CLIP_FIELDS)
    sql = render(_LEASE_NEXT_PG, started=started, fresh=fresh, clip_columns=clip_columns)
    return sql, {**started_params, **fresh_params}


def _lease_regular_pg(project: Project, user: User, lease_id: uuid.UUID) -> Leased | None:
    params: dict[str, int | str] = {
        "user": user.pk, "project": project.pk, "lease": str(lease_id),
        "seconds": project.lease_seconds, "max_active": MAX_ACTIVE_LEASES,
        "active": Lease.Status.ACTIVE.value, "done": Lease.Status.DONE.value,
    }  # fmt: skip
    with connection.cursor() as cursor:
        for windowed in (True, False):
            sql, window_params = _lease_statement(windowed=windowed)
            rows.execute_prepared(cursor, sql, {**window_params, **params})
            active, created_at, *rest = cursor.fetchone()
            if created_at is not None or active >= MAX_ACTIVE_LEASES:
                break
    if created_at is None:
        return None
    expires_at, *clip_fields, before, after = rest
    clip = Clip(project=project, **dict(zip(_LEASED_CLIP_FIELDS, clip_fields, strict=True)))
    lease = Lease(
        id=lease_id, project=project, clip_id=clip.pk, annotator=user,
        status=Lease.Status.ACTIVE, created_at=created_at, expires_at=expires_at,
    )  # fmt: skip
    return Leased(lease=lease, clip=clip, neighbours=(before, after))


# Expired leases are reclaimed at most this often per process and project on the hot path;
# the beat task `reclaim_expired_leases` covers idle projects.
RECLAIM_EVERY_S = 2.0
_last_reclaim: dict[int, float] = {}


def reclaim_now_and_then(project: Project) -> None:
    """Reclaim the project's expired leases, at most every RECLAIM_EVERY_S per process."""
    now = time.monotonic()
    if now - _last_reclaim.get(project.pk, -RECLAIM_EVERY_S) >= RECLAIM_EVERY_S:
        _last_reclaim[project.pk] = now
        reclaim_expired(project)


def load_leased(lease: Lease, revising: Annotation | None = None) -> Leased:
    """A lease with its clip loaded as the annotator's page shows it (also for undo)."""
    clip = Clip.objects.select_related("recording").defer("peaks").get(pk=lease.clip_id)
    return Leased(lease=lease, clip=clip, revising=revising)


def context_neighbours(clip: Clip) -> tuple[int | None, int | None]:
    """The utterances just before and after a clip cut from a longer recording."""
    if clip.recording_id is None or clip.start_s is None:
        return None, None
    siblings = Clip.objects.filter(recording_id=clip.recording_id)
    before = (
        siblings.filter(start_s__lt=clip.start_s)
        .order_by("-start_s")
        .values_list("pk", flat=True)
        .first()
    )
    after = (
        siblings.filter(start_s__gt=clip.start_s)
        .order_by("start_s")
        .values_list("pk", flat=True)
        .first()
    )
    return before, after
