"""A version's labels: the taxonomy mapping onto the version's taxonomy version, and the
annotations table streamed from the database with the ratings that aggregation needs.

**Mapping rule** (the same rule as `labelling.services.loop.node_keys_in_active_version`,
applied to the version's recorded taxonomy version rather than the project's current one,
so a rebuild after the project moved on gives the same bytes): a label given on a node of
the version's taxonomy version keeps its key; a label given on an older version follows the
taxonomy's `NodeMapping` chain (old node -> node of the next version -> …) until it reaches
a node of the version's taxonomy version; a chain that ends in a dropped feeling (a null
target) or never reaches it maps to nothing, and the annotation is exported with empty
ring columns (its `given_label` keeps what the annotator chose) and counts in no
aggregate. The mapping applied is recorded in version.json as {old key: new key or null}
for every older node that the version's labels or gold answers use.

loop's own function is not reused because it maps onto the project's *current* version and
reads every annotation of the project; this one reads only the distinct nodes used before
the version's `created_at` (one query) and the taxonomy's mappings (a few hundred rows).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from django.db.models import Min, QuerySet

from exports.core import aggregation as agg
from exports.core.archive import Row
from exports.core.coded import RingCollector
from exports.models import DatasetVersion
from labelling.models import (
    Annotation,
    Clip,
    GoldClip,
    LabelSource,
    NodeMapping,
    TaxonomyNode,
    WeakLabel,
)
from review.models import Adjudication

CHUNK = 2000
HUMAN = str(LabelSource.HUMAN)
WEAK_LABEL_COLUMNS = (
    "clip_id",
    "model",
    "model_version",
    "taxonomy_version",
    "top_label",
    "top_probability",
    "probabilities",
)
ANNOTATION_COLUMNS = (
    "annotation_id",
    "clip_id",
    "annotator",
    "label_source",
    "core",
    "secondary",
    "tertiary",
    "skip_reason",
    "unsure",
    "intensity",
    "valence",
    "arousal",
    "time_spent_ms",
    "play_count",
    "heard_to_end",
    "suggestion_shown",
    "created_at",
    "given_label",
)


def iso(moment: Any) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class KeyMap:
    """node id -> key in the version's taxonomy version (None: dropped), and the mapping
    applied to older nodes as recorded in version.json."""

    by_node: dict[int, str | None]
    applied: dict[str, str | None] = field(default_factory=dict)

    def key(self, node_id: int | None) -> str | None:
        return None if node_id is None else self.by_node.get(node_id)


def key_map(version: DatasetVersion, clips: QuerySet[Clip], also: Iterable[int] = ()) -> KeyMap:
    """The mapping of every node the version's annotations and gold answers use (and the
    nodes in `also`: adjudications)."""
    target = version.taxonomy_version
    used = set(
        Annotation.objects.filter(
            clip_id__in=clips.values("pk"), node__isnull=False,
            created_at__lte=version.created_at,
        ).values_list("node_id", flat=True).distinct()
    ) | set(
        GoldClip.objects.filter(clip_id__in=clips.values("pk")).values_list("node_id", flat=True)
    )  # fmt: skip
    used |= set(also)
    if target is None:
        return KeyMap(dict(TaxonomyNode.objects.filter(pk__in=used).values_list("pk", "key")))
    current: dict[int, str | None] = dict(
        TaxonomyNode.objects.filter(version=target).values_list("pk", "key")
    )
    older = used - set(current)
    if not older:
        return KeyMap(current)
    steps: dict[int, int | None] = dict(
        NodeMapping.objects.filter(target_version__taxonomy_id=target.taxonomy_id).values_list(
            "source_id", "target_id"
        )
    )
    by_node = dict(current)
    for node_id in older:
        seen: set[int] = set()
        step: int | None = node_id
        while step is not None and step not in current and step not in seen:
            seen.add(step)
            step = steps.get(step)
        by_node[node_id] = current.get(step) if step is not None else None
    described = TaxonomyNode.objects.filter(pk__in=older).values_list(
        "pk", "key", "version__number"
    )
    names = sorted(described, key=lambda row: (row[1], row[2]))
    keys = [key for _pk, key, _n in names]
    applied: dict[str, str | None] = {}
    for pk, key, number in names:
        # The same key on two older versions may map differently: then each says its version.
        name = key if keys.count(key) == 1 else f"{key}@v{number}"
        applied[name] = by_node[pk]
    return KeyMap(by_node, applied)


@dataclass
class Collected:
    """What the annotations pass keeps for the rest of the build (small tuples only)."""

    # One collector per ring (exports.core.coded): human ratings as integer codes.
    rings: list[RingCollector]
    gold_keys: dict[int, str]
    # (clip, rater) -> the (mapped) label given on a gold clip, for gold.csv.
    gold_given: dict[tuple[int, str], str] = field(default_factory=dict)
    # clip -> number of human raters with a label, for the datasheet's overlap figures.
    raters_per_clip: dict[int, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    suggestion_shown: int = 0
    labels: int = 0
    # Human annotators with a label at the core ring (set when the rings are coded).
    annotators: int = 0
    dropped: int = 0


NO_RINGS: list[str | None] = [None, None, None]
ADJUDICATION_COLUMNS = ("clip_id", "label", "given_label", "created_at")


def adjudications(version: DatasetVersion, clips: QuerySet[Clip]) -> dict[int, tuple[int, Any]]:
    """clip -> (node id, when) of the clip's latest adjudication made before the version
    (review.Adjudication). As of the version's `created_at`, not "current now", so a rebuild
    is unchanged by later adjudications; a reviewer's decision never overwrites the
    annotators' labels, it is a column and a table of its own."""
    latest: dict[int, tuple[int, Any]] = {}
    rows = (
        Adjudication.objects.filter(
            clip_id__in=clips.values("pk"), created_at__lte=version.created_at
        )
        .order_by("clip_id", "created_at", "pk")
        .values_list("clip_id", "node_id", "created_at")
    )
    for clip_id, node_id, created in rows.iterator(chunk_size=CHUNK):
        latest[clip_id] = (node_id, created)
    return latest


def adjudication_rows(
    decided: dict[int, tuple[int, Any]], keys: KeyMap, given: dict[int, str]
) -> Iterator[Row]:
    for clip_id in sorted(decided):
        node_id, created = decided[clip_id]
        yield {
            "clip_id": clip_id, "label": keys.key(node_id), "given_label": given.get(node_id),
            "created_at": iso(created),
        }  # fmt: skip


def pseudonyms(version: DatasetVersion) -> dict[int, str]:
    """user id -> the annotator column: human annotators get `r0001`…, numbered by their
    first human label in the project (then id), stable as the project grows; a corpus
    rater keeps its name (`corpus:emodb`): it is a source, not a person."""
    human = (
        Annotation.objects.filter(clip__project=version.project, label_source=HUMAN)
        .values("annotator_id")
        .annotate(first=Min("created_at"))
        .order_by("first", "annotator_id")
    )
    names = {row["annotator_id"]: f"r{i:04d}" for i, row in enumerate(human, start=1)}
    corpus = (
        Annotation.objects.filter(clip__project=version.project)
        .exclude(label_source=HUMAN)
        .order_by()
        .values_list("annotator_id", "annotator__username")
        .distinct()
    )
    names.update((user, name) for user, name in corpus if user not in names)
    return names


def weak_label_rows(version: DatasetVersion, clips: QuerySet[Clip]) -> Iterator[Row]:
    """weak_labels rows: external models' predictions on the version's clips imported
    before it, as the model gave them (keys of its own taxonomy version; no mapping)."""
    rows = (
        WeakLabel.objects.filter(
            clip_id__in=clips.values("pk"), imported_at__lte=version.created_at
        )
        .order_by("clip_id", "model_name", "model_version")
        .values_list(
            "clip_id", "model_name", "model_version", "taxonomy_version__number",
            "top_node__key", "top_probability", "probabilities",
        )
    )  # fmt: skip
    for clip_id, model, model_version, taxonomy, top, top_p, probs in rows.iterator(
        chunk_size=CHUNK
    ):
        yield {
            "clip_id": clip_id, "model": model, "model_version": model_version,
            "taxonomy_version": taxonomy, "top_label": top, "top_probability": top_p,
            "probabilities": json.dumps(
                {k: round(float(v), 6) for k, v in sorted(probs.items())}, sort_keys=True
            ),
        }  # fmt: skip


def human_ratings(
    version: DatasetVersion,
    clips: QuerySet[Clip],
    names: dict[int, str],
    keys: KeyMap,
    rings: int,
) -> list[RingCollector]:
    """The human ratings per ring that `annotation_rows` would collect (current labels of the
    clips made before the version, mapped onto its taxonomy version; corpus labels, skips
    and dropped feelings left out), read by a narrow query of their own: three integers a
    row, a few seconds before the whole annotations table is, so that the build can hand
    them to its Dawid-Skene worker at once (the fits are the build's critical path)."""
    out = [RingCollector() for _ in range(rings)]
    rows = (
        Annotation.objects.filter(
            clip_id__in=clips.values("pk"), is_current=True,
            created_at__lte=version.created_at, label_source=HUMAN, node__isnull=False,
        )
        .order_by()
        .values_list("clip_id", "annotator_id", "node_id")
    )  # fmt: skip
    by_node: dict[int, list[str | None]] = {}
    for clip_id, user_id, node_id in rows.iterator(chunk_size=CHUNK * 5):
        at = by_node.get(node_id)
        if at is None:
            key = keys.key(node_id)
            at = by_node[node_id] = (
                [agg.at_ring(key, ring) for ring in range(rings)] if key else [None] * rings
            )
        rater = names[user_id]
        for ring, label in enumerate(at):
            if label is not None:
                out[ring].add(clip_id, rater, label)
    return out


def annotation_rows(
    version: DatasetVersion,
    clips: QuerySet[Clip],
    names: dict[int, str],
    keys: KeyMap,
    out: Collected,
) -> Iterator[Row]:
    """Current annotations of the clips (labels and skips) made before the version,
    mapped onto its taxonomy version; collects human ratings per ring into `out` (none when
    `out.rings` is empty: the build reads them with `human_ratings` first)."""
    rings = len(out.rings)
    rows = (
        Annotation.objects.filter(
            clip_id__in=clips.values("pk"),
            is_current=True,
            created_at__lte=version.created_at,
        )
        .order_by("pk")
        .values_list(
            "pk", "clip_id", "annotator_id", "label_source", "node_id", "node__key",
            "skip_reason", "unsure",
            "intensity", "valence", "arousal", "time_spent_ms", "play_count", "heard_to_end",
            "suggestion_shown", "created_at",
        )
    )  # fmt: skip
    by_key: dict[str, list[str | None]] = {}
    for (pk, clip_id, user_id, source, node_id, given, skip, unsure, intensity, valence,
         arousal, spent, plays, heard, shown,
         created) in rows.iterator(chunk_size=CHUNK):  # fmt: skip
        rater = names[user_id]
        key = keys.key(node_id)
        out.sources[source] = out.sources.get(source, 0) + 1
        if node_id is not None and key is None:
            out.dropped += 1
        if key is not None and source == HUMAN:
            out.labels += 1
            out.suggestion_shown += bool(shown)
            out.raters_per_clip[clip_id] = out.raters_per_clip.get(clip_id, 0) + 1
            if clip_id in out.gold_keys:
                out.gold_given[(clip_id, rater)] = key
        if not key:
            at = NO_RINGS
        elif (found := by_key.get(key)) is not None:
            at = found
        else:  # one list per key: 300,000 ratings share a hundred label strings
            at = by_key[key] = [agg.at_ring(key, ring) for ring in range(3)]
        if source == HUMAN:
            for ring, label in enumerate(at[:rings]):
                if label is not None:
                    out.rings[ring].add(clip_id, rater, label)
        yield {
            "annotation_id": pk, "clip_id": clip_id, "annotator": rater,
            "label_source": source, "core": at[0], "secondary": at[1], "tertiary": at[2],
            "skip_reason": skip or None, "unsure": unsure, "intensity": intensity or None,
            "valence": valence, "arousal": arousal, "time_spent_ms": spent,
            "play_count": plays, "heard_to_end": heard, "suggestion_shown": shown,
            "created_at": iso(created), "given_label": given,
        }  # fmt: skip
