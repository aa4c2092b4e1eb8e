"""A Label Studio JSON export imported as corpus annotations.

The export is a list of tasks: {"data": {"audio": "<url or path>"}, "annotations": [{
"completed_by": <id or {"email": …}>, "was_cancelled": bool, "result": [{"type":
"taxonomy", "value": {"taxonomy": [["Mad", "Angry"], …]}} | {"type": "choices", "value":
{"choices": ["angry"]}}]}]}.

- Audio: each task is matched to a clip of the project by the base name of `data.audio`
  (Label Studio prefixes uploads with a hash: `/data/upload/1/3f2a-a.wav` also matches a clip
  named `a.wav` when `3f2a-a.wav` is no clip's name), or, given an audio folder, ingested
  from the file of that name there (as one corpus batch, through the ordinary ingestion).
- Labels: a taxonomy path's last element, or a choice, is the label; it maps onto the
  wheel through a mapping (labelling/services/interop/mapping.py) or as a node key or a
  node name of the project's active version (case-insensitive). A result with several
  paths or choices takes the first.
- Raters: `labelstudio:<completed_by>` (an id, or the email of an expanded user), a
  named inactive user like a corpus rater; label_source "corpus". Label Studio users are
  never matched to the project's accounts, even with the same email: their labels are
  kept apart from the project's own annotators (docs/datasets.md, "Interop in").
  Cancelled annotations and results of other types are skipped.

Everything is checked first; any fault (unknown audio, unknown label, not a list of tasks)
is an InteropError and nothing is written. Re-importing the same export changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from django.contrib.auth.models import User
from django.db import transaction

from labelling.models import Clip, Project
from labelling.services.interop.corpus import (
    CorpusPlan,
    CorpusRow,
    _sha256,
    annotate,
)
from labelling.services.interop.corpus import apply_plan as apply_corpus_plan
from labelling.services.interop.mapping import InteropError, LabelMapping, _short
from labelling.services.interop.raters import rater


@dataclass(frozen=True)
class LabelStudioLabel:
    task: int  # index in the export
    audio: str  # the base name
    rater: str
    node_key: str


@dataclass(frozen=True)
class LabelStudioResult:
    tasks: int
    labels: int
    annotations_written: int
    new_files: int
    batch_id: int | None


def _audio_name(value: object) -> str:
    path = unquote(urlparse(str(value or "")).path)
    return PurePosixPath(path).name


def _rater_name(completed_by: object) -> str:
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("email") or completed_by.get("id")
    name = str(completed_by if completed_by not in (None, "") else "unknown").strip()
    return f"labelstudio:{name}"


def read_tasks(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InteropError(f"Cannot read Label Studio export {path.name}: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(t, dict) for t in data):
        raise InteropError(f"{path.name} is not a Label Studio JSON export (a list of tasks)")
    return data


def _labels_of(annotation: dict) -> list[str]:
    out: list[str] = []
    for result in annotation.get("result") or []:
        if not isinstance(result, dict):
            continue
        value = result.get("value") or {}
        if result.get("type") == "taxonomy" and value.get("taxonomy"):
            first = value["taxonomy"][0]
            out.append(str(first[-1] if isinstance(first, list) else first))
        elif result.get("type") == "choices" and value.get("choices"):
            out.append(str(value["choices"][0]))
    return out


def _resolver(mapping: LabelMapping | None, project_nodes: dict):
    names = {node.name.lower(): key for key, node in project_nodes.items()}
    keys = {key.lower(): key for key in project_nodes}

    def resolve(label: str) -> tuple[bool, str | None]:
        """(known, node key or None when dropped)."""
        if mapping is not None and label.strip() in mapping.targets:
            return True, mapping.targets[label.strip()]
        low = label.strip().lower()
        if low in keys:
            return True, keys[low]
        if low in names:
            return True, names[low]
        return False, None

    return resolve


def plan_labelstudio(
    project: Project, path: Path, mapping: LabelMapping, audio_dir: Path | None = None
) -> tuple[list[LabelStudioLabel], dict[str, int], dict[str, Path]]:
    """(labels, audio name -> existing clip id, audio name -> file to ingest); raises
    InteropError listing every fault."""
    tasks = read_tasks(path)
    clips: dict[str, list[int]] = {}
    for pk, name in Clip.objects.filter(project=project).values_list("pk", "original_name"):
        clips.setdefault(PurePosixPath(name).name, []).append(pk)
    files = (
        {p.name: p for p in audio_dir.rglob("*") if p.is_file()} if audio_dir is not None else {}
    )
    resolve = _resolver(mapping, mapping.nodes)
    problems: list[str] = []
    unknown_labels: set[str] = set()
    missing: list[str] = []
    labels: list[LabelStudioLabel] = []
    existing: dict[str, int] = {}
    to_ingest: dict[str, Path] = {}
    for index, task in enumerate(tasks):
        audio = _audio_name((task.get("data") or {}).get("audio"))
        if not audio:
            problems.append(f"task {index}: no data.audio")
            continue
        candidates = clips.get(audio) or []
        if not candidates and "-" in audio:  # Label Studio's upload prefix "<hash>-<name>"
            candidates = clips.get(audio.split("-", 1)[1]) or []
            audio = audio.split("-", 1)[1] if candidates else audio
        if len(candidates) > 1:
            problems.append(f"task {index}: several clips are named {audio!r}")
            continue
        if candidates:
            existing[audio] = candidates[0]
        elif audio in files:
            to_ingest[audio] = files[audio]
        else:
            missing.append(audio)
            continue
        for annotation in task.get("annotations") or []:
            if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
                continue
            for given in _labels_of(annotation)[:1]:
                known, key = resolve(given)
                if not known:
                    unknown_labels.add(given)
                elif key is not None:
                    labels.append(
                        LabelStudioLabel(
                            index, audio, _rater_name(annotation.get("completed_by")), key
                        )
                    )
    if missing:
        problems.append(
            f"{len(missing)} audio file(s) match no clip"
            + (" and are not in the audio folder" if audio_dir else " (give --audio-dir)")
            + f": {_short(missing)}"
        )
    if unknown_labels:
        problems.append(
            f"{len(unknown_labels)} label(s) are neither in the mapping nor a node of the "
            f"project's taxonomy: {_short(sorted(unknown_labels))}"
        )
    seen: set[tuple[str, str]] = set()
    for label in labels:
        if (label.audio, label.rater) in seen:
            problems.append(f"{label.rater} labels {label.audio!r} twice")
        seen.add((label.audio, label.rater))
    if problems:
        raise InteropError(problems)
    return labels, existing, to_ingest


def apply_labelstudio(
    project: Project,
    mapping: LabelMapping,
    labels: list[LabelStudioLabel],
    existing: dict[str, int],
    to_ingest: dict[str, Path],
    *,
    origin: str = "",
    user: User | None = None,
) -> LabelStudioResult:
    """Annotate the existing clips (one transaction); stage new audio as one corpus batch
    whose clips are annotated as they are created. A new file carries its first rater's
    label; the other raters' labels of a new file are written by a second pass once the
    clips exist (the command runs it after ingesting)."""
    written = 0
    batch_id: int | None = None
    with transaction.atomic():
        by_clip = Clip.objects.in_bulk(existing.values())
        for label in labels:
            if label.audio in existing:
                written += annotate(
                    by_clip[existing[label.audio]],
                    rater(label.rater),
                    mapping.nodes[label.node_key].pk,
                )
        first: dict[str, LabelStudioLabel] = {}
        for label in labels:
            if label.audio in to_ingest:
                first.setdefault(label.audio, label)
        if first:
            plan = CorpusPlan(project, mapping, origin)
            for audio, label in first.items():
                row = CorpusRow(audio, to_ingest[audio], "", label.node_key, "", {}, label.rater)
                row.sha256 = _sha256(row.path)
                plan.rows.append(row)
            plan.existing = dict(
                Clip.objects.filter(
                    project=project, sha256__in=[row.sha256 for row in plan.rows]
                ).values_list("sha256", "pk")
            )
            result = apply_corpus_plan(plan, user)
            written += result.annotations_written
            batch_id = result.batch.pk if result.batch is not None else None
    tasks = {label.task for label in labels}
    return LabelStudioResult(len(tasks), len(labels), written, len(first), batch_id)
