"""Adjudication: a reviewer's decision on a clip, recorded beside the annotators' labels
(never over them), and what the dataset exporter reads (`current_adjudications`)."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.db import transaction

from audit.services import record
from labelling.models import Annotation, Clip, LabelSource, Project, TaxonomyNode
from review.models import Adjudication

MAX_NOTE = 2000


class AdjudicationRefused(ValueError):
    """The node is not a feeling of the project's active taxonomy version, or the note is
    too long."""


def current_adjudications(project: Project) -> dict[int, str]:
    """{clip id: node key} of every current adjudication of the project (one query,
    streamed). The key is the adjudicated node's, a node of the taxonomy version that was
    active when the reviewer decided."""
    rows = (
        Adjudication.objects.filter(project=project, is_current=True)
        .order_by("clip_id")
        .values_list("clip_id", "node__key")
        .iterator(chunk_size=10_000)
    )
    return dict(rows)


def adjudicate(clip: Clip, reviewer: User, node_key: str, note: str = "") -> Adjudication:
    """Record `reviewer`'s label for `clip`; an earlier current adjudication is superseded
    (kept, `is_current` False). Raises AdjudicationRefused."""
    project = clip.project
    if len(note) > MAX_NOTE:
        raise AdjudicationRefused(f"The note is longer than {MAX_NOTE} characters.")
    node = TaxonomyNode.objects.filter(version_id=project.taxonomy_version_id, key=node_key).first()
    if node is None:
        raise AdjudicationRefused(
            f"{node_key!r} is not a feeling of the project's active taxonomy version."
        )
    with transaction.atomic():
        # Lock the clip row: two reviewers deciding at once supersede in order, and the
        # partial unique index never sees two current rows.
        Clip.objects.select_for_update().filter(pk=clip.pk).first()
        superseded = list(
            Adjudication.objects.filter(clip=clip, is_current=True).values_list("pk", "node__key")
        )
        Adjudication.objects.filter(clip=clip, is_current=True).update(is_current=False)
        made = Adjudication.objects.create(
            clip=clip, project=project, reviewer=reviewer, node=node, note=note
        )
        # In the transaction: the event exists exactly when the adjudication committed.
        record(
            reviewer,
            "review.adjudicated",
            project=project,
            target=made,
            details={
                "clip": clip.pk,
                "node": node.key,
                "note": note[:200],
                "supersedes": [{"id": pk, "node": key} for pk, key in superseded],
            },
        )
    return made


def clip_labels(clip: Clip) -> Iterable[Annotation]:
    """Every current human annotation of the clip, with its annotator and node path."""
    return (
        Annotation.objects.filter(clip=clip, is_current=True, label_source=LabelSource.HUMAN)
        .select_related("annotator", "node__parent__parent")
        .order_by("created_at", "pk")
    )


def history(clip: Clip) -> list[Adjudication]:
    return list(
        Adjudication.objects.filter(clip=clip)
        .select_related("reviewer", "node")
        .order_by("-created_at", "-pk")
    )
