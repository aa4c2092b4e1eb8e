"""Recording an annotator's judgement of a clip."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from labelling.models import Annotation, Clip, Role, SkipReason, TaxonomyNode
from labelling.services.access import has_role


class AnnotationRejected(ValueError):
    """The judgement cannot be recorded; the message says why."""


@transaction.atomic
def record_annotation(
    *,
    clip: Clip,
    annotator: AbstractBaseUser,
    node_key: str = "",
    skip_reason: str = "",
    intensity: str = "",
    unsure: bool = False,
    time_spent_ms: int = 0,
    suggestion_shown: bool = False,
    play_count: int = 0,
    heard_to_end: bool = False,
    valence: float | None = None,
    arousal: float | None = None,
) -> Annotation:
    """Store a label (any ring of the wheel) or a skip, superseding this annotator's
    previous judgement of the clip (kept as history)."""
    project = clip.project
    if not has_role(annotator, project, Role.ANNOTATOR):
        raise AnnotationRejected("You are not a member of this clip's project.")
    if bool(node_key) == bool(skip_reason):
        raise AnnotationRejected("Give exactly one of a feeling (node) or a skip reason.")
    node = None
    if node_key:
        if project.taxonomy_version_id is None:
            raise AnnotationRejected("The project has no taxonomy yet.")
        node = TaxonomyNode.objects.filter(
            version_id=project.taxonomy_version_id, key=node_key
        ).first()
        if node is None:
            raise AnnotationRejected(
                f'"{node_key}" is not a feeling of this project\'s taxonomy version.'
            )
    elif skip_reason not in SkipReason.values:
        raise AnnotationRejected(f'"{skip_reason}" is not a skip reason.')
    # Lock this annotator's current annotation so that two submits for the same clip
    # cannot both become current (the partial unique constraint would refuse the second).
    previous = (
        Annotation.objects.select_for_update()
        .filter(clip=clip, annotator=annotator, is_current=True)
        .first()
    )
    if previous is not None:
        previous.is_current = False
        previous.save(update_fields=["is_current"])
    return Annotation.objects.create(
        clip=clip,
        annotator=annotator,
        node=node,
        skip_reason=skip_reason or "",
        intensity=intensity or "",
        unsure=unsure,
        time_spent_ms=time_spent_ms,
        suggestion_shown=suggestion_shown,
        play_count=play_count,
        heard_to_end=heard_to_end,
        valence=valence,
        arousal=arousal,
    )
