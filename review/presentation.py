"""Turning snapshot figures into rows for the pages: formatted text beside the raw value
(the browser sorts on the raw value), the drift sparkline as SVG points, and the few live
queries the pages add (recent labels, the labels of the queue's clips)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from django.utils.safestring import SafeString, mark_safe

from labelling.models import Annotation, Clip, GoldClip, LabelSource, Project, TaxonomyNode
from review.models import Adjudication, ReviewItem

REASONS = ("gold_failed", "disagreement", "unsure")
REASON_LABELS = {
    "gold_failed": "failed gold",
    "disagreement": "disagreement",
    "unsure": "marked unsure",
}
RECENT = 20
PATH_SEP = " \u203a "  # a right-pointing angle quote between the names of a node path


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def seconds(ms: float | None) -> str:
    return "—" if ms is None else f"{ms / 1000:.1f} s"


def _cell(text: str, value: float | int | str | None) -> dict[str, Any]:
    return {"text": text, "value": "" if value is None else str(value)}


def _cells_html(cells: list[dict[str, Any]]) -> SafeString:
    """The row's number cells as HTML: 50 rows x 10 cells through the template engine (or
    format_html) cost more than the rest of the request (bench/console.py). Safe without
    escaping: every value and text is a number formatted here (pct, num, seconds)."""
    return mark_safe(  # noqa: S308 - numbers only, see above
        "".join(f'<td class="num" data-value="{c["value"]}">{c["text"]}</td>' for c in cells)
    )


def annotator_row(entry: Mapping[str, Any]) -> dict[str, Any]:
    gold_core = entry["gold_core"] or {}
    gold_exact = entry["gold_exact"] or {}
    consensus = entry["consensus"] or {}
    cells = [
        _cell(str(entry["labels"]), entry["labels"]),
        _cell(seconds(entry["median_ms"]), entry["median_ms"]),
        _cell(seconds(entry["p90_ms"]), entry["p90_ms"]),
        _cell(pct(entry["skip_rate"]), entry["skip_rate"]),
        _cell(pct(entry["unsure_rate"]), entry["unsure_rate"]),
        _cell(
            f"{pct(gold_core.get('accuracy'))} ({gold_core.get('items', 0)})",
            gold_core.get("accuracy"),
        ),
        _cell(
            f"{pct(gold_exact.get('accuracy'))} ({gold_exact.get('items', 0)})",
            gold_exact.get("accuracy"),
        ),
        _cell(
            f"{pct(consensus.get('share'))} ({consensus.get('items', 0)})",
            consensus.get("share"),
        ),
        _cell(num(consensus.get("kappa")), consensus.get("kappa")),
        _cell(num(entry["pairwise_kappa"]), entry["pairwise_kappa"]),
    ]
    return {
        "id": entry["id"],
        "username": entry["username"],
        "cells": cells,
        "cells_html": _cells_html(cells),
        "sparkline": sparkline([w["consensus_share"] for w in entry["weeks"]]),
    }


def weeks(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [
        {
            "week": w["week"],
            "labels": str(w["labels"]),
            "gold": pct(w["gold_core_accuracy"]),
            "consensus": pct(w["consensus_share"]),
        }
        for w in entries
    ]


def sparkline(values: list[float | None], width: int = 96, height: int = 24) -> dict[str, Any]:
    """SVG polyline points for shares in [0, 1], one per week (weeks without a figure are
    left out of the line); empty points when fewer than two weeks have one."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(known) < 2:
        return {"points": "", "width": width, "height": height}
    step = width / max(len(values) - 1, 1)
    points = " ".join(f"{i * step:.1f},{(1 - v) * (height - 2) + 1:.1f}" for i, v in known)
    return {"points": points, "width": width, "height": height}


def co_raters(found: Mapping[str, Any], user_id: int) -> list[dict[str, Any]]:
    matrix = found.get("matrix", {"raters": [], "cells": []})
    raters = matrix["raters"]
    index = next((i for i, r in enumerate(raters) if r["id"] == user_id), None)
    if index is None:
        return []
    out = []
    for other, cell in zip(raters, matrix["cells"][index], strict=True):
        if cell is None:
            continue
        out.append(
            {
                "username": other["username"],
                "id": other["id"],
                "shared": cell["shared"],
                "agree": pct(cell["agree"] / cell["shared"]),
                "kappa": num(cell["kappa"]),
            }
        )
    return out


def recent_labels(project: Project, user_id: int) -> list[Annotation]:
    return list(
        Annotation.objects.filter(
            clip__project=project,
            annotator_id=user_id,
            is_current=True,
            label_source=LabelSource.HUMAN,
        )
        .select_related("node")
        .order_by("-pk")[:RECENT]
    )


def rings(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    names = {0: "core", 1: "secondary", 2: "tertiary"}
    return [
        {
            "ring": r["ring"],
            "name": names.get(r["ring"], str(r["ring"])),
            "alpha": num(r["alpha"], 3),
            "ratings": r["ratings"],
            "pairable": r["pairable_clips"],
            "per_class": [
                {"label": c["label"], "alpha": num(c["alpha"], 3), "value": c["alpha"]}
                for c in r["per_class"]
            ],
        }
        for r in entries
    ]


def matrix(found: Mapping[str, Any]) -> dict[str, Any]:
    """The rater x rater table's rows, each as escaped HTML (2,500 cells for 50 raters are
    too many for the template engine within the page's time budget)."""
    rows = []
    for rater, line in zip(found["raters"], found["cells"], strict=True):
        html = mark_safe("".join(_matrix_cell(c) for c in line))  # noqa: S308 - numbers only
        rows.append({"rater": rater, "html": html})
    return {"raters": found["raters"], "rows": rows}


def _matrix_cell(cell: Mapping[str, Any] | None) -> str:
    """One cell as HTML; numbers and a fixed class name only, so nothing to escape."""
    if cell is None:
        return '<td class="k-empty"></td>'
    share = pct(cell["agree"] / cell["shared"])
    shared = int(cell["shared"])
    return (
        f'<td class="{_shade(cell["kappa"])}" title="{share} agree on {shared} clips">'
        f"{num(cell['kappa'])}<small>{share} · {shared}</small></td>"
    )


def _shade(kappa: float | None) -> str:
    """A CSS class by Landis and Koch's bands, so the colour is in review.css."""
    if kappa is None:
        return "k-none"
    if kappa < 0.2:
        return "k-slight"
    if kappa < 0.4:
        return "k-fair"
    if kappa < 0.6:
        return "k-moderate"
    if kappa < 0.8:
        return "k-substantial"
    return "k-perfect"


def pending(project: Project, reason: str) -> QuerySet[ReviewItem]:
    """The review queue of the last snapshot less the clips adjudicated since, optionally
    narrowed to one reason, in clip order (paged in SQL)."""
    adjudicated = Adjudication.objects.filter(clip_id=OuterRef("clip_id"), is_current=True)
    items = ReviewItem.objects.filter(project=project).exclude(Exists(adjudicated))
    if reason:
        items = items.filter(**{reason: True})
    return items.order_by("clip_id")


def queue_items(entries: list[ReviewItem]) -> list[dict[str, Any]]:
    """The page's clips with their labels (one query for the page)."""
    ids = [entry.clip_id for entry in entries]
    labels: dict[int, list[str]] = defaultdict(list)
    rows = (
        Annotation.objects.filter(clip_id__in=ids, is_current=True, label_source=LabelSource.HUMAN)
        .order_by("pk")
        .values_list("clip_id", "node__key", "skip_reason", "unsure")
    )
    for clip, key, skip, unsure in rows:
        labels[clip].append(f"{key or 'skip:' + skip}{' (unsure)' if unsure else ''}")
    return [
        {
            "clip": entry.clip_id,
            "reasons": [REASON_LABELS[r] for r in entry.reasons()],
            "labels": labels.get(entry.clip_id, []),
        }
        for entry in entries
    ]


def path_of(node: TaxonomyNode | None) -> str:
    names = []
    while node is not None:
        names.append(node.name)
        node = node.parent
    return PATH_SEP.join(reversed(names))


def label_rows(annotations: Iterable[Annotation], gold_key: str = "") -> list[dict[str, Any]]:
    """The clip's labels for the side-by-side table; `gold` says whether a label's core
    matches the gold answer's (None when the clip is not gold, or for a skip), the rule of
    the gold accuracy figures."""
    gold_core = gold_key.split(".")[0] if gold_key else ""
    rows = []
    for a in annotations:
        rows.append(
            {
                "annotator": a.annotator.get_username(),
                "annotator_id": a.annotator_id,
                "key": a.node.key if a.node else "",
                "path": path_of(a.node) if a.node else f"skipped: {a.get_skip_reason_display()}",
                "unsure": a.unsure,
                "intensity": a.get_intensity_display() if a.intensity else "—",
                "time": seconds(a.time_spent_ms),
                "created_at": a.created_at,
                "gold": (a.node.key.split(".")[0] == gold_core) if gold_core and a.node else None,
            }
        )
    return rows


def gold_of(clip: Clip) -> tuple[str, str]:
    """The clip's gold answer as (node path, node key), or ("", "")."""
    gold = GoldClip.objects.filter(clip=clip).select_related("node__parent__parent").first()
    return (path_of(gold.node), gold.node.key) if gold else ("", "")


def node_options(nodes: list[TaxonomyNode]) -> list[dict[str, str]]:
    """The active version's nodes in wheel order (each core, then its descendants)."""
    children: dict[int | None, list[TaxonomyNode]] = defaultdict(list)
    for node in nodes:
        children[node.parent_id].append(node)
    out: list[dict[str, str]] = []

    def walk(parent: int | None, trail: list[str]) -> None:
        for node in children.get(parent, []):
            out.append({"key": node.key, "label": PATH_SEP.join([*trail, node.name])})
            walk(node.pk, [*trail, node.name])

    walk(None, [])
    return out
