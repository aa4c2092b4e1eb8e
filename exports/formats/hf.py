"""Hugging Face `audiofolder` layout of a native version.

```
<name>-hf/
  train/metadata.parquet        one row per clip of the split; file_name relative to it
  train/audio/<clip_id>.wav
  validation/…                  the native "dev" split (HF's name for it)
  test/…
  version.json, datasheet.md|json, plots/   copied from the native version
```

Why Parquet and not metadata.jsonl/csv: `datasets` infers the features of a JSONL or CSV
metadata file from its first rows and refuses splits whose inferred features differ, so a
column that is empty in one split (no segmented recordings there: `recording_id` all null)
breaks loading. Parquet carries its schema: every split has the same typed columns, nulls
included. The file is written with pyarrow (installed with crowd-kit and pandas), in row
groups of ROW_GROUP rows, so memory holds one group; the bytes depend only on the rows (and
the pyarrow version, which the file names in its footer).

Columns: the clip's own (`clip_id`, `speaker_id`, `gender`, …, `sha256` of the audio file
here, `original_sha256`), then per ring
present (`core`, `secondary`, `tertiary`): `<ring>_majority`, `<ring>_majority_votes`,
`<ring>_tied`, `<ring>_soft` (the soft label as a JSON object string, label -> share),
`<ring>_dawid_skene`, `<ring>_dawid_skene_probability`, `<ring>_raters`, `<ring>_agreement`
(null where the clip has no label at that ring). Raw annotations are not in this format:
use the native tables for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from exports.formats.native import NativeVersion, Record

# native split -> Hugging Face split (the names `datasets` recognises as train/validation/test)
SPLIT_NAMES = {"train": "train", "dev": "validation", "test": "test"}
ROW_GROUP = 10_000
METADATA = "metadata.parquet"
CLIP_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("clip_id", pa.int64()),
    ("speaker_id", pa.string()),
    ("gender", pa.string()),
    ("age_band", pa.string()),
    ("language", pa.string()),
    ("dialect", pa.string()),
    ("channel", pa.string()),
    ("duration_s", pa.float64()),
    ("sample_rate", pa.int64()),
    ("recording_id", pa.int64()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("source", pa.string()),
    ("import_batch_id", pa.int64()),
    ("group", pa.string()),
    ("sha256", pa.string()),
    ("original_sha256", pa.string()),
)
# labels_<ring> column -> (metadata column suffix, type)
LABEL_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("label", pa.string()),
    ("adjudicated", pa.string()),
    ("majority", pa.string()),
    ("majority_votes", pa.int64()),
    ("tied", pa.bool_()),
    ("soft", pa.string()),
    ("dawid_skene", pa.string()),
    ("dawid_skene_probability", pa.float64()),
    ("raters", pa.int64()),
    ("agreement", pa.float64()),
)


def schema(rings: tuple[str, ...]) -> pa.Schema:
    """The metadata schema for a version with labels at `rings`."""
    fields = [pa.field("file_name", pa.string()), *(pa.field(n, t) for n, t in CLIP_FIELDS)]
    for ring in rings:
        fields += [pa.field(f"{ring}_{name}", kind) for name, kind in LABEL_FIELDS]
    return pa.schema(fields)


def _rows(
    native: NativeVersion, split: str, audio: Path, first: Callable[..., None]
) -> Iterator[Record]:
    for index, (clip, labels) in enumerate(native.clips_with_labels(split)):
        if index == 0:
            first(parents=True)
        name = f"audio/{clip['clip_id']}.wav"
        digest = native.copy_audio(clip, audio.parent / name)
        row: Record = {"file_name": name}
        row.update({field: clip.get(field) for field, _ in CLIP_FIELDS})
        row["sha256"] = digest
        for ring, found in labels.items():
            for field, _ in LABEL_FIELDS:
                row[f"{ring}_{field}"] = found[field] if found else None
        yield row


def write(native: NativeVersion, out: Path) -> None:
    """Write the audiofolder layout of `native` into the empty folder `out`. A split without
    clips gets no folder (`datasets` refuses a split folder without audio)."""
    kind = schema(native.rings)
    for split, hf_split in SPLIT_NAMES.items():
        audio = out / hf_split / "audio"
        writer: pq.ParquetWriter | None = None
        batch: list[Record] = []
        try:
            for row in _rows(native, split, audio, (audio).mkdir):
                batch.append(row)
                if len(batch) == ROW_GROUP:
                    writer = writer or pq.ParquetWriter(out / hf_split / METADATA, kind)
                    writer.write_table(pa.Table.from_pylist(batch, schema=kind))
                    batch = []
            if batch:
                writer = writer or pq.ParquetWriter(out / hf_split / METADATA, kind)
                writer.write_table(pa.Table.from_pylist(batch, schema=kind))
        finally:
            if writer is not None:
                writer.close()
    native.copy_provenance(out)
