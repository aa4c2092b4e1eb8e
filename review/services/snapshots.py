"""Computing, storing and reading a project's quality snapshot (review.models)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from labelling.models import Annotation, GoldClip, LabelSource, Project
from labelling.services.loop import node_keys_in_active_version
from review.models import QualitySnapshot, ReviewItem
from review.services import quality

# Below this many current human annotations a page computes a missing or stale snapshot
# itself (well under a second); above it, a Celery task does, and the page shows the last
# one with its age.
SYNC_LIMIT = 5_000


def latest_annotation_id(project: Project) -> int:
    """The newest annotation of the project (any label, skip or supersession): a change
    marker. Walks the primary key backwards, so it is one index probe on a busy project."""
    found = (
        Annotation.objects.filter(clip__project=project)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    return found or 0


def human_label_rows(project: Project) -> list[quality.LabelRow]:
    """The project's current human annotations, mapped onto the active taxonomy version
    (a label whose feeling an update dropped is left out)."""
    keys = node_keys_in_active_version(project)
    rows = (
        Annotation.objects.filter(
            clip__project=project, is_current=True, label_source=LabelSource.HUMAN
        )
        .order_by("pk")
        .values_list(
            "clip_id",
            "annotator_id",
            "node_id",
            "skip_reason",
            "unsure",
            "time_spent_ms",
            "created_at",
        )
        .iterator(chunk_size=20_000)
    )
    out = []
    for clip, rater, node, skip, unsure, time_ms, created in rows:
        key = keys.get(node) if node is not None else None
        if node is not None and key is None:
            continue
        out.append(quality.LabelRow(clip, rater, key, skip, unsure, time_ms, created))
    return out


def gold_answers(project: Project) -> dict[int, str]:
    keys = node_keys_in_active_version(project)
    answers = GoldClip.objects.filter(clip__project=project).values_list("clip_id", "node_id")
    return {clip: key for clip, node in answers if (key := keys.get(node)) is not None}


def compute(project: Project) -> QualitySnapshot:
    """Compute the figures now and store them as the project's snapshot."""
    started = time.monotonic()
    marker = latest_annotation_id(project)
    computed_at = timezone.now()
    rows = human_label_rows(project)
    gold = gold_answers(project)
    raters = {row.rater for row in rows}
    usernames = dict(get_user_model().objects.filter(pk__in=raters).values_list("pk", "username"))
    labels = quality.LabelSet(rows)
    figures = {
        "annotators": quality.annotator_figures(labels, gold, usernames),
        "labels": sum(1 for row in rows if row.key is not None),
        "clips": len({row.clip for row in rows}),
    }
    agreement = quality.agreement_figures(labels, usernames)
    queue = quality.review_queue(labels, gold, project.agreement_target)
    with transaction.atomic():
        snapshot, _ = QualitySnapshot.objects.update_or_create(
            project=project,
            defaults={
                "computed_at": computed_at,
                "last_annotation_id": marker,
                "seconds": time.monotonic() - started,
                "figures": figures,
                "agreement": agreement,
            },
        )
        ReviewItem.objects.filter(project=project).delete()
        ReviewItem.objects.bulk_create(
            (
                ReviewItem(
                    project=project,
                    clip_id=clip,
                    gold_failed="gold_failed" in reasons,
                    disagreement="disagreement" in reasons,
                    unsure="unsure" in reasons,
                )
                for clip, reasons in queue
            ),
            batch_size=5_000,
        )
    return snapshot


def human_label_count(project: Project) -> int:
    return Annotation.objects.filter(
        clip__project=project, is_current=True, label_source=LabelSource.HUMAN
    ).count()


@dataclass(frozen=True)
class Freshness:
    """What a page says about its figures: when computed, and whether labels changed since
    (`stale`: a newer annotation exists; `refreshing`: a task was asked to recompute)."""

    computed_at: object
    stale: bool
    refreshing: bool
    seconds: float | None


PARTS = ("figures", "agreement")


def current(
    project: Project, parts: tuple[str, ...] = ("figures",)
) -> tuple[QualitySnapshot | None, bool]:
    """The stored snapshot with only the JSON `parts` loaded (the others are deferred), and
    whether it is stale (or missing)."""
    if any(part not in PARTS for part in parts):
        raise ValueError(f"parts must be among {PARTS}")
    fields = ["computed_at", "last_annotation_id", "seconds", *parts]
    snapshot = QualitySnapshot.objects.filter(project=project).only(*fields).first()
    if snapshot is None:
        return None, True
    return snapshot, snapshot.last_annotation_id != latest_annotation_id(project)
