"""Building a dataset version's folder in the native layout (docs/datasets.md, v1).

Rows are streamed from the database in primary-key order (`.iterator(chunk_size=…)`) and
written with `exports.core.archive`'s writers; only the ratings (clip, rater, label per ring)
and one small tuple per clip are kept in memory for aggregation and splits. The folder is
written under a temporary name and renamed into place when complete, SHA256SUMS last.

What a version contains is fixed by its row: labels and clips created after the version's
`created_at` are left out, so rebuilding it later (for verification, `rebuild_into`) gives
the same bytes as long as no label was changed or deleted since.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage
from django.db.models import Max, Min, QuerySet
from django.utils import timezone

from exports.core import aggregation as agg
from exports.core import agreement
from exports.core.archive import CsvWriter, JsonlWriter, Row, sha256_file, write_sha256sums
from exports.core.splits import SplitClip, assign_splits, group_of
from exports.models import DatasetVersion
from exports.services import datasheet
from exports.services.versions import folder_of
from labelling.models import Annotation, Clip, GoldClip, TaxonomyNode

FORMAT_VERSION = 1
RINGS = ("core", "secondary", "tertiary")
CHUNK = 2000
PROGRESS_EVERY = 500
CLIP_COLUMNS = (
    "clip_id",
    "file_name",
    "split",
    "group",
    "duration_s",
    "sample_rate",
    "speaker_id",
    "gender",
    "age_band",
    "language",
    "dialect",
    "channel",
    "recording_id",
    "start_s",
    "end_s",
    "source",
    "import_batch_id",
    "sha256",
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
)
LABEL_COLUMNS = (
    "clip_id",
    "raters",
    "majority",
    "majority_votes",
    "tied",
    "soft",
    "dawid_skene",
    "dawid_skene_probability",
    "agreement",
)
GOLD_COLUMNS = ("clip_id", "annotator", "gold_label", "label", "correct")

Progress = Callable[[str, int, int], None]


def _none(_stage: str, _done: int, _total: int) -> None:
    return None


def _table(folder: Path, name: str, columns: tuple[str, ...], rows: Iterator[Row]) -> int:
    """Write the rows once to CSV while keeping them for the JSONL twin (same rows, order)."""
    kept: list[Row] = []

    def tee() -> Iterator[Row]:
        for row in rows:
            kept.append(row)
            yield row

    count = CsvWriter(columns).write(folder / f"{name}.csv", tee())
    JsonlWriter(columns).write(folder / f"{name}.jsonl", kept)
    return count


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(_rounded(data), sort_keys=True, indent=2, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


def _iso(moment: Any) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def selected_clips(version: DatasetVersion) -> QuerySet[Clip]:
    """The version's clips (query v1): clips with at least one current label (a node)
    given before the version was created; optionally one import batch."""
    labelled = Annotation.objects.filter(
        is_current=True, node__isnull=False, created_at__lte=version.created_at
    ).values("clip_id")
    clips = Clip.objects.filter(
        project=version.project, created_at__lte=version.created_at, pk__in=labelled
    )
    batch = version.query.get("import_batch")
    if batch is not None:
        clips = clips.filter(batch_id=batch)
    return clips.order_by("pk")


def pseudonyms(version: DatasetVersion) -> dict[int, str]:
    """user id -> `r0001`…, numbered by each annotator's first label in the project (then
    id): stable as the project grows."""
    firsts = (
        Annotation.objects.filter(clip__project=version.project)
        .values("annotator_id")
        .annotate(first=Min("created_at"))
        .order_by("first", "annotator_id")
    )
    return {row["annotator_id"]: f"r{i:04d}" for i, row in enumerate(firsts, start=1)}


def _rings(version: DatasetVersion) -> int:
    """How many rings the version's taxonomy has (1 to 3)."""
    if version.taxonomy_version_id is None:
        return 1
    deepest = TaxonomyNode.objects.filter(version_id=version.taxonomy_version_id).aggregate(
        d=Max("level")
    )["d"]
    return 1 + int(deepest or 0)


def _annotation_rows(
    version: DatasetVersion,
    clip_ids: QuerySet[Clip],
    names: dict[int, str],
    ratings: list[list[agg.Rating]],
    gold: tuple[dict[int, str], dict[tuple[int, str], str]],
) -> Iterator[Row]:
    """Current annotations of the clips (labels and skips), collecting ratings per ring."""
    rows = (
        Annotation.objects.filter(
            clip_id__in=clip_ids.values("pk"),
            is_current=True,
            created_at__lte=version.created_at,
        )
        .order_by("pk")
        .values_list(
            "pk",
            "clip_id",
            "annotator_id",
            "node__key",
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
        )
    )
    for (pk, clip_id, user_id, key, skip, unsure, intensity, valence, arousal, spent, plays,
         heard, shown, created) in rows.iterator(chunk_size=CHUNK):  # fmt: skip
        rater = names[user_id]
        if key and clip_id in gold[0]:
            gold[1][(clip_id, rater)] = key
        at = [agg.at_ring(key, ring) if key else None for ring in range(3)]
        for ring, label in enumerate(at[: len(ratings)]):
            if label is not None:
                ratings[ring].append(agg.Rating(item=clip_id, rater=rater, label=label))
        yield {
            "annotation_id": pk, "clip_id": clip_id, "annotator": rater,
            "label_source": "human", "core": at[0], "secondary": at[1], "tertiary": at[2],
            "skip_reason": skip or None, "unsure": unsure, "intensity": intensity or None,
            "valence": valence, "arousal": arousal, "time_spent_ms": spent,
            "play_count": plays, "heard_to_end": heard, "suggestion_shown": shown,
            "created_at": _iso(created),
        }  # fmt: skip


def _label_rows(ratings: list[agg.Rating]) -> tuple[list[Row], dict[agg.Item, str]]:
    """labels_<ring> rows (sorted by clip) and the majority label per clip."""
    majority = agg.majority_vote(ratings)
    soft = agg.soft_labels(ratings)
    ds = agg.dawid_skene(ratings)
    per_item = agg.item_agreement(ratings)
    rows: list[Row] = []
    for item in sorted(majority, key=agg.item_sort_key):
        vote, fitted = majority[item], ds[item]
        rows.append({
            "clip_id": item, "raters": vote.raters, "majority": vote.label,
            "majority_votes": vote.votes, "tied": vote.tied,
            "soft": json.dumps(_rounded(soft[item]), sort_keys=True),
            "dawid_skene": fitted.label,
            "dawid_skene_probability": fitted.posterior[fitted.label],
            "agreement": per_item[item].pairwise,
        })  # fmt: skip
    return rows, {item: result.label for item, result in majority.items()}


def _copy_audio(clip: Clip, target: Path) -> str:
    """Copy the clip's canonical audio to `target`; the SHA-256 of what was written."""
    digest = hashlib.sha256()
    with default_storage.open(str(clip.canonical.name), "rb") as source, target.open("wb") as out:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def write_version(version: DatasetVersion, folder: Path, progress: Progress = _none) -> None:
    """Write the whole native layout of `version` into `folder` (which must not exist)."""
    folder.mkdir(parents=True)
    (folder / "audio").mkdir()
    clips = selected_clips(version)
    total = clips.count()
    names = pseudonyms(version)
    rings = _rings(version)

    progress("annotations", 0, total)
    gold_keys: dict[int, str] = dict(
        GoldClip.objects.filter(clip_id__in=clips.values("pk")).values_list("clip_id", "node__key")
    )
    # (clip, rater) -> the label given on a gold clip, for gold.csv.
    gold_given: dict[tuple[int, str], str] = {}
    ratings: list[list[agg.Rating]] = [[] for _ in range(rings)]
    annotation_count = _table(
        folder,
        "annotations",
        ANNOTATION_COLUMNS,
        _annotation_rows(version, clips, names, ratings, (gold_keys, gold_given)),
    )

    progress("aggregation", 0, total)
    consensus: list[dict[agg.Item, str]] = []
    for ring in range(rings):
        rows, majority = _label_rows(ratings[ring])
        _table(folder, f"labels_{RINGS[ring]}", LABEL_COLUMNS, iter(rows))
        consensus.append(majority)

    gold_rows: list[Row] = sorted(
        (
            {"clip_id": clip, "annotator": rater, "gold_label": gold_keys[clip], "label": key,
             "correct": agg.at_ring(key, 0) == agg.at_ring(gold_keys[clip], 0)}
            for (clip, rater), key in gold_given.items()
        ),
        key=lambda row: (row["clip_id"], row["annotator"]),
    )  # fmt: skip
    _table(folder, "gold", GOLD_COLUMNS, iter(gold_rows))

    figures: dict[str, Any] = {}
    for ring in range(rings):
        gold_at: dict[agg.Item, str] = {
            clip: label
            for clip, key in gold_keys.items()
            if (label := agg.at_ring(key, ring)) is not None
        }
        figures[RINGS[ring]] = {
            "alpha": agreement.krippendorff_alpha(ratings[ring]),
            "alpha_per_class": agreement.alpha_per_class(ratings[ring]),
            "rater_vs_majority": {
                rater: vars(result)
                for rater, result in agreement.rater_vs_consensus(
                    ratings[ring], consensus[ring]
                ).items()
            },
            "gold_accuracy": {
                rater: vars(result)
                for rater, result in agreement.gold_accuracy(ratings[ring], gold_at).items()
            },
        }
    _write_json(folder / "agreement.json", figures)

    progress("splits", 0, total)
    split_input = [
        SplitClip(
            clip_id=pk,
            group=group_of(speaker, recording, pk),
            label=consensus[0][pk],
            gender=gender or "unknown",
        )
        for pk, speaker, recording, gender in clips.values_list(
            "pk", "speaker_id", "recording_id", "gender"
        ).iterator(chunk_size=CHUNK)
    ]
    previous = (
        DatasetVersion.objects.filter(
            project_id=version.project_id,
            number__lt=version.number,
            status=DatasetVersion.Status.READY,
        )
        .order_by("-number")
        .values_list("split_history", flat=True)
        .first()
    )
    splits = assign_splits(
        split_input, version.split_targets, version.split_seed, previous=previous or {}
    )
    groups = {c.clip_id: c.group for c in split_input}
    del split_input
    _write_json(folder / "splits.json", splits.history)
    version.split_history = splits.history

    # clip -> (duration, gender, speaker) for the datasheet: one small tuple per clip.
    sheet_clips: dict[int, tuple[float, str, str]] = {}

    def clip_rows() -> Iterator[Row]:
        for done, clip in enumerate(clips.iterator(chunk_size=CHUNK), start=1):
            name = f"audio/{clip.pk}.wav"
            sheet_clips[clip.pk] = (clip.duration_s, clip.gender, clip.speaker_id)
            digest = _copy_audio(clip, folder / name)
            if done % PROGRESS_EVERY == 0:
                progress("clips", done, total)
            yield {
                "clip_id": clip.pk, "file_name": name, "split": splits.by_clip[clip.pk],
                "group": groups[clip.pk], "duration_s": clip.duration_s,
                "sample_rate": clip.sample_rate, "speaker_id": clip.speaker_id or None,
                "gender": clip.gender or None, "age_band": clip.age_band or None,
                "language": clip.language or None, "dialect": clip.dialect or None,
                "channel": clip.channel or None, "recording_id": clip.recording_id,
                "start_s": clip.start_s, "end_s": clip.end_s, "source": clip.source,
                "import_batch_id": clip.batch_id, "sha256": digest,
            }  # fmt: skip

    _table(folder, "clips", CLIP_COLUMNS, clip_rows())
    progress("clips", total, total)

    taxonomy = version.taxonomy_version
    _write_json(folder / "version.json", {
        "project": version.project.slug, "number": version.number,
        "format_version": FORMAT_VERSION, "query": version.query,
        "taxonomy": {
            "taxonomy": taxonomy.taxonomy.slug if taxonomy else None,
            "version": taxonomy.number if taxonomy else None,
            "mapping": None,
        },
        "aggregation": version.aggregation,
        "split": {"seed": version.split_seed, "targets": version.split_targets},
        "lineage": version.lineage, "code_version": version.code_version,
        "created_at": _iso(version.created_at),
        "created_by": version.created_by.username if version.created_by else None,
    })  # fmt: skip
    sheet = datasheet.figures(
        meta={"project": version.project.slug, "number": version.number},
        split_of=splits.by_clip,
        clips=sheet_clips,
        consensus={RINGS[ring]: consensus[ring] for ring in range(rings)},
        raters=len({r.rater for r in ratings[0]}),
        annotations=annotation_count,
        agreement=figures,
    )
    datasheet.write(folder, _rounded(sheet))
    write_sha256sums(folder)


def rebuild_into(version: DatasetVersion, folder: Path) -> str:
    """Build the version again into `folder` (for verification); the SHA-256 of its
    SHA256SUMS, to compare with `version.manifest_sha256`."""
    write_version(version, folder)
    return sha256_file(folder / "SHA256SUMS")


def build(version: DatasetVersion, progress: Progress = _none) -> DatasetVersion:
    """Write a claimed (building) version's folder and mark it ready.

    The folder is written under `<folder>.partial` (removed first: a crashed earlier try)
    and renamed into place. A ready version is never written again.
    """
    if version.status == DatasetVersion.Status.READY:
        raise ValueError("a ready dataset version is immutable; use rebuild_into to verify it")
    final = folder_of(version)
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_version(version, partial, progress)
    if final.exists():  # a failed try that got as far as the rename
        shutil.rmtree(final)
    partial.rename(final)
    version.manifest_sha256 = sha256_file(final / "SHA256SUMS")
    version.status = DatasetVersion.Status.READY
    version.finished_at = timezone.now()
    version.progress = {"stage": "ready", "done": version.progress.get("total", 0),
                        "total": version.progress.get("total", 0)}  # fmt: skip
    version.save(update_fields=["manifest_sha256", "status", "finished_at", "progress",
                                "split_history"])  # fmt: skip
    return version


def beat(version_id: int) -> Progress:
    """A progress callback that records (stage, done, total) on the row."""

    def report(stage: str, done: int, total: int) -> None:
        DatasetVersion.objects.filter(pk=version_id).update(
            progress={"stage": stage, "done": done, "total": total}
        )

    return report


def claim(version_id: int) -> DatasetVersion | None:
    """queued -> building (compare-and-set); None when someone else has it or it is gone."""
    claimed = DatasetVersion.objects.filter(
        pk=version_id, status=DatasetVersion.Status.QUEUED
    ).update(status=DatasetVersion.Status.BUILDING)
    if not claimed:
        return None
    return DatasetVersion.objects.select_related(
        "project", "taxonomy_version__taxonomy", "created_by"
    ).get(pk=version_id)


def run_build(version_id: int, progress: Progress | None = None) -> DatasetVersion | None:
    """Claim and build one version; a failure is recorded on the row (status failed, error)
    and raised again. None when there was nothing to claim (a retried task)."""
    version = claim(version_id)
    if version is None:
        return None
    try:
        return build(version, progress or beat(version_id))
    except Exception as exc:
        DatasetVersion.objects.filter(pk=version_id).update(
            status=DatasetVersion.Status.FAILED, error=f"{type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )  # fmt: skip
        raise
