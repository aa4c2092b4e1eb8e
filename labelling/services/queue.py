"""The labelling queue: leasing the next clip, submitting, undo, gold clips, routing.

Invariants, held by the database rather than by this process:
- A clip's `QueueEntry.open_slots` never drops below zero (check constraint), and a slot is
  only ever taken by a compare-and-set update (`open_slots > 0` in the WHERE clause). So
  however many annotators ask at the same moment, a clip is never leased beyond its overlap.
- The candidate is chosen with `SELECT … FOR UPDATE SKIP LOCKED` (PostgreSQL), so concurrent
  requests pick different rows instead of queueing behind one.
- A submit is idempotent by its client-generated id (unique column).
"""

from __future__ import annotations

import functools
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Count, Exists, F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce, Greatest, Least
from django.utils import timezone

from labelling.models import (
    Annotation,
    Clip,
    GoldClip,
    GoldResult,
    Lease,
    Project,
    QueueEntry,
    TaxonomyNode,
)
from labelling.services.annotations import (
    AnnotationRejected,
    core_of,
    forget_node_index,
    record_annotation,
)

# An annotator holds at most this many active leases: the clip on screen and the prefetched
# one. Asking for more hands back the oldest active lease instead of a new clip.
MAX_ACTIVE_LEASES = 2


class LeaseError(Exception):
    """A submit against a lease that cannot take it; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Leased:
    lease: Lease
    clip: Clip
    revising: Annotation | None = None


def wanting_labels(project: Project) -> models.QuerySet[QueueEntry]:
    """The project's entries that still want labels: regular (non-gold) clips with an open
    slot. The one definition of "the unlabelled pool": the lease (both paths; the
    PostgreSQL statement compiles its candidate windows from it), re-prioritising and the
    learner's pool (labelling.services.loop) all start from it. It reads only the project's
    id (the lease caches its compiled SQL by that id)."""
    return QueueEntry.objects.filter(project=project, open_slots__gt=0, is_gold=False)


class _Names:
    """A model's quoted table name (`{Lease}` in a SQL template) and column names
    (`{Lease.annotator}`), read from the model's metadata, for the statements written by
    hand below: a renamed table or column changes them with the model."""

    def __init__(self, model: type[models.Model]) -> None:
        self._model = model

    def __format__(self, spec: str) -> str:
        return connection.ops.quote_name(self._model._meta.db_table)

    def __getattr__(self, field: str) -> str:
        return _column(self._model, field)


def _column(model: type[models.Model], name: str) -> str:
    """The quoted column of a model's field (a foreign key's: its `_id` column)."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field) or not field.column:
        raise LookupError(f"{model.__name__}.{name} has no column of its own")
    return connection.ops.quote_name(field.column)


def _sql(template: str, **parts: str) -> str:
    """Fill a SQL template's `{Model}` and `{Model.field}` names (and any `parts`)."""
    names = {model.__name__: _Names(model) for model in (Annotation, Clip, Lease, QueueEntry)}
    return template.format_map({**names, **parts})


# --- Policies ---------------------------------------------------------------------------


def _stratum(clip: Clip) -> str:
    return f"{clip.speaker_id}|{clip.gender}"


def random_priorities(clips: list[Clip], existing: Counter, rng: random.Random) -> list[float]:
    return [rng.random() for _ in clips]


def stratified_priorities(clips: list[Clip], existing: Counter, rng: random.Random) -> list[float]:
    """Round-robin over speaker and gender strata: the n-th clip of every stratum comes before
    the (n+1)-th of any, so the first labels cover every speaker (random within a round)."""
    seen = Counter(existing)
    priorities = []
    for clip in clips:
        stratum = _stratum(clip)
        priorities.append(seen[stratum] + rng.random())
        seen[stratum] += 1
    return priorities


# Under "active" the learner's rankings write priorities (learner.services.rescoring); clips
# that arrive before the first ranking (or between two) are placed stratified.
POLICIES = {
    "random": random_priorities,
    "stratified": stratified_priorities,
    "active": stratified_priorities,
}


def enqueue_clips(project: Project, clips: list[Clip], *, seed: int | None = None) -> int:
    """Give new clips their queue entries (idempotent: clips already queued are skipped)."""
    queued = set(QueueEntry.objects.filter(clip__in=clips).values_list("clip_id", flat=True))
    fresh = [clip for clip in clips if clip.pk not in queued]
    if not fresh:
        return 0
    existing = Counter(
        dict(
            QueueEntry.objects.filter(project=project)
            .values("stratum")
            .annotate(n=Count("pk"))
            .values_list("stratum", "n")
        )
    )
    policy = POLICIES.get(project.queue_policy, random_priorities)
    rng = random.Random(seed)
    priorities = policy(fresh, existing, rng)
    k = project.annotators_per_clip
    QueueEntry.objects.bulk_create(
        [
            QueueEntry(
                project=project,
                clip=clip,
                priority=priority,
                stratum=_stratum(clip),
                target=k,
                open_slots=k,
            )
            for clip, priority in zip(fresh, priorities, strict=True)
        ],
        ignore_conflicts=True,
    )
    return len(fresh)


def reprioritise(project: Project, *, seed: int | None = None) -> int:
    """Recompute every open entry's priority under the project's current policy (called by
    labelling.services.projects when the policy changes)."""
    entries = list(wanting_labels(project).select_related("clip").order_by("clip_id"))
    policy = POLICIES.get(project.queue_policy, random_priorities)
    priorities = policy([e.clip for e in entries], Counter(), random.Random(seed))
    for entry, priority in zip(entries, priorities, strict=True):
        entry.priority = priority
    QueueEntry.objects.bulk_update(entries, ["priority"], batch_size=2000)
    return len(entries)


def retarget(project: Project, *, old_overlap: int) -> int:
    """Bring every regular entry in line with a changed overlap (annotators_per_clip).

    An entry keeps any extra annotators agreement routing gave it (capped at the project's
    maximum); open slots are recomputed from the current labels and active leases, so a
    lowered overlap closes clips that already have enough labels, and a raised one reopens
    them. Runs in one UPDATE over the project's entries.
    """
    labels = (
        Annotation.objects.filter(clip_id=OuterRef("clip_id"), is_current=True, node__isnull=False)
        .exclude(lease__is_gold=True)
        .order_by()
        .values("clip_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    active = (
        Lease.objects.filter(
            clip_id=OuterRef("clip_id"), status=Lease.Status.ACTIVE, revises__isnull=True,
            is_gold=False,
        )
        .order_by()
        .values("clip_id")
        .annotate(n=Count("pk"))
        .values("n")
    )  # fmt: skip
    k = project.annotators_per_clip
    routed_extra = Greatest(F("target") - old_overlap, Value(0))
    target = Least(Value(k) + routed_extra, Value(max(k, project.max_annotators_per_clip)))
    entries = QueueEntry.objects.filter(project=project, is_gold=False)
    updated = entries.update(target=target)
    entries.update(
        open_slots=Greatest(
            F("target")
            - Coalesce(Subquery(labels), Value(0))
            - Coalesce(Subquery(active), Value(0)),
            Value(0),
        )
    )
    return updated


def apply_priorities(
    project: Project,
    clip_ids: list[int],
    priorities: list[float],
    reasons: list[dict] | None = None,
) -> int:
    """Swap in a new order for a project's queue in one transaction (the queue serves the
    previous order until it commits). Lower priority is served first; entries the ranking
    does not name keep theirs. Returns the number of entries updated.

    One UPDATE … FROM per chunk on every backend (SQLite has it since 3.33).
    """
    if len(clip_ids) != len(priorities) or (reasons is not None and len(reasons) != len(clip_ids)):
        raise ValueError("clip_ids, priorities and reasons must have the same length")
    # Three parameters a row and one for the project, within the backend's limit (SQLite: 999).
    limit = connection.features.max_query_params
    chunk = 5000 if limit is None else min(5000, (limit - 1) // 3)
    json_type = QueueEntry._meta.get_field("reason").db_type(connection)
    updated = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(clip_ids), chunk):
            stop = min(start + chunk, len(clip_ids))
            params: list[int | float | str] = []
            for i in range(start, stop):
                reason = reasons[i] if reasons is not None else {}
                params += [int(clip_ids[i]), float(priorities[i]), json.dumps(reason)]
            # Only placeholders are joined into the SQL; every value is a parameter.
            rows = ", ".join([f"(%s, %s, CAST(%s AS {json_type}))"] * (stop - start))
            cursor.execute(_sql(_SET_PRIORITIES, rows=rows), [*params, project.pk])
            updated += cursor.rowcount
    return updated


# VALUES names its columns column1, column2, … on both backends (SQLite takes no column list
# after the alias). The statement starts with UPDATE: Python's sqlite3 counts the rows of a
# statement only then (a WITH in front reads as no DML, rowcount -1).
_SET_PRIORITIES = """
UPDATE {QueueEntry} SET {QueueEntry.priority} = v.column2, {QueueEntry.reason} = v.column3
FROM (VALUES {rows}) AS v
WHERE {QueueEntry}.{QueueEntry.clip} = v.column1 AND {QueueEntry}.{QueueEntry.project} = %s
"""


# --- Leasing ----------------------------------------------------------------------------


def reclaim_expired(project: Project) -> int:
    """Expire overdue leases and give their slots back (revising leases hold no slot)."""
    now = timezone.now()
    with transaction.atomic():
        expired = list(
            Lease.objects.select_for_update(skip_locked=True)
            .filter(project=project, status=Lease.Status.ACTIVE, expires_at__lt=now)
            .values_list("id", "clip_id", "revises_id", "is_gold")
        )
        if not expired:
            return 0
        Lease.objects.filter(id__in=[row[0] for row in expired]).update(status=Lease.Status.EXPIRED)
        slots = Counter(clip for _, clip, revises, gold in expired if revises is None and not gold)
        for clip_id, n in slots.items():
            QueueEntry.objects.filter(clip_id=clip_id).update(open_slots=F("open_slots") + n)
    return len(expired)


def _new_lease(project: Project, user: AbstractBaseUser, clip_id: int, **extra: object) -> Lease:
    return Lease.objects.create(
        id=uuid.uuid4(),
        project=project,
        clip_id=clip_id,
        annotator=user,
        expires_at=timezone.now() + timedelta(seconds=project.lease_seconds),
        **extra,
    )


def _already_seen(user: AbstractBaseUser):
    """Clips this annotator holds or has done (an expired lease does not count)."""
    return Lease.objects.filter(
        clip=OuterRef("clip_id"),
        annotator=user,
        status__in=[Lease.Status.ACTIVE, Lease.Status.DONE],
    )


def _take_regular(project: Project, user: AbstractBaseUser) -> int | None:
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


def _take_gold(project: Project, user: AbstractBaseUser) -> int | None:
    gold = (
        GoldClip.objects.filter(clip__project=project)
        .exclude(Exists(Lease.objects.filter(clip=OuterRef("clip_id"), annotator=user)))
        .values_list("clip_id", flat=True)
    )
    ids = list(gold[:50])
    return random.choice(ids) if ids else None


def next_clip(
    project: Project, user: AbstractBaseUser, *, rng: random.Random | None = None
) -> Leased | None:
    """Lease the next clip to an annotator, or None when nothing is left for them."""
    if not project.is_active:
        return None
    _reclaim_now_and_then(project)
    rng = rng or random
    if project.gold_rate > 0 and rng.random() < project.gold_rate:
        clip_id = _take_gold(project, user)
        if clip_id is not None:
            return _leased(_new_lease(project, user, clip_id, is_gold=True))
    if connection.vendor == "postgresql":
        leased = _lease_regular_pg(project, user)
    else:
        leased = _lease_regular_portable(project, user)
    return leased or _oldest_if_at_limit(project, user)


def _oldest_if_at_limit(project: Project, user: AbstractBaseUser) -> Leased | None:
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
    return _leased(lease)


def _lease_regular_portable(project: Project, user: AbstractBaseUser) -> Leased | None:
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
        lease = _new_lease(project, user, clip_id)
    except Exception:
        # Give the slot back rather than leak it.
        QueueEntry.objects.filter(clip_id=clip_id).update(open_slots=F("open_slots") + 1)
        raise
    return _leased(lease)


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
    ORDER BY q.{QueueEntry.priority}
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
SELECT leased.created_at, leased.expires_at, {clip_columns}
FROM leased JOIN {Clip} c ON c.{Clip.id} = leased.clip_id
"""
# Wide enough that concurrent annotators (each locking one row) rarely exhaust it.
CANDIDATE_WINDOW = 64
# The Clip fields the lease statement returns: what the annotator's page shows.
_LEASED_CLIP_FIELDS = ("id", "duration_s", "transcript", "language", "channel", "dialect",
                       "rms_dbfs", "recording_id", "start_s", "speaker_id", "gender")  # fmt: skip


def _candidate_window(project_id: int, *, started: bool, windowed: bool) -> tuple[str, dict]:
    """One candidate window of the lease statement, compiled from `wanting_labels`, with
    named placeholders (the statement around it uses named ones)."""
    entries = wanting_labels(Project(pk=project_id))
    if started:
        entries = entries.filter(open_slots__lt=F("target"))
    else:
        entries = entries.filter(open_slots=F("target"))
    window = entries.order_by("priority").values("id")
    if windowed:
        window = window[:CANDIDATE_WINDOW]
    sql, params = window.query.sql_with_params()
    names = [f"{'started' if started else 'fresh'}_{i}" for i in range(len(params))]
    # The compiled SQL holds no literal % (every value is a parameter): only placeholders.
    return sql % tuple(f"%({name})s" for name in names), dict(zip(names, params, strict=True))


@functools.lru_cache(maxsize=1024)
def _lease_statement(project_id: int, *, windowed: bool) -> tuple[str, dict]:
    """The lease statement for a project, with its candidate windows' parameters (compiled
    once per process and project: compiling the windows costs a few tenths of a ms, a
    noticeable share of a lease)."""
    started, started_params = _candidate_window(project_id, started=True, windowed=windowed)
    fresh, fresh_params = _candidate_window(project_id, started=False, windowed=windowed)
    clip_columns = ", ".join(f"c.{_column(Clip, name)}" for name in _LEASED_CLIP_FIELDS)
    sql = _sql(_LEASE_NEXT_PG, started=started, fresh=fresh, clip_columns=clip_columns)
    return sql, {**started_params, **fresh_params}


def _lease_regular_pg(project: Project, user: AbstractBaseUser) -> Leased | None:
    lease_id = uuid.uuid4()
    params = {
        "user": user.pk, "project": project.pk, "lease": str(lease_id),
        "seconds": project.lease_seconds, "max_active": MAX_ACTIVE_LEASES,
        "active": Lease.Status.ACTIVE.value, "done": Lease.Status.DONE.value,
    }  # fmt: skip
    row = None
    with connection.cursor() as cursor:
        for windowed in (True, False):
            sql, window_params = _lease_statement(project.pk, windowed=windowed)
            cursor.execute(sql, {**window_params, **params})
            row = cursor.fetchone()
            if row is not None:
                break
    if row is None:
        return None
    created_at, expires_at, *clip_fields = row
    clip = Clip(project=project, **dict(zip(_LEASED_CLIP_FIELDS, clip_fields, strict=True)))
    lease = Lease(
        id=lease_id, project=project, clip_id=clip.pk, annotator=user,
        status=Lease.Status.ACTIVE, created_at=created_at, expires_at=expires_at,
    )  # fmt: skip
    return Leased(lease=lease, clip=clip)


# Expired leases are reclaimed at most this often per process and project on the hot path;
# the beat task `reclaim_expired_leases` covers idle projects.
RECLAIM_EVERY_S = 2.0
_last_reclaim: dict[int, float] = {}


def _reclaim_now_and_then(project: Project) -> None:
    now = time.monotonic()
    if now - _last_reclaim.get(project.pk, -RECLAIM_EVERY_S) >= RECLAIM_EVERY_S:
        _last_reclaim[project.pk] = now
        reclaim_expired(project)


def _leased(lease: Lease, revising: Annotation | None = None) -> Leased:
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


# --- Submitting -------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    annotation: Annotation
    replayed: bool


def submit(
    project: Project,
    user: AbstractBaseUser,
    *,
    lease_id: uuid.UUID,
    client_id: uuid.UUID,
    node_key: str = "",
    skip_reason: str = "",
    **details: object,
) -> Submitted:
    """Record the annotator's judgement of a leased clip (idempotent by client_id).

    The caller has checked that the user is a member of the project.
    """
    try:
        with transaction.atomic():
            return Submitted(
                _submit_locked(project, user, lease_id, client_id, node_key, skip_reason, details),
                replayed=False,
            )
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


def _submit_locked(project, user, lease_id, client_id, node_key, skip_reason, details):
    row = (
        Lease.objects.select_for_update()
        .filter(pk=lease_id, project=project)
        .values_list("annotator_id", "status", "expires_at", "clip_id", "is_gold", "revises_id")
        .first()
    )
    if row is None or row[0] != user.pk:
        raise LeaseError("lease_foreign", "This lease is not yours: fetch the next clip.")
    _annotator, status, expires_at, clip_id, is_gold, revises_id = row
    if status == Lease.Status.DONE:
        raise LeaseError("lease_used", "This clip was already submitted under this lease.")
    if status == Lease.Status.EXPIRED or expires_at < timezone.now():
        raise LeaseError("lease_expired", "This lease expired and the clip went back to the queue.")
    clip = Clip(pk=clip_id, project=project)
    annotation = record_annotation(
        clip=clip, annotator=user, node_key=node_key, skip_reason=skip_reason,
        client_id=client_id, lease=Lease(pk=lease_id), project=project, membership_checked=True,
        **details,
    )  # fmt: skip
    Lease.objects.filter(pk=lease_id).update(status=Lease.Status.DONE)
    if is_gold:
        _score_gold(annotation)
    elif project.agreement_routing:
        entry = QueueEntry.objects.select_for_update().filter(clip_id=clip_id).first()
        if entry is not None and not entry.is_gold:
            _recount(entry, project)
    else:
        _release_slot_change(clip_id, revises_id, is_label=bool(node_key))
    return annotation


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


def _score_gold(annotation: Annotation) -> None:
    gold = GoldClip.objects.select_related("node").get(clip_id=annotation.clip_id)
    given = annotation.node_id
    GoldResult.objects.create(
        annotation=annotation,
        gold=gold,
        correct_exact=given == gold.node_id,
        correct_core=given is not None and core_of(given) == core_of(gold.node_id),
    )


# --- Undo -------------------------------------------------------------------------------


def undo_last(project: Project, user: AbstractBaseUser) -> Leased | None:
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
        lease = _new_lease(project, user, done.clip_id, revises=annotation, is_gold=done.is_gold)
        # The revised lease stands in for the old one in the "done" history.
        Lease.objects.filter(pk=done.pk).update(status=Lease.Status.EXPIRED)
    return _leased(lease, revising=annotation)


# --- Gold -------------------------------------------------------------------------------


def mark_gold(clip: Clip, node_key: str, user: AbstractBaseUser | None = None) -> GoldClip:
    """Make a clip a gold clip with a known answer; it leaves the regular queue."""
    node = TaxonomyNode.objects.filter(
        version_id=clip.project.taxonomy_version_id, key=node_key
    ).first()
    if node is None:
        raise AnnotationRejected(f'"{node_key}" is not a feeling of this project.')
    with transaction.atomic():
        gold, _ = GoldClip.objects.update_or_create(
            clip=clip, defaults={"node": node, "created_by": user}
        )
        QueueEntry.objects.filter(clip=clip).update(is_gold=True, open_slots=0)
    return gold
