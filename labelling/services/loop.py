"""What the learning loop may ask of labelling: labelling's public interface to the learner.

The learner (training, rescoring) reads and writes labelling's data only through these
functions, so that the queue's rules (which clips still want labels, which policy orders
the queue) and the taxonomy's rules (how labels given on an older version of the wheel map
onto the current one) live in one place. labelling never imports learner; learner imports
labelling's models for foreign keys and reads `Clip` metadata, and calls this module for
everything else (README, "Rooms").

- `unlabelled_pool(project)`: the clips that still want labels (the queue's definition).
- `label_snapshot(project)`: the current labels, mapped onto the active taxonomy version.
- `taxonomy_nodes(project)`: the nodes of the active taxonomy version, in wheel order.
- `count_labels(project, since=…, limit=…)`: how many labels arrived since a moment.
- `apply_ranking(project, …)`: a new queue order from a ranking (only on the
  active-learning policy; other policies keep their order).
- `weak_labels(project)`: imported external models' predictions (weak labels) on the
  active taxonomy version.

Corpus labels (imported annotations, `label_source` "corpus") are labels: they are in
`label_snapshot` and `count_labels` like the project's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from labelling.models import Annotation, NodeMapping, Project, TaxonomyNode, WeakLabel
from labelling.services import queue

# The queue policy under which a ranking orders the queue (Project.queue_policy).
ACTIVE_LEARNING_POLICY = "active"


def unlabelled_pool(project: Project) -> list[int]:
    """Ids of the project's clips that still want labels (open, non-gold queue entries),
    in id order. The same set the lease serves from: `queue.wanting_labels`."""
    return list(queue.wanting_labels(project).order_by("clip_id").values_list("clip_id", flat=True))


@dataclass(frozen=True)
class NodeInfo:
    """One feeling of the active taxonomy version, as the learner needs it."""

    key: str
    name: str
    level: int
    parent_key: str | None


def taxonomy_nodes(project: Project) -> list[NodeInfo]:
    """The nodes of the project's active taxonomy version, by ring then wheel order."""
    rows = (
        TaxonomyNode.objects.filter(version_id=project.taxonomy_version_id)
        .order_by("level", "order", "pk")
        .values_list("key", "name", "level", "parent__key")
    )
    return [NodeInfo(key, name, level, parent) for key, name, level, parent in rows]


@dataclass(frozen=True)
class SnapshotLabel:
    """One current annotation. `node_key` is the key in the active taxonomy version (a label
    given on an older version is mapped forward); None for a skip."""

    annotation_id: int
    clip_id: int
    annotator_id: int
    node_key: str | None
    skip_reason: str
    unsure: bool

    def as_row(self) -> list:
        return [
            self.annotation_id,
            self.clip_id,
            self.annotator_id,
            self.node_key,
            self.skip_reason,
            self.unsure,
        ]


# Column names of `SnapshotLabel.as_row`, for files that store a snapshot as rows.
SNAPSHOT_COLUMNS = ("annotation", "clip", "annotator", "node", "skip", "unsure")


@dataclass(frozen=True)
class LabelSnapshot:
    taken_at: datetime
    taxonomy_version_id: int | None
    labels: list[SnapshotLabel]

    @property
    def labelled_count(self) -> int:
        """Labels that name a feeling (skips excluded)."""
        return sum(1 for label in self.labels if label.node_key is not None)


def node_keys_in_active_version(project: Project) -> dict[int, str | None]:
    """Node id (of the project's active taxonomy version or an older one that its labels
    used) -> the key in the active version, following the taxonomy's node mappings; None
    where an update dropped the feeling."""
    version_id = project.taxonomy_version_id
    current: dict[int, str | None] = dict(
        TaxonomyNode.objects.filter(version_id=version_id).values_list("pk", "key")
    )
    used = set(
        Annotation.objects.filter(clip__project=project, node__isnull=False)
        .exclude(node__version_id=version_id)
        .values_list("node_id", flat=True)
    )
    if not used or project.taxonomy_version is None:
        return current
    steps = dict(
        NodeMapping.objects.filter(
            target_version__taxonomy_id=project.taxonomy_version.taxonomy_id
        ).values_list("source_id", "target_id")
    )
    out = dict(current)
    for node_id in used:
        seen: set[int] = set()
        step: int | None = node_id
        while step is not None and step not in current and step not in seen:
            seen.add(step)
            step = steps.get(step)
        out[node_id] = current.get(step) if step is not None else None
    return out


def label_snapshot(project: Project) -> LabelSnapshot:
    """The project's current annotations (labels and skips) as of now, mapped onto the
    active taxonomy version. A label whose feeling a taxonomy update dropped is left out:
    it is neither a target nor a skip."""
    taken_at = timezone.now()
    node_key = node_keys_in_active_version(project)
    labels: list[SnapshotLabel] = []
    rows = (
        Annotation.objects.filter(clip__project=project, is_current=True, created_at__lte=taken_at)
        .order_by("pk")
        .values_list("pk", "clip_id", "annotator_id", "node_id", "skip_reason", "unsure")
    )
    for pk, clip_id, annotator_id, node_id, skip, unsure in rows:
        key = node_key.get(node_id) if node_id is not None else None
        if node_id is not None and key is None:
            continue
        labels.append(SnapshotLabel(pk, clip_id, annotator_id, key, skip, unsure))
    return LabelSnapshot(taken_at, project.taxonomy_version_id, labels)


def count_labels(
    project: Project, *, since: datetime | None = None, limit: int | None = None
) -> int:
    """Current labels (not skips) of the project created after `since`; counting stops at
    `limit` when given (the caller only needs to know whether there are that many)."""
    labels = Annotation.objects.filter(clip__project=project, is_current=True, node__isnull=False)
    if since is not None:
        labels = labels.filter(created_at__gt=since)
    if limit is not None:
        return labels[:limit].count()
    return labels.count()


def apply_ranking(
    project: Project,
    clip_ids: Sequence[int],
    priorities: Sequence[float],
    reasons: Sequence[dict] | None = None,
) -> int:
    """Order the queue by a ranking: lower priority is served first; each entry keeps the
    reason it was placed (shown to ML engineers, never to annotators). Only a project on the
    active-learning policy takes its order from a ranking; for the others this changes
    nothing and returns 0. Runs in one transaction: the queue serves the previous order until
    it commits. Returns the number of entries updated."""
    if project.queue_policy != ACTIVE_LEARNING_POLICY:
        return 0
    with transaction.atomic():
        return queue.apply_priorities(
            project,
            list(clip_ids),
            list(priorities),
            list(reasons) if reasons is not None else None,
        )


@dataclass(frozen=True)
class WeakLabelInfo:
    """One external model's prediction for one clip, over node keys of the active version."""

    clip_id: int
    model_name: str
    model_version: str
    probabilities: dict[str, float]
    top_key: str


def weak_labels(project: Project, *, model_name: str | None = None) -> list[WeakLabelInfo]:
    """The project's weak labels on its active taxonomy version (those imported on an older
    version are left out: their keys may not exist any more), by clip then model."""
    rows = WeakLabel.objects.filter(
        clip__project=project, taxonomy_version_id=project.taxonomy_version_id
    )
    if model_name is not None:
        rows = rows.filter(model_name=model_name)
    return [
        WeakLabelInfo(clip_id, name, version, probabilities, top)
        for clip_id, name, version, probabilities, top in rows.order_by(
            "clip_id", "model_name", "model_version"
        ).values_list("clip_id", "model_name", "model_version", "probabilities", "top_node__key")
    ]
