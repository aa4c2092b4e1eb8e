"""An external model's predictions imported as weak labels (`WeakLabel`), with provenance.

Accepted files (one row per clip):

- CSV: a `clip` column (clip id) or a `file` column (the clip's original file name), then
  one column per label holding its probability. Optional `model`/`model_version` columns
  must agree with the names given to the import.
- JSON lines: {"clip": 12 | "file": "a.wav", "probabilities": {"label": p, ...}} per line
  (optionally "model", "model_version", checked likewise).

Labels are the model's own names, mapped onto the wheel with a mapping (labelling/services/
interop/mapping.py; several labels may map onto one node: their probabilities add up), or
node keys of the project's active taxonomy. Probabilities of labels the mapping drops are
left out and the rest renormalised. Every row is checked before anything is written: an
unknown clip or label, probabilities outside [0, 1] or not summing to 1 (±0.01), a clip
given twice, or a weak label of the same model version that differs, is an InteropError
listing the faults. Re-importing the same file changes nothing.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.contrib.auth.models import User
from django.db import transaction

from labelling.models import Clip, Project, TaxonomyNode, WeakLabel
from labelling.services.interop.mapping import InteropError, LabelMapping, _short

SUM_TOLERANCE = 0.01
ID_COLUMNS = ("clip", "clip_id")
FILE_COLUMNS = ("file", "file_name", "filename", "path")
MODEL_COLUMNS = ("model", "model_name", "model_version")


@dataclass(frozen=True)
class PredictionResult:
    rows: int
    created: int
    unchanged: int


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def read_prediction_rows(path: Path) -> list[tuple[str, dict[str, object], dict[str, object]]]:
    """(line ref, {clip|file: …, model…}, {label: raw probability}) per row, as written."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InteropError(f"Cannot read {path.name}: {exc}") from exc
    suffix = path.suffix.lower()
    out: list[tuple[str, dict[str, object], dict[str, object]]] = []
    if suffix == ".csv":
        try:
            rows = list(csv.DictReader(text.splitlines(), strict=True))
        except csv.Error as exc:
            raise InteropError(f"{path.name} is not a valid CSV: {exc}") from exc
        for number, row in enumerate(rows, start=2):
            if None in row or None in row.values():
                raise InteropError(f"{path.name} line {number}: wrong number of columns")
            keys = {k.strip().lower(): v for k, v in row.items()}
            ident = {k: keys[k] for k in (*ID_COLUMNS, *FILE_COLUMNS, *MODEL_COLUMNS) if k in keys}
            labels = {
                k.strip(): v
                for k, v in row.items()
                if k.strip().lower() not in (*ID_COLUMNS, *FILE_COLUMNS, *MODEL_COLUMNS)
            }
            out.append((f"line {number}", ident, labels))
    elif suffix in (".jsonl", ".ndjson"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InteropError(f"{path.name} line {number}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("probabilities"), dict):
                raise InteropError(
                    f'{path.name} line {number}: expected {{"clip" or "file", "probabilities"}}'
                )
            ident = {k: row[k] for k in (*ID_COLUMNS, *FILE_COLUMNS, *MODEL_COLUMNS) if k in row}
            out.append(
                (f"line {number}", ident, {str(k): v for k, v in row["probabilities"].items()})
            )
    else:
        raise InteropError(f"{path.name}: predictions must be .csv or .jsonl")
    if not out:
        raise InteropError(f"{path.name} has no rows")
    return out


def _clip_resolver(project: Project):
    ids = dict(Clip.objects.filter(project=project).values_list("pk", "pk"))
    by_name: dict[str, list[int]] = {}
    for pk, name in Clip.objects.filter(project=project).values_list("pk", "original_name"):
        by_name.setdefault(name, []).append(pk)
        base = PurePosixPath(name).name
        if base != name:
            by_name.setdefault(base, []).append(pk)

    def resolve(ident: dict[str, object]) -> tuple[int | None, str]:
        for column in ID_COLUMNS:
            if column in ident and str(ident[column]).strip():
                raw = str(ident[column]).strip()
                pk = int(raw) if raw.isdigit() else None
                return (ids.get(pk) if pk is not None else None), f"clip {raw!r}"
        for column in FILE_COLUMNS:
            if column in ident and str(ident[column]).strip():
                raw = str(ident[column]).strip().replace("\\", "/")
                found = by_name.get(raw) or by_name.get(PurePosixPath(raw).name) or []
                if len(found) > 1:
                    return None, f"file {raw!r} (several clips have that name: give clip ids)"
                return (found[0] if found else None), f"file {raw!r}"
        return None, "a row without a clip or file"

    return resolve


def plan_predictions(
    project: Project, path: Path, mapping: LabelMapping, model: str, version: str
) -> list[WeakLabel]:
    """The weak labels a file gives, checked; unsaved. Raises InteropError on any fault."""
    if not model.strip() or not version.strip():
        raise InteropError("A model name and a model version are required.")
    version_id = project.taxonomy_version_id
    if version_id is None:
        raise InteropError(f"Project {project.slug} has no taxonomy: assign one first.")
    rows = read_prediction_rows(path)
    resolve = _clip_resolver(project)
    problems: list[str] = []
    labels_seen = {label for _, _, probs in rows for label in probs}
    unknown = sorted(label for label in labels_seen if label.strip() not in mapping.targets)
    if unknown:
        problems.append(f"{len(unknown)} label(s) not in mapping {mapping.name}: {_short(unknown)}")
    order = {node.key: (node.level, node.order, node.pk) for node in mapping.nodes.values()}
    seen: dict[int, str] = {}
    planned: list[WeakLabel] = []
    for where, ident, probs in rows:
        for column, expected in (
            ("model", model),
            ("model_name", model),
            ("model_version", version),
        ):
            if column in ident and str(ident[column]).strip() != expected:
                problems.append(f"{where}: {column} {ident[column]!r} is not {expected!r}")
        clip_id, named = resolve(ident)
        if clip_id is None:
            problems.append(f"{where}: unknown {named}")
            continue
        if clip_id in seen:
            problems.append(f"{where}: {named} was already given at {seen[clip_id]}")
            continue
        seen[clip_id] = where
        values = {label: _float(p) for label, p in probs.items()}
        bad = sorted(label for label, p in values.items() if p is None or not 0 <= p <= 1)
        if bad:
            problems.append(f"{where}: probabilities not in [0, 1] for {_short(bad)}")
            continue
        total = sum(p for p in values.values() if p is not None)
        if abs(total - 1) > SUM_TOLERANCE:
            problems.append(f"{where}: probabilities sum to {total:.4f}, not 1")
            continue
        if unknown:
            continue
        mapped: dict[str, float] = {}
        for label, p in values.items():
            key = mapping.targets[label.strip()]
            if key is not None and p is not None:
                mapped[key] = mapped.get(key, 0.0) + p
        kept = sum(mapped.values())
        if kept <= 0:
            problems.append(f"{where}: every label with probability is dropped by the mapping")
            continue
        mapped = {
            k: round(p / kept, 6) for k, p in sorted(mapped.items(), key=lambda kv: order[kv[0]])
        }
        top = max(mapped, key=lambda k: (mapped[k], tuple(-x for x in order[k])))
        planned.append(
            WeakLabel(
                clip_id=clip_id,
                model_name=model.strip(),
                model_version=version.strip(),
                taxonomy_version_id=version_id,
                probabilities=mapped,
                top_node=mapping.nodes[top],
                top_probability=mapped[top],
                source_probabilities=dict(values),
                source_file=path.name[:500],
            )
        )
    if problems:
        raise InteropError(problems)
    return planned


def apply_predictions(
    project: Project, planned: list[WeakLabel], user: User | None = None
) -> PredictionResult:
    """Write the planned weak labels in one transaction; an existing weak label of the same
    model version that differs is refused (nothing written), an identical one is kept."""
    if not planned:
        return PredictionResult(0, 0, 0)
    model, version = planned[0].model_name, planned[0].model_version
    with transaction.atomic():
        existing = {
            w.clip_id: w
            for w in WeakLabel.objects.select_for_update().filter(
                clip__project=project, model_name=model, model_version=version
            )
        }
        new: list[WeakLabel] = []
        differ: list[str] = []
        for weak in planned:
            old = existing.get(weak.clip_id)
            if old is None:
                weak.imported_by = user
                new.append(weak)
            elif old.probabilities != weak.probabilities:
                differ.append(str(weak.clip_id))
        if differ:
            raise InteropError(
                f"{model} {version} already has different weak labels for clip(s) "
                f"{_short(differ)}: import them as a new model version"
            )
        WeakLabel.objects.bulk_create(new, batch_size=2000)
    return PredictionResult(len(planned), len(new), len(planned) - len(new))


def node_ancestors(version_id: int | None) -> dict[str, str]:
    """Node key -> its core ancestor's key, for a taxonomy version (none without one)."""
    nodes = {n.pk: n for n in TaxonomyNode.objects.filter(version_id=version_id)}
    out: dict[str, str] = {}
    for node in nodes.values():
        step = node
        while step.parent_id is not None and step.parent_id in nodes:
            step = nodes[step.parent_id]
        out[node.key] = step.key
    return out
