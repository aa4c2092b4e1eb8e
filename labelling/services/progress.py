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
from django.db.models import Count, QuerySet, Sum
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


def _by_day(queryset: QuerySet, value: str | None) -> dict[dt.date, int]:
    total = Count("pk") if value is None else Coalesce(Sum(value), 0)
    rows = (
        queryset.annotate(day=TruncDate("created_at", tzinfo=dt.UTC))
        .values("day")
        .annotate(n=total)
        .values_list("day", "n")
    )
    return {day: int(n) for day, n in rows}


def _days(today: dt.date, count: int) -> list[dt.date]:
    return [today - dt.timedelta(days=count - 1 - i) for i in range(count)]


def _history(project: Project, today: dt.date) -> tuple[list, list]:
    """Labels per day and the burn-down over the last HISTORY_DAYS days."""
    start = dt.datetime.combine(today - dt.timedelta(days=HISTORY_DAYS - 1), dt.time(), dt.UTC)
    made = labels(project)
    clips = Clip.objects.filter(project=project).annotate(
        wanted=Coalesce("queue_entry__target", project.annotators_per_clip)
    )
    before = {
        "labels": made.filter(created_at__lt=start).count(),
        "targets": clips.filter(created_at__lt=start).aggregate(t=Coalesce(Sum("wanted"), 0))["t"],
    }
    per_day = _by_day(made.filter(created_at__gte=start), None)
    targets = _by_day(clips.filter(created_at__gte=start), "wanted")
    series, burn = [], []
    done, need = before["labels"], before["targets"]
    for day in _days(today, HISTORY_DAYS):
        done += per_day.get(day, 0)
        need += targets.get(day, 0)
        series.append((day, per_day.get(day, 0)))
        burn.append((day, need - done))
    return series, burn


def forecast(wanted: int, labels_in_window: int, today: dt.date) -> Forecast:
    rate = labels_in_window / RATE_DAYS
    if rate <= 0:
        return Forecast(0.0, None, None)
    days = wanted / rate
    return Forecast(rate, days, today + dt.timedelta(days=math.ceil(days)))


def ring_balance(project: Project) -> tuple[list[list[NodeCount]], int]:
    """Labels per node of the project's taxonomy version, at each ring: a label at a finer
    ring counts for its ancestors too; a coarser label does not count at finer rings."""
    version = project.taxonomy_version
    per_node = labels(project).values("node_id").annotate(n=Count("pk"))
    counts: dict[int, int] = dict(per_node.values_list("node_id", "n"))
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
    status, coverage = _status_and_coverage(project)
    per_day, burn = _history(project, today)
    window = sum(n for _day, n in per_day[-RATE_DAYS:])
    rings, off_version = ring_balance(project)
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
