"""Recording an annotator's judgement of a clip."""

from __future__ import annotations

import functools
import threading
import uuid

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from emoloop import rows
from labelling.models import Annotation, Clip, Lease, Project, Role, SkipReason, TaxonomyNode
from labelling.services.access import has_role


class AnnotationRejected(ValueError):
    """The judgement cannot be recorded; the message says why."""


# Taxonomy version id -> {node key: (node id, core node id)}. Nodes of a version only change
# while it has no annotations (then they are edited in place): a stale entry makes the
# annotation insert fail its foreign key, which drops the entry and retries once.
_NODE_INDEX: dict[int, dict[str, tuple[int, int]]] = {}
_NODE_INDEX_LOCK = threading.Lock()


def node_index(version_id: int) -> dict[str, tuple[int, int]]:
    index = _NODE_INDEX.get(version_id)
    if index is None:
        rows = list(
            TaxonomyNode.objects.filter(version_id=version_id).values_list("id", "key", "parent_id")
        )
        parents = {node_id: parent for node_id, _key, parent in rows}
        index = {}
        for node_id, key, _parent in rows:
            core = node_id  # walk up to the root: the core feeling (the wheel's inner ring)
            while parents.get(core) is not None:
                core = parents[core]
            index[key] = (node_id, core)
        with _NODE_INDEX_LOCK:
            _NODE_INDEX[version_id] = index
    return index


def forget_node_index(version_id: int) -> None:
    with _NODE_INDEX_LOCK:
        _NODE_INDEX.pop(version_id, None)


def core_of(node_id: int) -> int:
    """The core feeling above a node (the node itself for a core one): the one definition,
    read from the cached per-version node index. Agreement routing and gold scoring
    (services/queue/submit.py, services/queue/gold.py) compare labels by it."""
    version_id = TaxonomyNode.objects.values_list("version_id", flat=True).get(pk=node_id)
    cores = dict(node_index(version_id).values())
    if node_id not in cores:  # the version was edited in place since the index was built
        forget_node_index(version_id)
        cores = dict(node_index(version_id).values())
    return cores[node_id]


@functools.cache
def _supersede_sql() -> str:
    """The annotator's current annotation of a clip becomes history (clip, annotator)."""

    def column(name: str) -> str:
        return rows.column(Annotation, name)

    return (  # names from model metadata, values as parameters
        f"UPDATE {rows.table(Annotation)} SET {column('is_current')} = false"  # noqa: S608
        f" WHERE {column('clip')} = %s AND {column('annotator')} = %s AND {column('is_current')}"
    )


def record_annotation(
    *,
    clip: Clip,
    annotator: User,
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
    client_id: uuid.UUID | None = None,
    lease: Lease | None = None,
    project: Project | None = None,
    membership_checked: bool = False,
) -> Annotation:
    """Store a label (any ring of the wheel) or a skip, superseding this annotator's
    previous judgement of the clip (kept as history).

    `project` and `membership_checked` let the queue, which has already loaded the project
    and checked membership for this request, skip those queries on its hot path.
    """
    project = project or clip.project
    if not membership_checked and not has_role(annotator, project, Role.ANNOTATOR):
        raise AnnotationRejected("You are not a member of this clip's project.")
    if bool(node_key) == bool(skip_reason):
        raise AnnotationRejected("Give exactly one of a feeling (node) or a skip reason.")
    if skip_reason and skip_reason not in SkipReason.values:
        raise AnnotationRejected(f'"{skip_reason}" is not a skip reason.')
    for attempt in range(2):
        node_id = None
        if node_key:
            if project.taxonomy_version_id is None:
                raise AnnotationRejected("The project has no taxonomy yet.")
            entry = node_index(project.taxonomy_version_id).get(node_key)
            if entry is None and attempt == 0:  # perhaps added since the index was built
                forget_node_index(project.taxonomy_version_id)
                continue
            if entry is None:
                raise AnnotationRejected(
                    f'"{node_key}" is not a feeling of this project\'s taxonomy version.'
                )
            node_id = entry[0]
        # Inside a caller's transaction (the queue's submit) no savepoint is taken: a failure
        # there rolls the whole submit back, and the caller forgets a stale node index.
        savepoint = not transaction.get_connection().in_atomic_block
        try:
            with transaction.atomic(savepoint=savepoint):
                # The partial unique index (one current annotation per annotator and clip)
                # refuses a racing second "current" row, so no lock is needed here.
                annotation = Annotation(
                    clip=clip, annotator=annotator, node_id=node_id,
                    skip_reason=skip_reason or "", intensity=intensity or "", unsure=unsure,
                    time_spent_ms=time_spent_ms, suggestion_shown=suggestion_shown,
                    play_count=play_count, heard_to_end=heard_to_end, valence=valence,
                    arousal=arousal, client_id=client_id, lease=lease,
                )  # fmt: skip
                if rows.enabled():
                    # Both statements in one round trip, without compiling ORM queries: this
                    # runs on every label (emoloop.rows).
                    rows.insert(annotation, preceded_by=(_supersede_sql(), [clip.pk, annotator.pk]))
                    return annotation
                Annotation.objects.filter(clip=clip, annotator=annotator, is_current=True).update(
                    is_current=False
                )
                annotation.save(force_insert=True)
                return annotation
        except IntegrityError:
            version_id = project.taxonomy_version_id  # set whenever node_id is
            if (
                not savepoint
                or attempt
                or node_id is None
                or version_id is None
                or TaxonomyNode.objects.filter(pk=node_id).exists()
            ):
                raise
            forget_node_index(version_id)  # the version was edited
    raise AssertionError("unreachable")
