"""Gold clips: clips with a known answer, mixed into an annotator's queue at the project's
gold rate and scored when submitted. A gold clip leaves the regular queue (its entry is
marked gold and holds no open slot), so it never counts towards the pool or its overlap.
"""

from __future__ import annotations

import random

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, OuterRef

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
from labelling.services.annotations import AnnotationRejected, core_of


def mark_gold(clip: Clip, node_key: str, user: User | None = None) -> GoldClip:
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


def take_gold(project: Project, user: User) -> int | None:
    """A gold clip this annotator has never been leased, or None (`lease.next_clip` draws
    one at the project's gold rate)."""
    gold = (
        GoldClip.objects.filter(clip__project=project)
        .exclude(Exists(Lease.objects.filter(clip=OuterRef("clip_id"), annotator=user)))
        .values_list("clip_id", flat=True)
    )
    ids = list(gold[:50])
    return random.choice(ids) if ids else None


def score_gold(annotation: Annotation) -> None:
    """Record whether a submitted gold clip got its known answer (exactly, and by core
    feeling)."""
    gold = GoldClip.objects.select_related("node").get(clip_id=annotation.clip_id)
    given = annotation.node_id
    GoldResult.objects.create(
        annotation=annotation,
        gold=gold,
        correct_exact=given == gold.node_id,
        correct_core=given is not None and core_of(given) == core_of(gold.node_id),
    )
