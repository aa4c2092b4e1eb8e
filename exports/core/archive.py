"""Deterministic files for dataset versions: CSV/JSONL tables, SHA256SUMS, zip archives.

Framework-free (no Django). The Django side writes a version into a folder under storage
with the table writers, seals it with `write_sha256sums`, and serves it file by file or as
one zip streamed by `iter_zip`. Everything here is built so that the bytes depend only on
the rows and file contents given, never on the clock, the order files were created in, their
mtimes or permissions, the platform, or the locale:

- Tables: a fixed column order, one formatting per type (`_normal`), "\\n" line ends, UTF-8
  without BOM. Floats are rounded to FLOAT_DECIMALS decimal places and written as Python's
  shortest round-trip repr (the same text in CSV and JSONL); NaN and infinities are refused.
- Tables stream: rows come from any iterator and go out through a CHUNK_BYTES buffer, so
  memory does not grow with the number of rows.
- No half-written file is ever under its final name: every file is written to a temporary
  name in the same folder and renamed into place on success; a failure removes it.
- Folder listings (manifest and zip) hold every regular file, sorted by relative POSIX path
  (code-point order, which equals `LC_ALL=C sort` of the UTF-8 names). Empty folders are not
  represented. A symbolic link to a file counts as that file's contents; a symbolic link to
  a folder, a broken link or anything but a regular file is refused, as is a name that
  `sha256sum` would escape ("\\n", "\\r", "\\\\") or that is not valid UTF-8.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import numbers
import os
import re
import stat
import tempfile
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Literal, TypeAlias

# A table cell as callers give it; numpy integers and floats are accepted through `numbers`.
Cell: TypeAlias = str | int | float | bool | None
Row: TypeAlias = Mapping[str, Cell]
# Floats are rounded to this many decimal places: microseconds for durations, far below any
# meaningful difference in a probability or an agreement figure, and enough to absorb the
# last-bit noise of a different summation order.
FLOAT_DECIMALS = 6
# Reads from disk, writes to disk and chunks yielded by iter_zip are about this size.
CHUNK_BYTES = 1 << 20
MANIFEST = "SHA256SUMS"
# Zip's epoch: the earliest timestamp a zip entry can hold (DOS date), on every entry.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# Every entry is a regular file, rw-r--r--, made on Unix (so unzip reads the mode).
ZIP_EXTERNAL_ATTR = (stat.S_IFREG | 0o644) << 16
ZIP_UNIX = 3
# Compression policy: text is deflated at level 6 (zlib's default); everything else (audio,
# PNG plots) is stored, since it barely compresses and storing keeps serving cheap. Deflate
# output is fixed for a given zlib: byte-identical rebuilds assume the same zlib
# (`zlib.ZLIB_RUNTIME_VERSION`), which the same deployment has.
DEFLATE_LEVEL = 6
TEXT_SUFFIXES = frozenset({".csv", ".json", ".jsonl", ".md", ".tsv", ".txt"})
_SUMS_LINE = re.compile(r"([0-9a-f]{64})  (.+)")
_UNSAFE_NAME_CHARS = ("\n", "\r", "\\")


class RowError(ValueError):
    """A row a table writer refuses: not a mapping, unknown or missing columns, a bad cell."""


# --- Tables -------------------------------------------------------------------------------

Normal: TypeAlias = str | int | float | bool | None


def _normal(value: Cell) -> Normal:
    """The one plain value a cell is written as (see the module docstring for the rules)."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is float or (
        isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
    ):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{number} is not a finite number")
        return round(number, FLOAT_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
    if isinstance(value, str):
        return str.__str__(value)  # a str subclass (StrEnum) writes its text, as json does
    if isinstance(value, numbers.Integral):
        return int(value)
    raise TypeError(f"unsupported type {type(value).__module__}.{type(value).__qualname__}")


def _csv_text(value: Normal) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@contextmanager
def _atomic(path: Path) -> Iterator[IO[bytes]]:
    """A binary file that appears at `path` only if the block succeeds.

    It is written under a temporary name in the same folder (so the rename is atomic), flushed
    to disk, given mode 0o644 and renamed over `path`; on any error it is removed and `path`
    keeps whatever it held before.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb", buffering=CHUNK_BYTES) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class TableWriter(ABC):
    """Writes rows with a fixed set of columns to a file, streaming.

    Invariants: every row has exactly `columns` (an unknown or missing column is a RowError
    naming the row and the columns); the output depends only on the columns and the row
    values; the file is complete under its final name or absent (the previous file, if any,
    is left as it was).
    """

    suffix = ""

    def __init__(self, columns: Sequence[str]) -> None:
        if isinstance(columns, str) or not columns:
            raise ValueError("columns: give a non-empty sequence of column names")
        if not all(isinstance(column, str) and column for column in columns):
            raise ValueError(f"columns: every name must be a non-empty string: {columns!r}")
        duplicates = sorted({column for column in columns if columns.count(column) > 1})
        if duplicates:
            raise ValueError(f"columns: repeated names {duplicates}")
        self.columns = tuple(columns)
        self._expected = frozenset(columns)

    def write(self, path: Path, rows: Iterable[Row]) -> int:
        """Write `rows` to `path` (atomically) and return how many were written."""
        with _atomic(Path(path)) as binary:
            text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
            count = self._write(text, self._normalised(rows))
            text.flush()
            text.detach()  # the binary file is closed by _atomic
        return count

    def _normalised(self, rows: Iterable[Row]) -> Iterator[list[Normal]]:
        """Each row's values in column order, checked and normalised."""
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, Mapping):
                raise RowError(f"row {number}: expected a mapping, got {type(row).__name__}")
            if row.keys() != self._expected:
                unknown = sorted(str(key) for key in row.keys() - self._expected)
                missing = sorted(self._expected - row.keys())
                raise RowError(f"row {number}: unknown columns {unknown}, missing {missing}")
            values: list[Normal] = []
            for column in self.columns:
                value = row[column]
                kind = type(value)
                if kind is str or kind is int or value is None or kind is bool:
                    values.append(value)  # already plain: what _normal would return
                    continue
                try:
                    values.append(_normal(value))
                except (TypeError, ValueError) as error:
                    raise RowError(f"row {number}, column {column!r}: {error}") from None
            yield values

    @abstractmethod
    def _write(self, file: IO[str], rows: Iterator[list[Normal]]) -> int: ...


class CsvWriter(TableWriter):
    """CSV: a header row, then one line per row; minimal quoting (RFC 4180 style, doubled
    quotes), "\\n" line ends. None is an empty cell (so is ""; JSONL tells them apart),
    booleans are `true`/`false`."""

    suffix = ".csv"

    def _write(self, file: IO[str], rows: Iterator[list[Normal]]) -> int:
        writer = csv.writer(file, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(self.columns)
        count = 0
        for values in rows:
            writer.writerow([_csv_text(value) for value in values])
            count += 1
        return count


class JsonlWriter(TableWriter):
    """JSON Lines: one object per row with every column (null for None), keys sorted, no
    spaces, non-ASCII text as itself, "\\n" after every line."""

    suffix = ".jsonl"

    def _write(self, file: IO[str], rows: Iterator[list[Normal]]) -> int:
        encoder = json.JSONEncoder(
            sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
        count = 0
        for values in rows:
            file.write(encoder.encode(dict(zip(self.columns, values, strict=True))))
            file.write("\n")
            count += 1
        return count


def write_twin_tables(
    csv_path: Path, jsonl_path: Path, columns: Sequence[str], rows: Iterable[Row]
) -> int:
    """Write `rows` to a CSV and a JSONL file in one pass; how many were written.

    The bytes of each file are those of CsvWriter(columns).write and
    JsonlWriter(columns).write on the same rows (a test compares them), but every row is
    checked and normalised once and never kept: no second pass over the rows, no spool. Each
    file is complete under its final name or absent, like the single writers'.
    """
    csv_writer = CsvWriter(columns)  # checks the column names
    names = csv_writer.columns
    encoder = json.JSONEncoder(
        sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )
    count = 0
    with _atomic(Path(csv_path)) as csv_binary, _atomic(Path(jsonl_path)) as jsonl_binary:
        csv_text = io.TextIOWrapper(csv_binary, encoding="utf-8", newline="")
        jsonl_text = io.TextIOWrapper(jsonl_binary, encoding="utf-8", newline="")
        table = csv.writer(csv_text, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        table.writerow(names)
        write_line = jsonl_text.write
        for values in csv_writer._normalised(rows):
            table.writerow([_csv_text(value) for value in values])
            write_line(encoder.encode(dict(zip(names, values, strict=True))))
            write_line("\n")
            count += 1
        for text in (csv_text, jsonl_text):
            text.flush()
            text.detach()
    return count


# --- Folder listing and SHA256SUMS --------------------------------------------------------


def _raise(error: OSError) -> None:
    raise error


def list_files(folder: Path) -> list[str]:
    """The relative POSIX name of every regular file under `folder`, sorted.

    Raises ValueError for what the module docstring refuses (symlinked folders, broken links,
    non-regular files, unsafe names), and OSError for an unreadable folder: nothing is
    skipped silently. Names only (not Path objects): 100,000 clips stay a few MB.
    """
    folder = Path(folder)
    found: list[str] = []
    for directory, subfolders, names in os.walk(folder, onerror=_raise):
        here = Path(directory)
        for name in subfolders:  # os.walk lists a link to a folder here and does not enter it
            if (here / name).is_symlink():
                relative = (here / name).relative_to(folder).as_posix()
                raise ValueError(f"{relative}: a symbolic link to a folder")
        for name in names:
            path = here / name
            relative = path.relative_to(folder).as_posix()
            try:
                mode = path.stat().st_mode
            except FileNotFoundError:
                raise ValueError(f"{relative}: a broken symbolic link") from None
            if not stat.S_ISREG(mode):
                raise ValueError(f"{relative}: not a regular file")
            _check_name(relative)
            found.append(relative)
    found.sort()
    return found


def _check_name(relative: str) -> None:
    if any(char in relative for char in _UNSAFE_NAME_CHARS):
        raise ValueError(f"{relative!r}: a file name with a newline or backslash")
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{relative!r}: a file name that is not valid UTF-8") from None


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's contents, read in chunks."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _digests(folder: Path) -> dict[str, str]:
    folder = Path(folder)
    return {name: sha256_file(folder / name) for name in list_files(folder) if name != MANIFEST}


def sha256sums(folder: Path) -> str:
    """The SHA256SUMS text for `folder`, in coreutils' format: "<hex>  <name>\\n" per file,
    sorted by name, every file but the top-level SHA256SUMS itself."""
    return "".join(f"{digest}  {name}\n" for name, digest in _digests(folder).items())


def write_sha256sums(folder: Path) -> Path:
    """Write (atomically) and return `folder`/SHA256SUMS; `sha256sum -c` accepts it."""
    path = Path(folder) / MANIFEST
    text = sha256sums(folder)
    with _atomic(path) as file:
        file.write(text.encode("utf-8"))
    return path


@dataclass(frozen=True, order=True)
class Problem:
    """One disagreement between a folder and its SHA256SUMS. `path` is the relative name;
    for "malformed" it is SHA256SUMS:<line number>."""

    path: str
    kind: Literal["missing", "extra", "changed", "malformed"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}"


def verify_sha256sums(folder: Path) -> list[Problem]:
    """Check `folder` against its SHA256SUMS; an empty list means every file is listed, is
    present and has its listed digest, and nothing else is there. Sorted by path."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return [Problem(MANIFEST, "missing")]
    problems: list[Problem] = []
    listed: dict[str, str] = {}
    try:
        lines = path.read_bytes().decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return [Problem(f"{MANIFEST}:1", "malformed")]
    if lines[-1] != "":
        problems.append(Problem(f"{MANIFEST}:{len(lines)}", "malformed"))  # no final "\n"
    for number, line in enumerate(lines[:-1], start=1):
        match = _SUMS_LINE.fullmatch(line)
        if match is None or match[2] in listed or match[2] == MANIFEST:
            problems.append(Problem(f"{MANIFEST}:{number}", "malformed"))
        else:
            listed[match[2]] = match[1]
    actual = _digests(folder)
    for name in listed.keys() - actual.keys():
        problems.append(Problem(name, "missing"))
    for name in actual.keys() - listed.keys():
        problems.append(Problem(name, "extra"))
    for name in listed.keys() & actual.keys():
        if listed[name] != actual[name]:
            problems.append(Problem(name, "changed"))
    return sorted(problems)


# --- Zip ----------------------------------------------------------------------------------


class _Sink:
    """What zipfile writes into: a byte buffer that iter_zip drains as it fills. It has no
    tell() or seek(), so zipfile streams (sizes and CRC in a data descriptor after each
    entry's data, the same bytes whoever consumes them)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer = bytearray()
        return data


def compression_for(name: str) -> int:
    """The zip compression of an entry, by the policy of DEFLATE_LEVEL (above)."""
    suffix = Path(name).suffix.lower()
    deflate = suffix in TEXT_SUFFIXES or Path(name).name == MANIFEST
    return zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED


def _zip_info(name: str, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.compress_type = compression_for(name)
    info.create_system = ZIP_UNIX
    info.external_attr = ZIP_EXTERNAL_ATTR
    info.file_size = size  # decides, before writing, whether the entry needs zip64
    return info


@dataclass(frozen=True)
class ZipEntry:
    """One file of a zip: its name in the archive, its size, and how to open it (binary).
    The source may be anything that reads (a local file, a storage object)."""

    name: str
    size: int
    open: Callable[[], IO[bytes]]


def _open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


def iter_zip(folder: Path) -> Iterator[bytes]:
    """A zip of every file under `folder` (see list_files), as chunks of about CHUNK_BYTES.

    Entries are sorted by name, stamped ZIP_EPOCH, mode 0o644, without extra fields (zip64
    fields only for entries or archives past 4 GiB / 65,535 entries), compressed by
    `compression_for`; no folder entries. Memory stays at a few CHUNK_BYTES whatever the
    file sizes, plus one small ZipInfo per entry for the central directory at the end.
    Raises ValueError if a file changes size while it is read.
    """
    folder = Path(folder)

    def entry(name: str) -> ZipEntry:
        path = folder / name
        return ZipEntry(name, path.stat().st_size, partial(_open_binary, path))

    return iter_zip_entries(entry(name) for name in list_files(folder))


def iter_zip_entries(entries: Iterable[ZipEntry]) -> Iterator[bytes]:
    """`iter_zip` of the given entries, in the order given (sorted names give the same
    bytes as `iter_zip` of a folder holding those files): a version in storage is zipped
    from its objects without a local copy."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compresslevel=DEFLATE_LEVEL) as archive:
        for item in entries:
            _check_name(item.name)
            with item.open() as source:
                read = 0
                with archive.open(_zip_info(item.name, item.size), "w") as entry:
                    while chunk := source.read(CHUNK_BYTES):
                        entry.write(chunk)
                        read += len(chunk)
                        if len(sink.buffer) >= CHUNK_BYTES:
                            yield sink.take()
            if read != item.size:
                raise ValueError(f"{item.name}: changed size while it was archived")
            if len(sink.buffer) >= CHUNK_BYTES:
                yield sink.take()
    yield sink.take()  # the rest, with the central directory


def deterministic_zip(folder: Path, out_path: Path) -> str:
    """Write iter_zip(folder) to `out_path` (atomically; it must be outside `folder`) and
    return the archive's hex SHA-256."""
    folder, out_path = Path(folder).resolve(), Path(out_path)
    if out_path.resolve().is_relative_to(folder):
        raise ValueError(f"{out_path}: the archive cannot be written inside {folder}")
    digest = hashlib.sha256()
    with _atomic(out_path) as file:
        for chunk in iter_zip(folder):
            digest.update(chunk)
            file.write(chunk)
    return digest.hexdigest()
