"""audformat (audEERING) database of a native version.

```
<name>-audformat/
  db.yaml                     header: media, raters, schemes, splits, tables
  db.files.csv                filewise: every clip's metadata (speaker, gender, split, …)
  db.emotion.train.csv        filewise, split train: aggregated emotion per ring
  db.emotion.dev.csv, db.emotion.test.csv
  db.gold.csv                 filewise: the gold answer of each gold clip (rater "gold")
  db.ratings.csv              misc table indexed by annotation_id: every raw annotation
  audio/<clip_id>.wav
  version.json, datasheet.md|json, plots/   copied from the native version
```

Choices, and why:
- **Raw labels as a misc table** (`ratings`, index `annotation_id`, columns `file`,
  `annotator`, the node at each ring, skip, unsure, …): audformat's filewise and segmented
  tables are indexed by file (and start/end) only, so "file + rater" can only be a misc
  table or one column per rater; a column per rater is mostly empty when many annotators
  share the work, and would need the annotations grouped by file in memory. The misc table
  streams in the native order.
- **Aggregated labels per split** (`emotion.<split>`, audformat split types train/dev/test):
  per ring `<ring>` (rater `majority`), `<ring>_votes`, `<ring>_tied`, `<ring>_soft` (rater
  `soft`, the soft label as a JSON object string), `<ring>_dawid_skene` and
  `<ring>_dawid_skene_probability` (rater `dawid_skene`), `<ring>_raters`, `<ring>_agreement`.
- **Schemes** `emotion.<ring>` have as labels the node keys the version shows at that ring
  (version.json names the taxonomy version, not its nodes); `emotion.key` holds full keys
  (gold answers); `speaker`, `gender`, `split` (train/dev/test), `annotator` (labels: the
  pseudonyms) and one scheme per other typed column.
- **Raters**: one per pseudonymous annotator (type human), one per corpus rater such as
  `corpus:emodb` (type other), `majority`, `soft` and `dawid_skene` (type vote, over the
  human labels only, as in the native tables), `gold` (type truth).

Written without the audformat package (a development dependency only): the header is YAML
emitted here (every string JSON-quoted, which YAML reads as a double-quoted scalar) and the
tables are CSV from `exports.core.archive`'s writer, in the column order the header
declares, which is how `audformat.Database.load` reads them. Memory: the set of node keys
and raters (one pass over the tables first), then one row at a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exports.core.archive import CsvWriter, Row
from exports.formats.native import RINGS, SPLITS, NativeVersion

# Column -> scheme, dtype of the scheme (schemes named like their column).
FILE_COLUMNS = {
    "clip_id": "int", "split": "str", "group": "str", "duration_s": "float",
    "sample_rate": "int", "speaker": "str", "gender": "str", "age_band": "str",
    "language": "str", "dialect": "str", "channel": "str", "recording_id": "int",
    "start_s": "float", "end_s": "float", "source": "str", "import_batch_id": "int",
    "sha256": "str", "original_sha256": "str",
}  # fmt: skip
RATING_COLUMNS = {
    "file": "str", "annotator": "str", "label_source": "str", "core": "str",
    "secondary": "str", "tertiary": "str", "skip_reason": "str", "unsure": "bool",
    "intensity": "int", "valence": "float", "arousal": "float", "time_spent_ms": "int",
    "play_count": "int", "heard_to_end": "bool", "suggestion_shown": "bool",
    "created_at": "str",
}  # fmt: skip
SCHEME_DESCRIPTIONS = {
    "duration_s": "seconds",
    "start_s": "seconds into the recording",
    "end_s": "seconds into the recording",
    "emotion.soft": "share of the clip's raters per label, a JSON object",
    "emotion.key": "a full node key (any ring)",
    "probability": "posterior probability",
    "agreement": "pairwise agreement of the clip's raters",
    "count": "a count",
    "created_at": "ISO 8601 UTC",
}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


# A key written as it is (else JSON-quoted): letters, digits, "_", "." and "-", not starting
# with a digit or "-", and not a word YAML 1.1 reads as a boolean or null.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


def _key(key: str) -> str:
    plain = _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS
    return key if plain else _scalar(key)


def yaml_text(data: dict[str, Any], indent: str = "") -> str:
    """Block-style YAML for nested dicts of scalars and lists of scalars (flow style);
    keys in the order given, plain where safe; string values always JSON-quoted.
    Deterministic for the same input."""
    lines: list[str] = []
    for key, value in data.items():
        name = _key(key)
        if isinstance(value, dict):
            if value:
                lines.append(f"{indent}{name}:")
                lines.append(yaml_text(value, indent + "  ").rstrip("\n"))
            else:
                lines.append(f"{indent}{name}: {{}}")
        elif isinstance(value, list):
            lines.append(f"{indent}{name}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            lines.append(f"{indent}{name}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


def _schemes(keys: dict[str, list[str]], raters: dict[str, str]) -> dict[str, Any]:
    schemes: dict[str, Any] = {}
    for ring in RINGS:
        if ring in keys:
            schemes[f"emotion.{ring}"] = {"dtype": "str", "labels": keys[ring]}
    schemes["emotion.key"] = {"dtype": "str"}
    schemes["emotion.soft"] = {"dtype": "str"}
    schemes["probability"] = {"dtype": "float", "minimum": 0, "maximum": 1}
    schemes["agreement"] = {"dtype": "float", "minimum": 0, "maximum": 1}
    schemes["count"] = {"dtype": "int", "minimum": 0}
    schemes["tied"] = {"dtype": "bool"}
    for column, dtype in {**FILE_COLUMNS, **RATING_COLUMNS}.items():
        if column in RINGS or column == "file":
            continue
        schemes.setdefault(column, {"dtype": dtype})
    schemes["split"] = {"dtype": "str", "labels": list(SPLITS)}
    schemes["annotator"] = {"dtype": "str", "labels": list(raters)}
    for scheme_id, description in SCHEME_DESCRIPTIONS.items():
        schemes[scheme_id]["description"] = description
    return dict(sorted(schemes.items()))


def _ring_scheme(ring: str, keys: dict[str, list[str]]) -> str:
    """`emotion.<ring>`, or `emotion.key` for a ring nobody's label reaches (no labels)."""
    return f"emotion.{ring}" if ring in keys else "emotion.key"


def _emotion_columns(
    rings: tuple[str, ...], keys: dict[str, list[str]]
) -> dict[str, dict[str, str]]:
    """Column id -> {scheme_id, rater_id} of the per-split emotion tables."""
    columns: dict[str, dict[str, str]] = {}
    for ring in rings:
        scheme = _ring_scheme(ring, keys)
        columns[ring] = {"scheme_id": scheme, "rater_id": "majority"}
        columns[f"{ring}_votes"] = {"scheme_id": "count", "rater_id": "majority"}
        columns[f"{ring}_tied"] = {"scheme_id": "tied", "rater_id": "majority"}
        columns[f"{ring}_soft"] = {"scheme_id": "emotion.soft", "rater_id": "soft"}
        columns[f"{ring}_dawid_skene"] = {"scheme_id": scheme, "rater_id": "dawid_skene"}
        columns[f"{ring}_adjudicated"] = {"scheme_id": scheme, "rater_id": "adjudication"}
        columns[f"{ring}_dawid_skene_probability"] = {
            "scheme_id": "probability", "rater_id": "dawid_skene"
        }  # fmt: skip
        columns[f"{ring}_raters"] = {"scheme_id": "count"}
        columns[f"{ring}_agreement"] = {"scheme_id": "agreement"}
    return columns


def header(native: NativeVersion, keys: dict[str, list[str]], raters: dict[str, str]) -> str:
    """The db.yaml text."""
    # `file` is a plain column here (a misc table has no file index): no scheme.
    ratings_columns: dict[str, Any] = {"file": {}}
    ratings_columns.update(
        {
            column: {"scheme_id": _ring_scheme(column, keys) if column in RINGS else column}
            for column in RATING_COLUMNS
            if column != "file"
        }
    )
    tables: dict[str, Any] = {
        "files": {"type": "filewise", "media_id": "audio", "columns": {
            column: {"scheme_id": column} for column in FILE_COLUMNS
        }},
    }  # fmt: skip
    for split in SPLITS:
        tables[f"emotion.{split}"] = {
            "type": "filewise", "split_id": split, "media_id": "audio",
            "columns": _emotion_columns(native.rings, keys),
        }  # fmt: skip
    tables["gold"] = {"type": "filewise", "media_id": "audio", "columns": {
        "gold": {"scheme_id": "emotion.key", "rater_id": "gold"}
    }}  # fmt: skip
    meta = native.meta
    taxonomy = meta.get("taxonomy") or {}
    description = (
        f"EmoLoop dataset version {meta['number']} of project {meta['project']} "
        f"(taxonomy {taxonomy.get('taxonomy')} v{taxonomy.get('version')})."
    )
    document: dict[str, Any] = {
        "name": native.name,
        "description": description,
        "source": "EmoLoop",
        "usage": "restricted",
        "languages": [],
        "media": {
            "audio": {
                "type": "audio",
                "format": "wav",
                "channels": 1,
                "bit_depth": 16,
                "sampling_rate": 16000,
            }
        },
        "raters": {
            **{
                rater: {"type": "human"}
                if source == "human"
                else {"type": "other", "description": f"label_source {source}"}
                for rater, source in raters.items()
            },
            "adjudication": {"type": "human", "description": "a reviewer's adjudication"},
            "dawid_skene": {"type": "vote", "description": "Dawid-Skene (crowd-kit)"},
            "gold": {"type": "truth", "description": "the gold answer of a gold clip"},
            "majority": {"type": "vote", "description": "majority vote, tie rule in docs"},
            "soft": {"type": "vote", "description": "share of raters per label"},
        },
        "schemes": _schemes(keys, raters),
        "splits": {split: {"type": split} for split in SPLITS},
        "tables": tables,
        "misc_tables": {
            "ratings": {"levels": {"annotation_id": "int"}, "columns": ratings_columns}
        },
    }
    return yaml_text(document)


def _file_rows(native: NativeVersion, audio: Path) -> Iterator[Row]:
    for clip in native.rows("clips"):
        name = f"audio/{clip['clip_id']}.wav"
        digest = native.copy_audio(clip, audio.parent / name)
        row = {column: clip.get(column) for column in FILE_COLUMNS}
        row["speaker"], row["sha256"] = clip["speaker_id"], digest
        yield {"file": name, **row}


def _emotion_rows(native: NativeVersion, split: str) -> Iterator[Row]:
    for clip, labels in native.clips_with_labels(split):
        row: dict[str, Any] = {"file": f"audio/{clip['clip_id']}.wav"}
        for ring, found in labels.items():
            values = found or {}
            row[ring] = values.get("majority")
            row[f"{ring}_votes"] = values.get("majority_votes")
            row[f"{ring}_tied"] = values.get("tied")
            row[f"{ring}_soft"] = values.get("soft")
            row[f"{ring}_dawid_skene"] = values.get("dawid_skene")
            row[f"{ring}_adjudicated"] = values.get("adjudicated")
            row[f"{ring}_dawid_skene_probability"] = values.get("dawid_skene_probability")
            row[f"{ring}_raters"] = values.get("raters")
            row[f"{ring}_agreement"] = values.get("agreement")
        yield row


def _gold_rows(native: NativeVersion) -> Iterator[Row]:
    if not native.has("gold"):
        return
    last: int | None = None
    for row in native.rows("gold"):  # sorted by clip, one row per annotator
        if row["clip_id"] != last:
            last = row["clip_id"]
            yield {"file": f"audio/{last}.wav", "gold": row["gold_label"]}


def _rating_rows(native: NativeVersion) -> Iterator[Row]:
    for row in native.rows("annotations"):
        values = {column: row.get(column) for column in RATING_COLUMNS if column != "file"}
        yield {"annotation_id": row["annotation_id"], "file": f"audio/{row['clip_id']}.wav",
               **values}  # fmt: skip


def write(native: NativeVersion, out: Path) -> None:
    """Write the audformat database of `native` into the empty folder `out`."""
    keys, raters = native.node_keys(), native.raters()
    (out / "db.yaml").write_text(header(native, keys, raters), encoding="utf-8", newline="\n")
    audio = out / "audio"
    audio.mkdir()
    CsvWriter(["file", *FILE_COLUMNS]).write(out / "db.files.csv", _file_rows(native, audio))
    emotion = ["file", *_emotion_columns(native.rings, keys)]
    for split in SPLITS:
        CsvWriter(emotion).write(out / f"db.emotion.{split}.csv", _emotion_rows(native, split))
    CsvWriter(["file", "gold"]).write(out / "db.gold.csv", _gold_rows(native))
    CsvWriter(["annotation_id", *RATING_COLUMNS]).write(
        out / "db.ratings.csv", _rating_rows(native)
    )
    native.copy_provenance(out)
