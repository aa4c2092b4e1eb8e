"""The unlabelled pool and its order: which entries still want labels, how new clips are
queued, and how priorities, policies and overlap changes are applied to a project's entries.

Lower priority is served first. A queue policy places new clips (`POLICIES`); under
"active" the learner's rankings reorder the pool through `apply_priorities`.
"""

from __future__ import annotations

import json
import random
from collections import Counter

from django.db import connection, models, transaction
from django.db.models import Count, F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce, Greatest, Least

from labelling.models import Annotation, Clip, LabelSource, Lease, Project, QueueEntry
from labelling.services.queue.sql import render


def wanting_labels(project: Project) -> models.QuerySet[QueueEntry]:
    """The project's entries that still want labels: regular (non-gold) clips with an open
    slot. The one definition of "the unlabelled pool": the lease (both paths; the
    PostgreSQL statement compiles its candidate windows from it), re-prioritising and the
    learner's pool (labelling.services.loop) all start from it. It reads only the project's
    id (the lease compiles it once, with a stand-in id that becomes a parameter)."""
    return QueueEntry.objects.filter(project=project, open_slots__gt=0, is_gold=False)


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
        .filter(label_source=LabelSource.HUMAN)  # imported labels take no slot
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
            cursor.execute(render(_SET_PRIORITIES, rows=rows), [*params, project.pk])
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
