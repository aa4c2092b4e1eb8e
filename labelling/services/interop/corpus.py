"""A labelled corpus (a folder or archive of audio + a labels CSV) imported into a project.

The audio goes through the ordinary ingestion (an ImportBatch with source "corpus": the
same decoding, canonical copy, checks and workers). Each labelled clip gets one annotation
from the corpus rater (`corpus:<name>`, label_source "corpus").

1. `plan_corpus` reads and checks everything before anything is written: the CSV (a
   `file` column and the label column), every file present, every label known to the
   mapping, no file listed twice or with two labels. Any fault is an InteropError listing
   them all. It hashes every file: a clip already in the project is matched by sha256.
2. `apply_plan` (one transaction) annotates the clips already present and stages the new
   files as one batch whose manifest carries each file's speaker/gender/age and its corpus
   label; the annotation of a new clip is written in the same transaction that creates the
   clip (labelling.models_interop, whichever process ingests it: a worker or the CLI).

Re-running the same import changes nothing: every file is already a clip, every annotation
is already there, and no batch is created.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from labelling import archives
from labelling.manifest import FILE_COLUMNS, normalise_row
from labelling.models import Annotation, Clip, ClipSource, ImportBatch, LabelSource, Project
from labelling.models_interop import CORPUS_NODE_KEY, CORPUS_RATER_KEY
from labelling.services import ingest
from labelling.services.interop.mapping import InteropError, LabelMapping, _short
from labelling.services.interop.raters import rater

# Manifest columns that carry a new clip's corpus annotation to the process that ingests it.
RATER_COLUMN, NODE_COLUMN = CORPUS_RATER_KEY, CORPUS_NODE_KEY


@dataclass
class CorpusRow:
    file: str  # as the labels CSV names it
    path: Path
    label: str
    node_key: str
    sha256: str
    columns: dict[str, str]
    rater: str = ""  # the plan's rater when empty


@dataclass
class CorpusPlan:
    project: Project
    mapping: LabelMapping
    origin: str
    rows: list[CorpusRow] = field(default_factory=list)
    dropped: int = 0  # rows whose label the mapping drops on purpose
    existing: dict[str, int] = field(default_factory=dict)  # sha256 -> clip id

    @property
    def new_rows(self) -> list[CorpusRow]:
        return [row for row in self.rows if row.sha256 not in self.existing]


@dataclass(frozen=True)
class CorpusResult:
    labels: int  # rows mapped onto a node
    dropped: int
    existing_clips: int
    new_files: int
    annotations_written: int
    batch: ImportBatch | None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def audio_root(path: Path) -> Iterator[Path]:
    """The folder of audio: `path` itself, or an archive extracted (within the ingestion
    limits) into a temporary folder under the member names."""
    if path.is_dir():
        yield path
        return
    if not (path.is_file() and archives.is_archive_name(path.name)):
        raise InteropError(f"{path} is neither a folder nor a .zip/.tar(.gz) archive")
    # A private local folder: the import runs in this process, and what a worker needs is
    # staged through storage by ingest.stage_folder.
    with tempfile.TemporaryDirectory(prefix="emoloop-corpus-") as tmp:
        raw, root = Path(tmp) / "raw", Path(tmp) / "root"
        limits = archives.ExpandLimits(
            member_bytes=settings.EMOLOOP_MAX_FILE_BYTES,
            members=settings.EMOLOOP_MAX_ARCHIVE_MEMBERS,
            total_bytes=settings.EMOLOOP_MAX_ARCHIVE_BYTES,
        )
        try:
            for member, extracted in archives.iter_members(path, raw, limits):
                name = archives.safe_member_name(member.name)
                if extracted is None or name is None:
                    continue
                target = root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                extracted.rename(target)
        except Exception as exc:  # any archive fault is a refusal
            raise InteropError(f"Cannot read archive {path.name}: {exc}") from exc
        yield root


def read_labels(labels_csv: Path, label_column: str) -> list[dict[str, str]]:
    try:
        text = labels_csv.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InteropError(f"Cannot read labels {labels_csv.name}: {exc}") from exc
    try:
        rows = list(csv.DictReader(text.splitlines(), strict=True))
    except csv.Error as exc:
        raise InteropError(f"Labels {labels_csv.name} is not a valid CSV: {exc}") from exc
    if not rows:
        raise InteropError(f"Labels {labels_csv.name} has no rows")
    header = [c.strip().lower() for c in rows[0]]
    if not any(c in header for c in FILE_COLUMNS) or label_column.lower() not in header:
        raise InteropError(
            f"Labels {labels_csv.name} needs a file column ({', '.join(FILE_COLUMNS)}) and a "
            f"{label_column!r} column; it has {', '.join(header)}"
        )
    short = [n for n, row in enumerate(rows, start=2) if None in row.values() or None in row]
    if short:
        raise InteropError(f"Labels {labels_csv.name}: malformed rows at lines {short[:20]}")
    return [{k.strip().lower(): (v or "").strip() for k, v in row.items()} for row in rows]


def plan_corpus(
    project: Project, root: Path, labels_csv: Path, mapping: LabelMapping, origin: str = ""
) -> CorpusPlan:
    """Everything the import will do, checked; raises InteropError listing every fault."""
    rows = read_labels(labels_csv, mapping.label_column)
    column = mapping.label_column.lower()
    mapping.check_labels({row[column] for row in rows})
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    by_base: dict[str, list[Path]] = {}
    for rel, p in files.items():
        by_base.setdefault(PurePosixPath(rel).name, []).append(p)
    plan = CorpusPlan(project, mapping, origin or str(root))
    problems: list[str] = []
    missing: list[str] = []
    seen: set[str] = set()
    for row in rows:
        name = next(row[c] for c in FILE_COLUMNS if c in row).replace("\\", "/")
        if name in seen:
            problems.append(f"file {name!r} is listed twice")
            continue
        seen.add(name)
        path = files.get(name)
        if path is None:
            candidates = by_base.get(PurePosixPath(name).name, [])
            if len(candidates) > 1:
                problems.append(f"file {name!r} matches several files in the folder")
                continue
            path = candidates[0] if candidates else None
        if path is None:
            missing.append(name)
            continue
        node = mapping.node_for(row[column])
        if node is None:
            plan.dropped += 1
            continue
        plan.rows.append(CorpusRow(name, path, row[column], node.key, "", row))
    if missing:
        problems.append(f"{len(missing)} file(s) of the labels are missing: {_short(missing)}")
    if problems:
        raise InteropError(problems)
    for planned in plan.rows:
        planned.sha256 = _sha256(planned.path)
    by_sha: dict[str, str] = {}
    for planned in plan.rows:
        if by_sha.setdefault(planned.sha256, planned.node_key) != planned.node_key:
            problems.append(
                f"file {planned.file!r} has the same audio as another with another label"
            )
    if problems:
        raise InteropError(problems)
    plan.existing = dict(
        Clip.objects.filter(project=project, sha256__in=by_sha).values_list("sha256", "pk")
    )
    return plan


def annotate(clip: Clip, who: User, node_id: int) -> bool:
    """The rater's current annotation of the clip on `node_id`; True if one was written (a
    different earlier label is superseded, as a human's would be)."""
    current = Annotation.objects.filter(clip=clip, annotator=who, is_current=True).first()
    if current is not None and current.node_id == node_id:
        return False
    if current is not None:
        Annotation.objects.filter(pk=current.pk).update(is_current=False)
    Annotation.objects.create(
        clip=clip, annotator=who, node_id=node_id, label_source=LabelSource.CORPUS
    )
    return True


_CLIP_FIELDS = ("speaker_id", "gender", "age_band", "language", "dialect", "channel")


def _fill_empty_fields(clip: Clip, columns: dict[str, str]) -> None:
    meta = normalise_row(dict(columns))
    changed = [f for f in _CLIP_FIELDS if meta.fields.get(f) and not getattr(clip, f)]
    for name in changed:
        setattr(clip, name, meta.fields[name])
    if changed:
        clip.save(update_fields=changed)


def _write_manifest(plan: CorpusPlan, rows: list[CorpusRow], folder: Path) -> Path:
    columns = sorted({c for row in rows for c in row.columns} - set(FILE_COLUMNS))
    path = folder.parent / "corpus-manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", *columns, RATER_COLUMN, NODE_COLUMN])
        for row in rows:
            values = [row.columns.get(c, "") for c in columns]
            writer.writerow([row.file, *values, row.rater or plan.mapping.rater, row.node_key])
    return path


def apply_plan(plan: CorpusPlan, user: User | None = None) -> CorpusResult:
    """Annotate the clips already present and stage the new files (one transaction); the
    caller dispatches the batch (or processes it in-process) once this has committed."""
    if not plan.mapping.rater and not all(row.rater for row in plan.rows):
        raise InteropError("A corpus import needs a preset (it names the corpus rater).")
    written = 0
    batch: ImportBatch | None = None
    with transaction.atomic():
        who = {name: rater(name) for name in {row.rater or plan.mapping.rater for row in plan.rows}}
        nodes = plan.mapping.nodes
        clips = Clip.objects.in_bulk(plan.existing.values())
        for row in plan.rows:
            clip_id = plan.existing.get(row.sha256)
            if clip_id is None:
                continue
            clip = clips[clip_id]
            _fill_empty_fields(clip, row.columns)
            written += annotate(clip, who[row.rater or plan.mapping.rater], nodes[row.node_key].pk)
        new = plan.new_rows
        unique: dict[str, CorpusRow] = {}
        for row in new:
            unique.setdefault(row.sha256, row)
        if unique:
            with tempfile.TemporaryDirectory(prefix="emoloop-corpus-") as tmp:
                folder = Path(tmp) / "audio"
                for row in unique.values():
                    target = folder / row.file
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(row.path, target)
                manifest = _write_manifest(plan, list(unique.values()), folder)
                batch = ingest.stage_folder(
                    plan.project, folder, manifest_path=manifest, user=user,
                    source=ClipSource.CORPUS,
                )  # fmt: skip
            ImportBatch.objects.filter(pk=batch.pk).update(origin=plan.origin[:500])
    return CorpusResult(
        labels=len(plan.rows),
        dropped=plan.dropped,
        existing_clips=len(plan.rows) - len(new),
        new_files=len(unique),
        annotations_written=written,
        batch=batch,
    )
