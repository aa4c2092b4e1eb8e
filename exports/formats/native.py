"""Reading a ready dataset version in the native layout (v1, docs/datasets.md).

Every converter reads the native folder through this module, never by parsing its files ad
hoc. Tables are read from their JSON Lines twin (typed values: ints, floats, booleans and
nulls as written, where the CSV twin has only text), one row at a time. Framework-free.

What a converter may rely on (the builder's contract): every table's rows are sorted by
their first column; `clips` and `labels_<ring>` by `clip_id` (ascending integers), so they
can be merged in one pass (`clips_with_labels`) without holding either in memory;
`weak_labels` (when present) by (clip_id, model, model_version).

Audio: a version built with its audio ("copy") has `audio/<clip_id>.wav` (`file_name`); one
built by reference has no audio, only `audio_uri` (the canonical file's storage name,
relative to MEDIA_ROOT). `copy_audio` takes either: the caller passes `audio_root` (the
MEDIA_ROOT) for the second kind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
RINGS = ("core", "secondary", "tertiary")
SPLITS = ("train", "dev", "test")
# What every format carries over as it is: what defined the version, and its datasheet.
PROVENANCE = ("version.json", "datasheet.md", "datasheet.json", "plots")

Record = dict[str, Any]


class NativeLayoutError(ValueError):
    """The folder is not a ready native version this code can read."""


@dataclass(frozen=True)
class NativeVersion:
    """A ready version folder. `meta` is its version.json; `rings` the rings it has labels
    for (`labels_<ring>.jsonl` present), coarsest first."""

    folder: Path
    meta: dict[str, Any]
    rings: tuple[str, ...]
    audio_root: Path | None = None

    @classmethod
    def open(cls, folder: Path, audio_root: Path | None = None) -> NativeVersion:
        folder = Path(folder)
        try:
            meta = json.loads((folder / "version.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NativeLayoutError(f"{folder}: no version.json (not a native version)") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise NativeLayoutError(
                f"{folder}: native format_version {meta.get('format_version')!r}, "
                f"this code reads {FORMAT_VERSION}"
            )
        for table in ("clips", "annotations", "labels_core"):
            if not (folder / f"{table}.jsonl").is_file():
                raise NativeLayoutError(f"{folder}: {table}.jsonl is missing")
        rings = tuple(ring for ring in RINGS if (folder / f"labels_{ring}.jsonl").is_file())
        return cls(folder=folder, meta=meta, rings=rings, audio_root=audio_root)

    @property
    def name(self) -> str:
        """`<project-slug>-v<N>`, the folder name the builder gives a version."""
        return f"{self.meta['project']}-v{self.meta['number']}"

    def has(self, table: str) -> bool:
        return (self.folder / f"{table}.jsonl").is_file()

    def rows(self, table: str) -> Iterator[Record]:
        """The rows of `<table>.jsonl` in file order, one at a time."""
        with (self.folder / f"{table}.jsonl").open(encoding="utf-8") as file:
            for line in file:
                yield json.loads(line)

    def audio(self, clip: Record) -> Path:
        """Where a clip's audio is: `file_name` in the folder, else `audio_uri` under
        `audio_root` (a version built by reference)."""
        if clip.get("file_name"):
            return _inside(self.folder, str(clip["file_name"]))
        if clip.get("audio_uri") and self.audio_root is not None:
            return _inside(self.audio_root, str(clip["audio_uri"]))
        raise NativeLayoutError(
            f"clip {clip['clip_id']}: the version has its audio by reference "
            f"({clip.get('audio_uri')!r}); give audio_root (the MEDIA_ROOT) to read it"
        )

    def copy_audio(self, clip: Record, target: Path) -> str:
        """Copy a clip's audio to `target` and return its SHA-256, checked against the
        clip's `sha256` when the version has one (NativeLayoutError if they differ)."""
        digest = hashlib.sha256()
        with self.audio(clip).open("rb") as source, target.open("wb") as out:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        found = digest.hexdigest()
        if clip.get("sha256") and clip["sha256"] != found:
            raise NativeLayoutError(f"clip {clip['clip_id']}: the audio does not match sha256")
        return found

    def copy_provenance(self, out: Path) -> None:
        """Copy version.json, the datasheet and its plots (those present) into `out`."""
        for name in PROVENANCE:
            source = self.folder / name
            if source.is_dir():
                shutil.copytree(source, out / name)
            elif source.is_file():
                shutil.copyfile(source, out / name)

    def weak_labels_by_clip(self) -> Iterator[tuple[int, list[Record]]]:
        """(clip_id, its weak_labels rows) by clip_id; nothing when the table is absent."""
        if not self.has("weak_labels"):
            return
        current: int | None = None
        group: list[Record] = []
        for row in self.rows("weak_labels"):
            if row["clip_id"] != current and current is not None:
                yield current, group
                group = []
            current = row["clip_id"]
            group.append(row)
        if current is not None:
            yield current, group

    def clips_with_labels(
        self, split: str | None = None
    ) -> Iterator[tuple[Record, dict[str, Record | None]]]:
        """(clip row, {ring: labels row or None}) for every clip (of `split`), by clip_id.

        A merge of `clips` with each `labels_<ring>`, all sorted by clip_id: memory stays
        one row per table. A clip has no row at a ring when none of its labels reaches that
        ring (or all its annotations there are skips).
        """
        readers = {ring: _Cursor(self.rows(f"labels_{ring}")) for ring in self.rings}
        previous: int | None = None
        for clip in self.rows("clips"):
            clip_id = clip["clip_id"]
            if previous is not None and clip_id <= previous:
                raise NativeLayoutError(f"clips.jsonl is not sorted by clip_id at {clip_id}")
            previous = clip_id
            labels = {ring: reader.take(clip_id) for ring, reader in readers.items()}
            if split is None or clip["split"] == split:
                yield clip, labels

    def annotations_by_clip(self) -> Iterator[tuple[int, list[Record]]]:
        """(clip_id, its annotation rows sorted by (annotator, annotation_id)), by clip_id.

        `annotations` is sorted by annotation_id, not by clip: the rows are sorted on disk
        (an SQLite file in a temporary folder) so that memory holds one clip's rows at a time
        whatever the number of annotations.
        """
        with tempfile.TemporaryDirectory(prefix="emoloop-sort-") as scratch:
            database = sqlite3.connect(Path(scratch) / "sort.db")
            try:
                database.execute(
                    "CREATE TABLE a (clip INTEGER, annotator TEXT, id INTEGER, row TEXT)"
                )
                database.executemany(
                    "INSERT INTO a VALUES (?, ?, ?, ?)",
                    (
                        (row["clip_id"], row["annotator"], row["annotation_id"], json.dumps(row))
                        for row in self.rows("annotations")
                    ),
                )
                database.commit()
                current: int | None = None
                group: list[Record] = []
                for clip, text in database.execute(
                    "SELECT clip, row FROM a ORDER BY clip, annotator, id"
                ):
                    if clip != current and current is not None:
                        yield current, group
                        group = []
                    current = clip
                    group.append(json.loads(text))
                if current is not None:
                    yield current, group
            finally:
                database.close()

    def node_keys(self) -> dict[str, list[str]]:
        """ring -> the sorted node keys found at that ring in the annotations, the
        aggregated labels and the gold answers.

        version.json names the taxonomy version but not its nodes, so this is the taxonomy
        as far as the version shows it: nodes nobody chose are absent.
        """
        found: dict[str, set[str]] = {ring: set() for ring in RINGS}
        for row in self.rows("annotations"):
            for ring in RINGS:
                if row.get(ring):
                    found[ring].add(row[ring])
        if self.has("gold"):
            for row in self.rows("gold"):
                for key in (row["gold_label"], row["label"]):
                    parts = key.split(".") if key else []
                    for depth in range(min(len(parts), len(RINGS))):
                        found[RINGS[depth]].add(".".join(parts[: depth + 1]))
        for ring in self.rings:
            for row in self.rows(f"labels_{ring}"):
                for column in ("majority", "dawid_skene", "adjudicated"):
                    if row.get(column):
                        found[ring].add(row[column])
        return {ring: sorted(keys) for ring, keys in found.items() if keys}

    def raters(self) -> dict[str, str]:
        """rater -> its label_source (`human` for the pseudonymous annotators, `corpus` for a
        corpus rater such as `corpus:emodb`), for every rater in `annotations`, sorted."""
        found = {row["annotator"]: row.get("label_source") or "human"
                 for row in self.rows("annotations")}  # fmt: skip
        return dict(sorted(found.items()))


def _inside(root: Path, name: str) -> Path:
    """`root / name`, refused if it leads outside `root` ("..", an absolute name, a link)."""
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()):
        raise NativeLayoutError(f"{name!r} leads outside {root}")
    return path


class _Cursor:
    """One pass over rows sorted by ascending clip_id: `take(clip_id)` returns that clip's
    row or None, never going back."""

    def __init__(self, rows: Iterator[Record]) -> None:
        self._rows = rows
        self._head: Record | None = next(rows, None)

    def take(self, clip_id: int) -> Record | None:
        if self._head is not None and self._head["clip_id"] < clip_id:
            raise NativeLayoutError(
                f"a labels row for clip {self._head['clip_id']}, which is not in clips "
                "(or the table is not sorted by clip_id)"
            )
        if self._head is not None and self._head["clip_id"] == clip_id:
            row, self._head = self._head, next(self._rows, None)
            return row
        return None


class ClipGroups:
    """One pass over (clip_id, rows) pairs by ascending clip_id (`annotations_by_clip`,
    `weak_labels_by_clip`): `take(clip_id)` returns that clip's rows or [], never going
    back."""

    def __init__(self, groups: Iterator[tuple[int, list[Record]]]) -> None:
        self._groups = groups
        self._head = next(groups, None)

    def take(self, clip_id: int) -> list[Record]:
        if self._head is not None and self._head[0] < clip_id:
            raise NativeLayoutError(f"rows for clip {self._head[0]}, which is not in clips")
        if self._head is not None and self._head[0] == clip_id:
            rows, self._head = self._head[1], next(self._groups, None)
            return rows
        return []
