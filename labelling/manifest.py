"""Import manifests: a CSV or JSON-lines file mapping file names to clip metadata.

Framework-free. Known columns fill the clip's fields; every other column goes to the clip's
free metadata, so nothing a user supplied is dropped.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

# The column naming the file, first match wins.
FILE_COLUMNS = ("file", "filename", "file_name", "path", "name", "audio")
# Manifest column -> Clip field.
FIELD_COLUMNS = {
    "speaker": "speaker_id",
    "speaker_id": "speaker_id",
    "gender": "gender",
    "sex": "gender",
    "age_band": "age_band",
    "language": "language",
    "lang": "language",
    "dialect": "dialect",
    "channel": "channel",
    "transcript": "transcript",
}
_GENDERS = {
    "f": "female",
    "female": "female",
    "w": "female",
    "woman": "female",
    "m": "male",
    "male": "male",
    "man": "male",
    "other": "other",
    "x": "other",
    "nonbinary": "other",
    "non-binary": "other",
    "": "",
    "unknown": "",
    "u": "",
    "na": "",
    "n/a": "",
}
AGE_BANDS = (
    (0, 17, "<18"),
    (18, 24, "18-24"),
    (25, 34, "25-34"),
    (35, 44, "35-44"),
    (45, 54, "45-54"),
    (55, 64, "55-64"),
    (65, 200, "65+"),
)


class ManifestError(ValueError):
    """The manifest cannot be read at all (as opposed to one odd row)."""


@dataclass
class ClipMetadata:
    """Field values for a clip plus the free-form remainder."""

    fields: dict[str, str] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"fields": self.fields, "extra": self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClipMetadata:
        return cls(fields=dict(data.get("fields", {})), extra=dict(data.get("extra", {})))


def age_band(age: str) -> str:
    """'31' -> '25-34'; a value that is not a whole number is kept as the band itself."""
    try:
        years = int(float(age))
    except ValueError:
        return age.strip()[:16]
    for low, high, band in AGE_BANDS:
        if low <= years <= high:
            return band
    return ""


def normalise_row(row: dict[str, object]) -> ClipMetadata:
    meta = ClipMetadata()
    for column, value in row.items():
        name = column.strip().lower()
        if name in FILE_COLUMNS:
            continue
        text = "" if value is None else str(value).strip()
        if name == "age":
            meta.fields["age_band"] = age_band(text)
            meta.extra["age"] = text
        elif name in FIELD_COLUMNS:
            target = FIELD_COLUMNS[name]
            if target == "gender":
                gender = _GENDERS.get(text.lower())
                if gender is None:  # keep what the user wrote rather than guess
                    gender = "other"
                    meta.extra["gender_raw"] = text
                meta.fields["gender"] = gender
            else:
                meta.fields[target] = text
        else:
            meta.extra[column.strip()] = value
    return meta


def read_rows(path: Path) -> list[dict[str, object]]:
    """The rows of a CSV or JSON-lines file as written: no column is mapped or dropped.

    The one reader of tabular metadata: `read_manifest` maps these rows onto clip fields;
    callers that need the columns as they are (the simulator's labels file) take them here.
    A CSV row's keys are the header's names, its values strings (None where the row is
    short). Raises ManifestError when the file cannot be read or is neither .csv nor .jsonl.
    """
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"Cannot read manifest {path.name}: {exc}") from exc
    if suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path.name} line {number}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise ManifestError(f"{path.name} line {number}: expected an object")
            rows.append(row)
        return rows
    raise ManifestError(f"Manifest {path.name} must be .csv or .jsonl")


def read_manifest(path: Path) -> dict[str, ClipMetadata]:
    """File name (as written in the manifest, POSIX separators) -> its metadata."""
    rows = read_rows(path)
    if not rows:
        return {}
    columns = {column.strip().lower(): column for column in rows[0]}
    file_column = next((columns[c] for c in FILE_COLUMNS if c in columns), None)
    if file_column is None:
        raise ManifestError(
            f"Manifest {path.name} has no file column (one of: {', '.join(FILE_COLUMNS)})"
        )
    result: dict[str, ClipMetadata] = {}
    for row in rows:
        name = str(row.get(file_column) or "").strip().replace("\\", "/")
        if name:
            result[name] = normalise_row(row)
    return result


def lookup(manifest: dict[str, ClipMetadata], relative_name: str) -> ClipMetadata:
    """Match by relative path first, then by base name."""
    if relative_name in manifest:
        return manifest[relative_name]
    base = PurePosixPath(relative_name).name
    return manifest.get(base, ClipMetadata())
