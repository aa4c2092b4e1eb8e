"""The overview's figures as HTML, computed at most once a minute per project and refreshed
in the background after that (the page waits for them only the first time).

Rendering a big wheel's charts costs as much as the queries, so the HTML is what is kept
(in Django's cache, Redis in production): `html` answers from it; figures older than
FRESH_SECONDS are still served, with the time they were computed, while a Celery task
(console.tasks.refresh_overview) recomputes them (one request per project at a time asks
for that). After KEEP_SECONDS (a week: old figures, shown with their time, beat a second's
wait) the figures are dropped and the next page load computes them, as the very first does.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.template.loader import render_to_string
from django.utils import timezone

from console import charts
from labelling.models import Project
from labelling.services import progress
from learner.services import project_settings

log = logging.getLogger(__name__)

FRESH_SECONDS = 60
KEEP_SECONDS = 7 * 24 * 3600
REFRESH_LOCK_SECONDS = 300


def key(project_id: int) -> str:
    return f"console:overview:{project_id}"


def lock_key(project_id: int) -> str:
    return f"console:overview-refresh:{project_id}"


def compute(project: Project) -> tuple[str, dt.datetime]:
    """Compute, draw and keep the figures; (html, when)."""
    figures = progress.overview(project)
    drawn = render_to_string("console/_overview_figures.html", context(project, figures))
    found = (drawn, timezone.now())
    cache.set(key(project.pk), found, KEEP_SECONDS)
    return found


def forget(project: Project) -> None:
    cache.delete(key(project.pk))


def html(
    project: Project, request_refresh: Callable[[int], None] | None = None
) -> tuple[str, dt.datetime]:
    """The figures' HTML and when they were computed (see the module docstring).
    `request_refresh(project_id)` queues the background refresh (console.tasks)."""
    found = cache.get(key(project.pk))
    if found is None:
        return compute(project)
    age = (timezone.now() - found[1]).total_seconds()
    if (
        request_refresh is not None
        and age > FRESH_SECONDS
        and cache.add(lock_key(project.pk), 1, REFRESH_LOCK_SECONDS)
    ):
        try:
            request_refresh(project.pk)
        except Exception:
            # The figures shown say how old they are; the next page load asks again.
            cache.delete(lock_key(project.pk))
            log.warning("could not queue the overview refresh of %s", project.slug, exc_info=True)
    return found


def _quotas(project: Project) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    row = project_settings.settings_for(project)
    out: dict[str, dict[str, tuple[float | None, float | None]]] = {}
    for key in progress.COVERAGE_KEYS:
        low = (row.coverage_min_share or {}).get(key) or {}
        high = (row.coverage_max_share or {}).get(key) or {}
        if low or high:
            out[key] = {g: (low.get(g), high.get(g)) for g in set(low) | set(high)}
    return out


COVERAGE_LABELS = {
    "speaker_id": "Speaker",
    "gender": "Gender",
    "age_band": "Age band",
    "language": "Language",
    "channel": "Channel",
}
COVERAGE_ROWS = 15


def _coverage(figures: progress.Overview, quotas: dict) -> list[dict[str, Any]]:
    out = []
    for key in progress.COVERAGE_KEYS:
        groups = figures.coverage.get(key, [])
        share = progress.shares(groups)
        wanted = quotas.get(key, {})
        rows = []
        for g in groups[:COVERAGE_ROWS]:
            low, high = wanted.get(g.value, (None, None))
            actual = share.get(g.value, 0.0)
            state = ""
            if low is not None and actual < low:
                state = "below"
            elif high is not None and actual > high:
                state = "above"
            rows.append({"group": g, "share": actual, "min": low, "max": high, "state": state})
        missing = [g for g in wanted if g not in {grp.value for grp in groups}]
        out.append(
            {
                "key": key,
                "label": COVERAGE_LABELS[key],
                "rows": rows,
                "more": max(len(groups) - COVERAGE_ROWS, 0),
                "missing": missing,
            }
        )
    return out


def context(project: Project, figures: progress.Overview) -> dict[str, Any]:
    per_day = charts.bar_chart(
        [(d.strftime("%m-%d"), n, "") for d, n in figures.per_day],
        x_label="day (UTC)",
        y_label="labels",
        label_every=5,
    )
    burn = charts.line_chart(
        [("Labels still wanted", "line-a", list(enumerate(n for _d, n in figures.burn_down)))],
        x_label="days ago (0 = today)",
        y_label="labels wanted",
    )
    n = len(figures.burn_down)
    burn.xticks = [(x, str(n - 1 - int(float(label)))) for x, label in burn.xticks]
    rings = [
        {
            "ring": i,
            # A wheel's outer rings have dozens of feelings: name every k-th bar (all of them
            # are named in the table and in each bar's tooltip).
            "chart": charts.bar_chart(
                [(c.name, c.count, c.colour) for c in ring],
                x_label="",
                y_label="labels",
                label_every=max(1, -(-len(ring) // 12)),
            ),
            "nodes": ring,
            "total": sum(c.count for c in ring),
        }
        for i, ring in enumerate(figures.rings)
    ]
    return {
        "f": figures,
        "per_day_chart": per_day,
        "burn_chart": burn,
        "rings": rings,
        "coverage": _coverage(figures, _quotas(project)),
        "rate_days": progress.RATE_DAYS,
    }
