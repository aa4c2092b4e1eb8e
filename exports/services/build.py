"""Building a dataset version's folder in the native layout (docs/datasets.md, v1).

Rows are streamed from the database in primary-key order (`.iterator(chunk_size=…)`) and
written with `exports.core.archive`'s writers (each table and its JSONL twin in one pass,
no row kept); only the human ratings (clip, rater, label per ring) and
one small tuple per clip are kept in memory for aggregation, splits and the datasheet. The
folder is written in a local scratch folder and then saved file by file into
default_storage under the version's `folder` (`versions.store_folder`, SHA256SUMS last).

What a version contains is fixed by its row: labels, clips, weak labels and rankings
created after the version's `created_at` are left out, and labels are mapped onto the
version's own taxonomy version (`exports.services.labels`), so rebuilding it later (for
verification, `rebuild_into`) gives the same bytes as long as no label was changed or
deleted since. Corpus labels (`label_source` "corpus") are exported in `annotations` under
their rater's name and count in no aggregate, agreement or gold figure.

`options["audio"]`: "copy" writes `audio/<clip_id>.wav` and its SHA-256; "reference" writes
no audio: `file_name` and `sha256` are empty and `audio_uri` is the canonical file's storage
name (relative to MEDIA_ROOT). `original_sha256` (the stored `Clip.sha256`, the hash of the
file as uploaded, or of a segment's WAV cut from its recording) is there in both modes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import heapq
import json
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.core.files.storage import default_storage
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from exports.core import aggregation as agg
from exports.core import coded, plots
from exports.core.archive import MANIFEST, Row, sha256_file, write_sha256sums, write_twin_tables
from exports.core.splits import SplitClip, assign_splits, group_of
from exports.models import DatasetVersion
from exports.services import datasheet, ds_fit, labels, lineage, versions
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
    "audio_uri",
    "original_sha256",
)
LABEL_COLUMNS = (
    "clip_id",
    "label",
    "adjudicated",
    "raters",
    "majority",
    "majority_votes",
    "tied",
    "soft",
    "dawid_skene",
    "dawid_skene_probability",
    "agreement",
)
NO_LABEL = "(none)"
# What the clip table reads of each clip (values_list; `canonical` is the storage name).
CLIP_FIELDS = (
    "pk", "duration_s", "sample_rate", "speaker_id", "gender", "age_band", "language",
    "dialect", "channel", "recording_id", "start_s", "end_s", "source", "batch_id", "sha256",
    "canonical",
)  # fmt: skip
GOLD_COLUMNS = ("clip_id", "annotator", "gold_label", "label", "correct")

Progress = versions.Progress
# The build task's limits (exports.tasks.build_dataset). A version of 100,000 clips builds
# in about a minute plus the audio copy (issue 10's target); the limit leaves room for slow
# disks. At the soft limit the build records its failure; a worker killed outright records
# nothing, so the beat fails versions building for longer than TIME_LIMIT + STALE_MARGIN
# (`reap_stale_builds`).
TIME_LIMIT = 3600
SOFT_TIME_LIMIT = TIME_LIMIT - 60
STALE_MARGIN = 300
STALE_ERROR = (
    "The build's worker stopped without finishing (killed, or past its time limit of "
    f"{TIME_LIMIT} s). Create a new version to build it again."
)


def _none(_stage: str, _done: int, _total: int) -> None:
    return None


def _load_libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _load_libc()


def give_back_memory() -> None:
    """Return the C heap's free pages to the system (glibc's malloc_trim; nothing elsewhere).

    The aggregation stage's arrays (tens of MB each, freed when it ends) raise glibc's
    mmap threshold, so the later stages' allocations of a few MB land in the heap, whose
    free pages glibc keeps: the process stayed ~35 MB above what it held while the
    Dawid-Skene worker, beside it, was at its own peak. Called between stages; a few ms."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _table(folder: Path, name: str, columns: tuple[str, ...], rows: Iterator[Row]) -> int:
    """Write the rows to `<name>.csv` and its JSONL twin in one pass (same rows, same order;
    no row is kept: memory stays flat however many rows)."""
    return write_twin_tables(folder / f"{name}.csv", folder / f"{name}.jsonl", columns, rows)


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


def _rings(version: DatasetVersion) -> int:
    """How many rings the version's taxonomy has (1 to 3)."""
    if version.taxonomy_version_id is None:
        return 1
    deepest = TaxonomyNode.objects.filter(version_id=version.taxonomy_version_id).aggregate(
        d=Max("level")
    )["d"]
    return 1 + int(deepest or 0)


def ds_parameters(version: DatasetVersion) -> tuple[int, float]:
    """(n_iter, tol) of Dawid-Skene as recorded on the version (its `aggregation`), so a
    rebuild fits with the settings the version was built with."""
    recorded = (version.aggregation or {}).get("dawid_skene") or {}
    return int(recorded.get("n_iter", agg.DS_N_ITER)), float(recorded.get("tol", agg.DS_TOL))


def _label_rows(
    ring: coded.CodedRing,
    votes: coded.Votes,
    adjudicated: dict[int, str],
    ring_number: int,
    ds: tuple[np.ndarray, np.ndarray],
) -> Iterator[Row]:
    """labels_<ring> rows, sorted by clip.

    `label` is the label to train on: a reviewer's adjudication (at this ring) where there
    is one, else the majority vote; `adjudicated` says which. A clip decided at a ring that
    none of its ratings reaches has a row of its own there (no votes, 0 raters). `ds`:
    Dawid-Skene's label code and its posterior per item, in `ring.items` order."""
    here: dict[int, str] = {
        item: key for item, full in adjudicated.items() if (key := agg.at_ring(full, ring_number))
    }
    voted = zip(
        ring.items.tolist(), [ring.labels[code] for code in votes.label.tolist()],
        votes.votes.tolist(), votes.raters.tolist(), votes.tied.tolist(),
        coded.soft_and_pairwise(ring, votes), ds[0].tolist(), ds[1].tolist(), strict=True,
    )  # fmt: skip
    unvoted = sorted(set(here).difference(ring.items.tolist()))
    for item, *vote in heapq.merge(voted, ((item,) for item in unvoted), key=lambda v: v[0]):
        decided = here.get(item)
        if not vote:  # decided at a ring no annotator's label reaches: no votes
            yield {"clip_id": item, "label": decided, "adjudicated": decided, "raters": 0,
                   "majority": None, "majority_votes": 0, "tied": False, "soft": "{}",
                   "dawid_skene": None, "dawid_skene_probability": None,
                   "agreement": None}  # fmt: skip
            continue
        label, count, raters, tied, (soft, pairwise), ds_code, ds_probability = vote
        ds_label = ring.labels[ds_code]
        yield {
            "clip_id": item, "label": decided or label, "adjudicated": decided,
            "raters": raters, "majority": label, "majority_votes": count, "tied": tied,
            "soft": json.dumps(_rounded(soft), sort_keys=True),
            "dawid_skene": ds_label, "dawid_skene_probability": ds_probability,
            "agreement": pairwise,
        }  # fmt: skip


def _given_keys(decided: dict[int, tuple[int, Any]]) -> dict[int, str]:
    """node id -> its own key, for the adjudicated nodes (the key as the reviewer chose it)."""
    nodes = {node for node, _when in decided.values()}
    return dict(TaxonomyNode.objects.filter(pk__in=nodes).values_list("pk", "key"))


def _copy_audio(canonical: str, target: Path) -> str:
    """Copy a clip's canonical audio (its storage name) to `target`; the SHA-256 of what
    was written."""
    digest = hashlib.sha256()
    with default_storage.open(canonical, "rb") as source, target.open("wb") as out:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _agreement(
    rings: list[coded.CodedRing], votes: list[coded.Votes], gold: dict[int, str]
) -> dict[str, Any]:
    """agreement.json: human ratings only (corpus labels never count here). Each rater
    against the majority vote of the ring (every rated clip has one)."""
    figures: dict[str, Any] = {}
    for number, (ring, vote) in enumerate(zip(rings, votes, strict=True)):
        gold_at: dict[int, str] = {
            clip: label for clip, key in gold.items() if (label := agg.at_ring(key, number))
        }
        figures[RINGS[number]] = {
            "alpha": coded.alpha(ring, vote),
            "alpha_per_class": coded.alpha_per_class(ring, vote),
            "rater_vs_majority": {
                rater: vars(result)
                for rater, result in coded.rater_vs_consensus(ring, vote.label).items()
            },
            "gold_accuracy": {
                rater: vars(result) for rater, result in coded.gold_accuracy(ring, gold_at).items()
            },
        }
    return figures


def _previous_history(version: DatasetVersion) -> dict[str, str]:
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
    return previous or {}


def write_version(version: DatasetVersion, folder: Path, progress: Progress = _none) -> int:
    """Write the whole native layout of `version` into `folder` (which must not exist);
    the number of clips written. Dawid-Skene runs in a worker process meanwhile (ds_fit)."""
    with ds_fit.RingFits(*ds_parameters(version)) as fits:
        return _write(version, folder, progress, fits)


def _write(version: DatasetVersion, folder: Path, progress: Progress, fits: ds_fit.RingFits) -> int:
    folder.mkdir(parents=True)
    copy_audio = version.options.get("audio", "copy") == "copy"
    if copy_audio:
        (folder / "audio").mkdir()
    clips = selected_clips(version)
    total = clips.count()
    names = labels.pseudonyms(version)
    rings = _rings(version)
    decided = labels.adjudications(version, clips)
    keys = labels.key_map(version, clips, also=(node for node, _when in decided.values()))

    progress("annotations", 0, total)
    gold_keys: dict[int, str] = {
        clip: key
        for clip, node in GoldClip.objects.filter(clip_id__in=clips.values("pk")).values_list(
            "clip_id", "node_id"
        )
        if (key := keys.key(node)) is not None
    }
    # The human ratings per ring first (a narrow query), each ring coded and grouped once
    # (exports.core.coded); Dawid-Skene of every ring goes to the worker at once, the outer
    # ring first: its fit is the worker's largest (72 labels), done while this process is
    # smallest, and the fits are the build's critical path. Their labels are written last.
    rated = [ring.finish() for ring in labels.human_ratings(version, clips, names, keys, rings)]
    ds_pending = [fits.submit_coded(ring.for_dawid_skene()) for ring in reversed(rated)][::-1]
    collected = labels.Collected(rings=[], gold_keys=gold_keys)
    annotation_count = _table(
        folder,
        "annotations",
        labels.ANNOTATION_COLUMNS,
        labels.annotation_rows(version, clips, names, keys, collected),
    )
    collected.annotators = len(rated[0].raters)

    progress("aggregation", 0, total)
    adjudicated = {clip: key for clip, (node, _when) in decided.items() if (key := keys.key(node))}
    _table(
        folder, "adjudications", labels.ADJUDICATION_COLUMNS,
        labels.adjudication_rows(decided, keys, _given_keys(decided)),
    )  # fmt: skip
    votes = [ring.votes() for ring in rated]
    consensus = [
        dict(zip(ring.items.tolist(), [ring.labels[c] for c in vote.label.tolist()], strict=True))
        for ring, vote in zip(rated, votes, strict=True)
    ]

    gold_rows: list[Row] = sorted(
        (
            {"clip_id": clip, "annotator": rater, "gold_label": gold_keys[clip], "label": key,
             "correct": agg.at_ring(key, 0) == agg.at_ring(gold_keys[clip], 0)}
            for (clip, rater), key in collected.gold_given.items()
        ),
        key=lambda row: (row["clip_id"], row["annotator"]),
    )  # fmt: skip
    _table(folder, "gold", GOLD_COLUMNS, iter(gold_rows))
    figures = _agreement(rated, votes, gold_keys)
    _write_json(folder / "agreement.json", figures)

    _table(folder, "weak_labels", labels.WEAK_LABEL_COLUMNS, labels.weak_label_rows(version, clips))

    give_back_memory()
    progress("splits", 0, total)
    # One string object per distinct value (a speaker's group, a gender, a language) instead
    # of one per clip: 100,000 clips name a few hundred speakers (~30 MB less, held from
    # here until the datasheet is written).
    shared: dict[Any, Any] = {}

    def one(value: Any) -> Any:
        return shared.setdefault(value, value)

    split_input = [
        SplitClip(
            clip_id=pk,
            group=one(group_of(speaker, recording, pk)),
            # A clip with no human label at the core ring (only corpus labels, or labels a
            # taxonomy update dropped) is still in the dataset, in its own stratum.
            label=consensus[0].get(pk, NO_LABEL),
            gender=gender or "unknown",
        )
        for pk, speaker, recording, gender in clips.values_list(
            "pk", "speaker_id", "recording_id", "gender"
        ).iterator(chunk_size=CHUNK)
    ]
    splits = assign_splits(
        split_input, version.split_targets, version.split_seed,
        previous=_previous_history(version),
    )  # fmt: skip
    groups = {c.clip_id: c.group for c in split_input}
    del split_input
    _write_json(folder / "splits.json", splits.history)
    version.split_history = splits.history

    # clip -> (duration, gender, speaker, age band, language, channel) for the datasheet.
    sheet_clips: dict[int, datasheet.ClipFacts] = {}

    def clip_rows() -> Iterator[Row]:
        # Plain tuples from a server-side cursor, not model instances: the clip table is
        # the build's longest stream after the annotations.
        fields = clips.values_list(*CLIP_FIELDS, named=True).iterator(chunk_size=CHUNK)
        for done, clip in enumerate(fields, start=1):
            sheet_clips[clip.pk] = (clip.duration_s, one(clip.gender), one(clip.speaker_id),
                                    one(clip.age_band), one(clip.language),
                                    one(clip.channel))  # fmt: skip
            if copy_audio:
                name: str | None = f"audio/{clip.pk}.wav"
                uri = None
                digest: str | None = _copy_audio(clip.canonical, folder / f"audio/{clip.pk}.wav")
            else:
                name, uri, digest = None, str(clip.canonical), None
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
                "import_batch_id": clip.batch_id, "sha256": digest, "audio_uri": uri,
                "original_sha256": clip.sha256,
            }  # fmt: skip

    _table(folder, "clips", CLIP_COLUMNS, clip_rows())
    progress("clips", total, total)

    progress("lineage", 0, total)
    summary = lineage.LineageSummary()
    selections = lineage.lineage_rows(version, clips, summary)
    _table(folder, "lineage", lineage.LINEAGE_COLUMNS, selections)
    version.lineage = summary.as_json(total)

    # The datasheet does not need Dawid-Skene: its figures are made and written while the
    # worker may still be fitting, then this process gives back what only they needed before
    # it waits for the worker. Its plots (matplotlib, ~30 MB) are drawn after the worker ended.
    progress("datasheet", 0, total)
    taxonomy = version.taxonomy_version
    _write_json(folder / "version.json", {
        "project": version.project.slug, "number": version.number,
        "format_version": FORMAT_VERSION, "query": version.query, "options": version.options,
        "taxonomy": {
            "taxonomy": taxonomy.taxonomy.slug if taxonomy else None,
            "version": taxonomy.number if taxonomy else None,
            "mapping": keys.applied,
        },
        "aggregation": version.aggregation,
        "split": {"seed": version.split_seed, "targets": version.split_targets},
        "lineage": version.lineage, "code_version": version.code_version,
        "created_at": labels.iso(version.created_at),
        "created_by": version.created_by.username if version.created_by else None,
    })  # fmt: skip
    sheet = datasheet.figures(
        datasheet.SheetInput(
            meta={"project": version.project.slug, "number": version.number},
            split_of=splits.by_clip,
            clips=sheet_clips,
            consensus={RINGS[ring]: consensus[ring] for ring in range(rings)},
            collected=collected,
            annotations=annotation_count,
            agreement=figures,
            project={
                "annotators_per_clip": version.project.annotators_per_clip,
                "gold_rate": version.project.gold_rate,
                "assisted": version.project.assisted,
            },
            lineage=version.lineage,
            mapping=keys.applied,
        )
    )
    sheet = _rounded(sheet)
    datasheet.write_text(folder, sheet)
    del consensus, collected, figures
    sheet_clips.clear()  # the clip table's closure holds these three
    groups.clear()
    shared.clear()
    give_back_memory()

    progress("labels", 0, total)
    for ring in range(rings):
        rows = _label_rows(rated[ring], votes[ring], adjudicated, ring, ds_pending[ring].arrays())
        _table(folder, f"labels_{RINGS[ring]}", LABEL_COLUMNS, rows)
    fits.close()

    progress("plots", 0, total)
    plots.write_all(folder / "plots", sheet)
    write_sha256sums(folder)
    return total


def rebuild_into(version: DatasetVersion, folder: Path) -> str:
    """Build the version again into `folder` (for verification); the SHA-256 of its
    SHA256SUMS, to compare with `version.manifest_sha256`."""
    write_version(version, folder)
    return sha256_file(folder / "SHA256SUMS")


def build(version: DatasetVersion, progress: Progress = _none) -> DatasetVersion:
    """Write a claimed (building) version's files into storage and mark it ready.

    The folder is written in a private local scratch folder (tempfile), then each file is
    saved into default_storage under the version's `folder` (SHA256SUMS last; whatever a
    crashed earlier try left there is removed first), so the same code serves local and S3
    storage. A ready version is never written again.
    """
    if version.status == DatasetVersion.Status.READY:
        raise ValueError("a ready dataset version is immutable; use rebuild_into to verify it")
    with tempfile.TemporaryDirectory(prefix="emoloop-dataset-") as scratch:
        local = Path(scratch) / Path(version.folder).name
        clips = write_version(version, local, progress)
        progress("storing", 0, clips)
        versions.store_folder(local, version.folder)
        version.manifest_sha256 = sha256_file(local / MANIFEST)
    version.status = DatasetVersion.Status.READY
    version.finished_at = timezone.now()
    # The beats went to the row, not to this object: the count is the build's own.
    version.progress = {"stage": "ready", "done": clips, "total": clips}
    version.save(update_fields=["manifest_sha256", "status", "finished_at", "progress",
                                "split_history", "lineage"])  # fmt: skip
    return version


def beat(version_id: int) -> Progress:
    """A progress callback that records (stage, done, total) on the version's row."""
    return versions.progress_recorder(DatasetVersion, version_id)


def claim(version_id: int) -> DatasetVersion | None:
    """queued -> building, started now (compare-and-set); None when someone else has it
    or it is gone."""
    claimed = DatasetVersion.objects.filter(
        pk=version_id, status=DatasetVersion.Status.QUEUED
    ).update(status=DatasetVersion.Status.BUILDING, started_at=timezone.now())
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
            status=DatasetVersion.Status.FAILED, error=versions.failure_reason(exc, "build"),
            finished_at=timezone.now(),
        )  # fmt: skip
        raise


def reap_stale_builds(now: datetime | None = None) -> int:
    """Beat: mark versions building since before TIME_LIMIT + STALE_MARGIN (their worker
    is gone) as failed with STALE_ERROR; returns how many. Versions from before started_at
    existed count from their creation."""
    now = now or timezone.now()
    before = now - timedelta(seconds=TIME_LIMIT + STALE_MARGIN)
    old = Q(started_at__lt=before) | Q(started_at__isnull=True, created_at__lt=before)
    return DatasetVersion.objects.filter(old, status=DatasetVersion.Status.BUILDING).update(
        status=DatasetVersion.Status.FAILED, error=STALE_ERROR, finished_at=now
    )
