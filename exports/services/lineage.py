"""Active-learning lineage of a version: which rankings selected its clips.

A clip's lineage is every ranking of the project created before the version's `created_at`
whose selected batch holds the clip (`ClipScore.selected`). Only selected rows are read:
the rescoring deletes the unselected scores of superseded rankings, so a rank over the
whole pool could not be reproduced later; **`rank` is the clip's position within its
ranking's selected batch, by score descending (1 = the highest score; ties by clip id)**,
computed by the database (a window over the selected rows), one streamed query.
`selected_at` is the ranking's `finished_at` (when the batch was applied to the queue),
else its `created_at`. A clip no ranking selected has no row: it reached the dataset by
the queue's other policies, gold, or an import.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db.models import F, QuerySet, Window
from django.db.models.functions import Rank

from exports.core.archive import Row
from exports.models import DatasetVersion
from exports.services.labels import iso
from labelling.models import Clip
from learner.models import ClipScore

CHUNK = 2000
LINEAGE_COLUMNS = (
    "clip_id",
    "ranking_id",
    "strategy",
    "model_version",
    "score",
    "rank",
    "selected_at",
)


@dataclass
class LineageSummary:
    """Counts kept while the rows stream (a few entries per ranking)."""

    selected_clips: set[int] = field(default_factory=set)
    rankings: dict[int, dict[str, Any]] = field(default_factory=dict)
    selections_by_strategy: Counter[str] = field(default_factory=Counter)

    def as_json(self, clips: int) -> dict[str, Any]:
        """version.json's `lineage` (and the datasheet's): per ranking and per strategy."""
        return {
            "clips": clips,
            "clips_selected_by_loop": len(self.selected_clips),
            "clips_not_selected_by_loop": clips - len(self.selected_clips),
            "rank": "position within the ranking's selected batch by score, 1 = highest",
            "selections_by_strategy": dict(sorted(self.selections_by_strategy.items())),
            "rankings": [self.rankings[pk] for pk in sorted(self.rankings)],
        }


def _selected(version: DatasetVersion) -> QuerySet[ClipScore]:
    return ClipScore.objects.filter(
        ranking__project_id=version.project_id,
        ranking__created_at__lte=version.created_at,
        selected=True,
    )


def lineage_rows(
    version: DatasetVersion, clips: QuerySet[Clip], summary: LineageSummary
) -> Iterator[Row]:
    """lineage.csv rows sorted by (clip, ranking); the rank is computed over the whole
    selected batch of each ranking, then restricted to the version's clips."""
    ranked = (
        _selected(version)
        .annotate(
            rank=Window(
                Rank(),
                partition_by=[F("ranking_id")],
                order_by=[F("score").desc(), F("clip_id").asc()],
            )
        )
        .values_list(
            "clip_id", "ranking_id", "ranking__strategy", "ranking__model_version__number",
            "score", "rank", "ranking__created_at", "ranking__finished_at",
        )
    )  # fmt: skip
    # A window cannot be filtered in the same SELECT; the version's clips are filtered in
    # Python against a set of ids (one int per clip), which keeps the query streamable.
    wanted = set(clips.values_list("pk", flat=True).iterator(chunk_size=CHUNK * 10))
    rows = ranked.order_by("clip_id", "ranking_id")
    for (clip_id, ranking_id, strategy, model_number, score, rank, created,
         finished) in rows.iterator(chunk_size=CHUNK):  # fmt: skip
        if clip_id not in wanted:
            continue
        selected_at = iso(finished or created)
        summary.selected_clips.add(clip_id)
        summary.selections_by_strategy[strategy] += 1
        entry = summary.rankings.setdefault(ranking_id, {
            "ranking_id": ranking_id, "strategy": strategy, "model_version": model_number,
            "selected_at": selected_at, "clips": 0,
        })  # fmt: skip
        entry["clips"] += 1
        yield {
            "clip_id": clip_id, "ranking_id": ranking_id, "strategy": strategy,
            "model_version": model_number, "score": score, "rank": rank,
            "selected_at": selected_at,
        }  # fmt: skip
