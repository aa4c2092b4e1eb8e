"""Deterministic files for dataset versions (exports.core.archive), no database.

- Tables: exact bytes for CSV and JSONL (column order, float rounding, None, booleans,
  quoting, UTF-8 without BOM, "\\n"); bad rows refused with the row and column named; a
  failed write leaves no temporary file and the previous file untouched; 300,000 streamed
  rows keep tracemalloc's peak growth under TABLE_MEMORY_BOUND.
- SHA256SUMS: coreutils' format, accepted by `sha256sum -c`; verification names missing,
  extra, changed files and malformed lines.
- Zip: byte-identical for the same contents whatever the creation order, mtimes,
  permissions and clock; fixed headers (epoch timestamp, 0o644, no extra fields, the
  compression policy, no folder entries); read by zipfile and `unzip -t`; streaming a 50 MB
  file keeps tracemalloc's peak growth under ZIP_MEMORY_BOUND.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from exports.core.archive import (
    CHUNK_BYTES,
    MANIFEST,
    CsvWriter,
    JsonlWriter,
    Problem,
    RowError,
    TableWriter,
    deterministic_zip,
    iter_zip,
    sha256sums,
    verify_sha256sums,
    write_sha256sums,
)

MiB = 1 << 20
# 300,000 rows make a 17 MiB CSV, 38 MiB JSONL; streaming holds the 1 MiB write buffer and
# one row (measured: 1.2 MiB).
TABLE_MEMORY_BOUND = 4 * MiB
# A 50 MiB file streamed: a few CHUNK_BYTES (read chunk, sink buffer, the chunk yielded;
# measured: 4.5 MiB).
ZIP_MEMORY_BOUND = 8 * MiB
UNZIP = Path("/usr/bin/unzip")
COLUMNS = ["clip_id", "file_name", "duration_s", "unsure", "valence", "speaker"]


# --- Tables -------------------------------------------------------------------------------


def test_csv_bytes_follow_the_fixed_rules(tmp_path):
    path = tmp_path / "clips.csv"
    rows = [
        {
            "speaker": "03",
            "file_name": "a.wav",
            "clip_id": 1,
            "duration_s": 2.0,
            "unsure": False,
            "valence": None,
        },
        {
            "clip_id": np.int64(2),
            "file_name": 'b, "quoted"\nline',
            "duration_s": np.float64(1 / 3),
            "unsure": True,
            "valence": -1e-9,
            "speaker": "Grüße",
        },
    ]
    assert CsvWriter(COLUMNS).write(path, iter(rows)) == 2
    assert (
        path.read_bytes()
        == (
            "clip_id,file_name,duration_s,unsure,valence,speaker\n"
            "1,a.wav,2.0,false,,03\n"
            '2,"b, ""quoted""\nline",0.333333,true,0.0,Grüße\n'
        ).encode()
    )


def test_jsonl_bytes_follow_the_fixed_rules(tmp_path):
    path = tmp_path / "clips.jsonl"
    rows = [
        {
            "clip_id": 1,
            "file_name": "a.wav",
            "duration_s": 2.0,
            "unsure": False,
            "valence": None,
            "speaker": "Grüße",
        },
    ]
    assert JsonlWriter(COLUMNS).write(path, rows) == 1
    assert (
        path.read_bytes()
        == (
            '{"clip_id":1,"duration_s":2.0,"file_name":"a.wav","speaker":"Grüße",'
            '"unsure":false,"valence":null}\n'
        ).encode()
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        (1 / 3, "0.333333"),
        (123456.7891234, "123456.789123"),
        (1e-6, "1e-06"),
        (-1e-9, "0.0"),  # rounds to zero, and never "-0.0"
        (np.float32(0.1), "0.1"),  # float32 noise is below the rounding
        (2**70, "1180591620717411303424"),
        (np.int64(-7), "-7"),
        (True, "true"),
    ],
)
def test_a_number_is_written_the_same_in_csv_and_jsonl(tmp_path, value, text):
    CsvWriter(["x"]).write(tmp_path / "t.csv", [{"x": value}])
    JsonlWriter(["x"]).write(tmp_path / "t.jsonl", [{"x": value}])
    assert (tmp_path / "t.csv").read_text() == f"x\n{text}\n"
    assert (tmp_path / "t.jsonl").read_text() == f'{{"x":{text}}}\n'


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"a": 1, "b": 2, "c": 3}, "row 2: unknown columns ['c'], missing []"),
        ({"a": 1}, "row 2: unknown columns [], missing ['b']"),
        ({"a": 1, "z": 2}, "row 2: unknown columns ['z'], missing ['b']"),
        ([1, 2], "row 2: expected a mapping, got list"),
        ({"a": 1, "b": [2]}, "row 2, column 'b': unsupported type builtins.list"),
        ({"a": 1, "b": float("nan")}, "row 2, column 'b': nan is not a finite number"),
        ({"a": float("-inf"), "b": 1}, "row 2, column 'a': -inf is not a finite number"),
    ],
)
@pytest.mark.parametrize("writer", [CsvWriter, JsonlWriter])
def test_a_bad_row_is_refused_and_the_previous_file_survives(tmp_path, writer, row, message):
    path = tmp_path / "t.out"
    path.write_text("the previous version\n")
    with pytest.raises(RowError) as raised:
        writer(["a", "b"]).write(path, [{"a": 1, "b": 2}, row])
    assert str(raised.value) == message
    assert path.read_text() == "the previous version\n"
    assert os.listdir(tmp_path) == ["t.out"]  # the temporary file is gone


@pytest.mark.parametrize("writer", [CsvWriter, JsonlWriter])
def test_a_failing_row_source_leaves_no_file(tmp_path, writer):
    def rows() -> Iterator[dict[str, int]]:
        yield {"a": 1}
        raise ConnectionError("the cursor died")

    with pytest.raises(ConnectionError):
        writer(["a"]).write(tmp_path / "t.out", rows())
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("columns", [[], "ab", ["a", "a"], ["a", ""]])
def test_columns_must_be_distinct_non_empty_names(columns):
    with pytest.raises(ValueError, match="columns"):
        CsvWriter(columns)


def _generated_rows(count: int) -> Iterator[dict[str, object]]:
    for number in range(count):
        yield {
            "clip_id": number,
            "file_name": f"clips/{number:06d}_émotion.wav",
            "duration_s": 1.5 + number / 7,
            "unsure": number % 3 == 0,
            "valence": None if number % 5 else -0.25,
            "speaker": f"spk{number % 97}",
        }


# Slow: about 1 s untraced, 5-10 s under tracemalloc, which hooks every allocation.
@pytest.mark.slow
@pytest.mark.parametrize("writer", [CsvWriter, JsonlWriter])
def test_writing_300000_rows_streams_in_bounded_memory(tmp_path, writer: type[TableWriter]):
    path = tmp_path / f"annotations{writer.suffix}"
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        count = writer(COLUMNS).write(path, _generated_rows(300_000))
        growth = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert count == 300_000
    assert path.stat().st_size > 4 * TABLE_MEMORY_BOUND  # what holding it all would cost
    assert growth < TABLE_MEMORY_BOUND, f"peak growth {growth / MiB:.1f} MiB"


# --- SHA256SUMS -----------------------------------------------------------------------------


def _version_folder(root: Path) -> Path:
    (root / "audio").mkdir(parents=True)
    (root / "audio" / "b.wav").write_bytes(b"RIFF" + bytes(range(256)) * 10)
    (root / "audio" / "a b é.wav").write_bytes(b"RIFF-other")
    (root / "clips.csv").write_text("clip_id\n1\n")
    (root / "audio-extra").mkdir()
    (root / "audio-extra" / "note.txt").write_text("sorted before audio/ by code point\n")
    return root


def test_sha256sums_lists_every_file_sorted_with_its_digest(tmp_path):
    folder = _version_folder(tmp_path)
    (folder / MANIFEST).write_text("an old manifest, not listed in itself\n")
    names = ["audio-extra/note.txt", "audio/a b é.wav", "audio/b.wav", "clips.csv"]
    assert sha256sums(folder) == "".join(
        f"{hashlib.sha256((folder / name).read_bytes()).hexdigest()}  {name}\n" for name in names
    )


def test_coreutils_sha256sum_accepts_the_manifest_and_catches_a_change(tmp_path):
    folder = _version_folder(tmp_path)
    write_sha256sums(folder)
    check = ["sha256sum", "--check", "--strict", MANIFEST]
    accepted = subprocess.run(check, cwd=folder, capture_output=True, text=True)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert accepted.stdout.count(": OK\n") == 4
    (folder / "clips.csv").write_text("clip_id\n2\n")
    assert subprocess.run(check, cwd=folder, capture_output=True).returncode == 1


def test_verify_names_missing_extra_changed_files_and_malformed_lines(tmp_path):
    folder = _version_folder(tmp_path)
    write_sha256sums(folder)
    assert verify_sha256sums(folder) == []
    (folder / "audio" / "b.wav").unlink()
    (folder / "clips.csv").write_text("clip_id\n2\n")
    (folder / "stray.txt").write_text("not in the manifest\n")
    with (folder / MANIFEST).open("a") as manifest:
        manifest.write("not a manifest line\n")
    assert [str(problem) for problem in verify_sha256sums(folder)] == [
        "malformed: SHA256SUMS:5",
        "missing: audio/b.wav",
        "changed: clips.csv",
        "extra: stray.txt",
    ]


def test_verify_reports_a_missing_manifest(tmp_path):
    assert verify_sha256sums(_version_folder(tmp_path)) == [Problem(MANIFEST, "missing")]


@pytest.mark.parametrize("name", ["line\nbreak.txt", "back\\slash.txt"])
def test_a_name_sha256sum_would_escape_is_refused(tmp_path, name):
    (tmp_path / name).write_text("x")
    with pytest.raises(ValueError, match="newline or backslash"):
        sha256sums(tmp_path)


def test_a_symlinked_file_counts_as_its_contents_and_a_symlinked_folder_is_refused(tmp_path):
    target = _version_folder(tmp_path / "target")
    folder = tmp_path / "version"
    folder.mkdir()
    (folder / "clips.csv").symlink_to(target / "clips.csv")
    assert sha256sums(folder).endswith("  clips.csv\n")
    (folder / "audio").symlink_to(target / "audio")
    with pytest.raises(ValueError, match="audio: a symbolic link to a folder"):
        sha256sums(folder)
    (folder / "audio").unlink()
    (folder / "gone.wav").symlink_to(target / "nowhere.wav")
    with pytest.raises(ValueError, match=r"gone\.wav: a broken symbolic link"):
        sha256sums(folder)


# --- Zip ----------------------------------------------------------------------------------

FILES = {
    "SHA256SUMS": b"0" * 64 + b"  clips.csv\n",
    "clips.csv": b"clip_id,label\n" + b"".join(b"%d,anger\n" % n for n in range(2000)),
    "labels.jsonl": b'{"clip_id":1}\n' * 500,
    "audio/03a01Fa.wav": b"RIFF" + bytes(range(256)) * 40,
    "audio/émotion.wav": b"RIFF\x00\x01",
    "plots/class_balance.png": b"\x89PNG fake",
    "datasheet.md": "# Datasheet\n\nÄrger\n".encode(),
}


def _build(root: Path, names: list[str], mode: int, mtime: float) -> Path:
    """FILES written under `root` in the order of `names`, with a mode and an mtime."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(FILES[name])
        path.chmod(mode)
        os.utime(path, (mtime, mtime))
    return root


def _local_header(archive: bytes, info: zipfile.ZipInfo) -> tuple[int, ...]:
    """(flags, method, DOS time, DOS date, extra length) of an entry's local header."""
    fields = struct.unpack_from("<4sBBHHHHLLLHH", archive, info.header_offset)
    assert fields[0] == b"PK\x03\x04"
    return (fields[3], fields[4], fields[5], fields[6], fields[11])


def test_the_same_contents_give_byte_identical_zips(tmp_path, monkeypatch):
    names = sorted(FILES)
    first = _build(tmp_path / "one", names, 0o644, 1_000_000_000)
    second = _build(tmp_path / "two", names[::-1], 0o600, 1_700_000_000)
    (second / "empty-folder").mkdir()  # folders are not entries
    digest = deterministic_zip(first, tmp_path / "one.zip")
    monkeypatch.setattr(time, "time", lambda: 2_200_000_000.0)  # another day, 2039
    assert deterministic_zip(second, tmp_path / "two.zip") == digest
    archive = (tmp_path / "one.zip").read_bytes()
    assert (tmp_path / "two.zip").read_bytes() == archive
    assert hashlib.sha256(archive).hexdigest() == digest
    assert b"".join(iter_zip(second)) == archive


def test_zip_entries_have_fixed_headers_and_the_compression_policy(tmp_path):
    folder = _build(tmp_path / "v", sorted(FILES), 0o755, 1_000_000_000)
    archive = b"".join(iter_zip(folder))
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert opened.testzip() is None
        infos = opened.infolist()
        assert [info.filename for info in infos] == sorted(FILES)
        for info in infos:
            deflated = info.filename.endswith((".csv", ".jsonl", ".md")) or (
                info.filename == MANIFEST
            )
            method = zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED
            assert (info.compress_type, info.date_time) == (method, (1980, 1, 1, 0, 0, 0))
            assert (info.external_attr >> 16, info.create_system, info.extra) == (
                0o100644,
                3,
                b"",
            )
            flags, local_method, dos_time, dos_date, extra = _local_header(archive, info)
            assert (local_method, dos_time, dos_date, extra) == (method, 0, 0x21, 0)
            assert flags & 0x08  # sizes and CRC in a data descriptor: streamed
            assert opened.read(info) == FILES[info.filename]
    assert len(archive) < sum(map(len, FILES.values()))  # the tables did compress


def test_an_empty_folder_zips_to_an_empty_archive(tmp_path):
    archive = b"".join(iter_zip(tmp_path))
    assert zipfile.ZipFile(io.BytesIO(archive)).namelist() == []


def test_the_archive_cannot_be_written_into_the_folder_it_archives(tmp_path):
    folder = _build(tmp_path / "v", ["clips.csv"], 0o644, 1_000_000_000)
    with pytest.raises(ValueError, match="cannot be written inside"):
        deterministic_zip(folder, folder / "sub" / ".." / "v.zip")
    assert sorted(os.listdir(folder)) == ["clips.csv"]


def _unzip_test(path: Path) -> subprocess.CompletedProcess[str]:
    # /usr/bin/unzip is on this machine; where it is not, Python's own checker stands in.
    if UNZIP.exists():
        return subprocess.run([str(UNZIP), "-t", str(path)], capture_output=True, text=True)
    command = ["python", "-m", "zipfile", "-t", str(path)]
    return subprocess.run(command, capture_output=True, text=True)


def _measure(stream: Callable[[], Iterator[bytes]], out: Path) -> int:
    """Write the stream to `out`; return tracemalloc's peak growth while it ran."""
    with out.open("wb") as file:
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            for chunk in stream():
                assert len(chunk) <= 2 * CHUNK_BYTES
                file.write(chunk)
            return tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()


def test_streaming_a_50_mb_file_keeps_memory_flat_and_unzip_accepts_it(tmp_path):
    folder = tmp_path / "v"
    (folder / "audio").mkdir(parents=True)
    with (folder / "audio" / "long.wav").open("wb") as file:
        for _ in range(50):
            file.write(os.urandom(MiB))
    with (folder / "annotations.csv").open("wb") as file:  # deflated on the way
        for n in range(200_000):
            file.write(b"%d,anger,0.5,true\n" % n)
    growth = _measure(lambda: iter_zip(folder), tmp_path / "streamed.zip")
    assert growth < ZIP_MEMORY_BOUND, f"peak growth {growth / MiB:.1f} MiB"
    checked = _unzip_test(tmp_path / "streamed.zip")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with zipfile.ZipFile(tmp_path / "streamed.zip") as opened:
        info = opened.getinfo("audio/long.wav")
        assert (info.file_size, info.compress_type) == (50 * MiB, zipfile.ZIP_STORED)
        assert opened.testzip() is None


def test_jsonl_rows_round_trip_through_the_zip(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    JsonlWriter(COLUMNS).write(folder / "clips.jsonl", _generated_rows(100))
    write_sha256sums(folder)
    deterministic_zip(folder, tmp_path / "v.zip")
    with zipfile.ZipFile(tmp_path / "v.zip") as opened:
        lines = opened.read("clips.jsonl").decode().splitlines()
        assert opened.read(MANIFEST).decode() == sha256sums(folder)
    assert [json.loads(line)["clip_id"] for line in lines] == list(range(100))
