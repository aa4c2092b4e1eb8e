"""A project's labelling progress, for the workspace's overview page (console.views).

Every figure is an aggregate query: no Python loop runs over clips or annotations, only over
groups (days, taxonomy nodes, metadata groups), so the page stays fast on 100,000 clips and
300,000 annotations (bench/console.py times it).

Definitions (docs/console.md says the same to the reader):
- A *label* is a current annotation by a project annotator (`label_source = human`) that
  names a feeling; skips and corpus labels are not labels (a skip gives its slot back).
- A clip's *target* is its queue entry's (the overlap, raised by agreement routing), or the
  project's `annotators_per_clip` for a clip without one.
- *Labelled*: at least target labels; *in progress*: some labels but fewer than the target;
  *unlabelled*: none.
- *Labels still wanted*: the sum over clips of max(target - labels, 0).
- *Labels per day*: current labels by the day they were made (UTC).
- *Burn-down*: at the end of each day, the targets of the clips imported by then less the
  labels made by then (with today's targets, labels beyond a clip's target included; the
  headline figure above caps them per clip).
- *Forecast*: labels still wanted / (labels made in the last 7 days / 7), in days.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Case, Count, DateField, QuerySet, Sum, When
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from labelling.models import Annotation, Clip, LabelSource, Project, QueueEntry, TaxonomyNode

# The clip metadata whose coverage the overview shows (the keys a coverage quota may name).
COVERAGE_KEYS = ("speaker_id", "gender", "age_band", "language", "channel")
RATE_DAYS = 7  # the forecast's window
HISTORY_DAYS = 30  # labels per day and burn-down shown


@dataclass
class Status:
    clips: int = 0
    labelled: int = 0
    in_progress: int = 0
    unlabelled: int = 0
    labels: int = 0
    wanted: int = 0  # labels still wanted (capped per clip)


@dataclass
class Group:
    value: str
    clips: int
    labelled_clips: int  # clips with at least one label


@dataclass
class Forecast:
    rate_per_day: float
    days_left: float | None  # None: no label in the window, no forecast
    finish: dt.date | None


@dataclass
class NodeCount:
    key: str
    name: str
    colour: str
    count: int


@dataclass
class Overview:
    status: Status
    coverage: dict[str, list[Group]]
    per_day: list[tuple[dt.date, int]]
    burn_down: list[tuple[dt.date, int]]
    forecast: Forecast
    rings: list[list[NodeCount]] = field(default_factory=list)
    off_version_labels: int = 0  # labels on nodes of older taxonomy versions


def labels(project: Project) -> QuerySet[Annotation]:
    """The labels every figure counts (see the module docstring)."""
    return Annotation.objects.filter(
        clip__project=project,
        is_current=True,
        label_source=LabelSource.HUMAN,
        node__isnull=False,
    )


def _status_and_coverage(project: Project) -> tuple[Status, dict[str, list[Group]]]:
    """One query: clips grouped by their metadata, with label counts per clip joined once."""
    clip, annotation, entry = (m._meta.db_table for m in (Clip, Annotation, QueueEntry))
    keys = ", ".join(f"c.{key}" for key in COVERAGE_KEYS)
    sql = f"""
        WITH n AS (
            SELECT a.clip_id, COUNT(*) AS n FROM {annotation} a
            JOIN {clip} c0 ON c0.id = a.clip_id
            WHERE c0.project_id = %(project)s AND a.is_current AND a.label_source = %(human)s
              AND a.node_id IS NOT NULL
            GROUP BY a.clip_id
        ), t AS (
            SELECT {keys}, COALESCE(n.n, 0) AS n, COALESCE(q.target, %(overlap)s) AS target
            FROM {clip} c
            LEFT JOIN n ON n.clip_id = c.id
            LEFT JOIN {entry} q ON q.clip_id = c.id
            WHERE c.project_id = %(project)s
        )
        SELECT {", ".join(COVERAGE_KEYS)}, COUNT(*),
            SUM(CASE WHEN n >= target THEN 1 ELSE 0 END),
            SUM(CASE WHEN n > 0 AND n < target THEN 1 ELSE 0 END),
            SUM(CASE WHEN n > 0 THEN 1 ELSE 0 END),
            SUM(n),
            SUM(CASE WHEN target > n THEN target - n ELSE 0 END)
        FROM t GROUP BY {", ".join(COVERAGE_KEYS)}
    """  # noqa: S608 (table names come from the models; values are parameters)
    params: dict[str, int | str] = {
        "project": project.pk,
        "human": LabelSource.HUMAN.value,
        "overlap": project.annotators_per_clip,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    status = Status()
    width = len(COVERAGE_KEYS)
    by_key: list[dict[str, list[int]]] = [{} for _ in COVERAGE_KEYS]
    for row in rows:
        clips, labelled, in_progress, any_label, n, wanted = (int(v or 0) for v in row[width:])
        status.clips += clips
        status.labelled += labelled
        status.in_progress += in_progress
        status.labels += n
        status.wanted += wanted
        for i, value in enumerate(row[:width]):
            counts = by_key[i].setdefault(value or "", [0, 0])
            counts[0] += clips
            counts[1] += any_label
    status.unlabelled = status.clips - status.labelled - status.in_progress
    coverage = {
        key: sorted(
            (Group(value, c, lab) for value, (c, lab) in groups.items()),
            key=lambda g: (-g.clips, g.value),
        )
        for key, groups in zip(COVERAGE_KEYS, by_key, strict=True)
    }
    return status, coverage


def _days(today: dt.date, count: int) -> list[dt.date]:
    return [today - dt.timedelta(days=count - 1 - i) for i in range(count)]


def _day_or_before(start: dt.datetime) -> Case:
    """The UTC day of `created_at` from `start` on; null (one bucket) before it."""
    return Case(
        When(created_at__gte=start, then=TruncDate("created_at", tzinfo=dt.UTC)),
        default=None,
        output_field=DateField(),
    )


def _label_counts(project: Project, start: dt.datetime) -> dict[tuple[int, dt.date | None], int]:
    """Labels by (node, day since `start`, or None before it): one pass over the labels
    gives the ring balance, the labels per day and the burn-down."""
    rows = (
        labels(project)
        .annotate(day=_day_or_before(start))
        .values("node_id", "day")
        .annotate(n=Count("pk"))
        .values_list("node_id", "day", "n")
    )
    return {(node_id, day): int(n) for node_id, day, n in rows}


def _history(
    project: Project, today: dt.date, start: dt.datetime, counts: Mapping[tuple, int]
) -> tuple[list, list]:
    """Labels per day and the burn-down over the last HISTORY_DAYS days."""
    per_day: dict[dt.date | None, int] = {}
    for (_node, day), n in counts.items():
        per_day[day] = per_day.get(day, 0) + n
    targets = dict(
        Clip.objects.filter(project=project)
        .annotate(day=_day_or_before(start))
        .values("day")
        .annotate(t=Sum(Coalesce("queue_entry__target", project.annotators_per_clip)))
        .values_list("day", "t")
    )
    series, burn = [], []
    done, need = per_day.get(None, 0), int(targets.get(None) or 0)
    for day in _days(today, HISTORY_DAYS):
        done += per_day.get(day, 0)
        need += int(targets.get(day) or 0)
        series.append((day, per_day.get(day, 0)))
        burn.append((day, need - done))
    return series, burn


def forecast(wanted: int, labels_in_window: int, today: dt.date) -> Forecast:
    rate = labels_in_window / RATE_DAYS
    if rate <= 0:
        return Forecast(0.0, None, None)
    days = wanted / rate
    return Forecast(rate, days, today + dt.timedelta(days=math.ceil(days)))


def ring_balance(
    project: Project, per_label: Mapping[tuple, int]
) -> tuple[list[list[NodeCount]], int]:
    """Labels per node of the project's taxonomy version, at each ring: a label at a finer
    ring counts for its ancestors too; a coarser label does not count at finer rings."""
    version = project.taxonomy_version
    counts: dict[int, int] = {}
    for (node_id, _day), n in per_label.items():
        counts[node_id] = counts.get(node_id, 0) + n
    if version is None:
        return [], sum(counts.values())
    nodes = list(TaxonomyNode.objects.filter(version=version).order_by("level", "order"))
    by_id = {node.pk: node for node in nodes}
    total: dict[int, int] = dict.fromkeys(by_id, 0)
    off_version = 0
    for node_id, n in counts.items():
        node = by_id.get(node_id)
        if node is None:
            off_version += n
            continue
        while node is not None:
            total[node.pk] += n
            node = by_id.get(node.parent_id) if node.parent_id else None
    depth = max((node.level for node in nodes), default=-1) + 1
    rings = [
        [NodeCount(n.key, n.name, n.colour, total[n.pk]) for n in nodes if n.level == level]
        for level in range(depth)
    ]
    return rings, off_version


def overview(project: Project, now: dt.datetime | None = None) -> Overview:
    today = (now or timezone.now()).astimezone(dt.UTC).date()
    start = dt.datetime.combine(today - dt.timedelta(days=HISTORY_DAYS - 1), dt.time(), dt.UTC)
    status, coverage = _status_and_coverage(project)
    counts = _label_counts(project, start)
    per_day, burn = _history(project, today, start, counts)
    window = sum(n for _day, n in per_day[-RATE_DAYS:])
    rings, off_version = ring_balance(project, counts)
    return Overview(
        status=status,
        coverage=coverage,
        per_day=per_day,
        burn_down=burn,
        forecast=forecast(status.wanted, window, today),
        rings=rings,
        off_version_labels=off_version,
    )


def shares(groups: list[Group]) -> Mapping[str, float]:
    """Each group's share of the labelled clips."""
    total = sum(g.labelled_clips for g in groups)
    return {g.value: (g.labelled_clips / total if total else 0.0) for g in groups}
