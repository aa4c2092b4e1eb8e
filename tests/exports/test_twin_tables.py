"""write_twin_tables: a table and its JSONL twin in one pass, the same bytes as the two
single writers, and nothing left under the final names when a row is refused."""

from __future__ import annotations

import numpy as np
import pytest

from exports.core.archive import CsvWriter, JsonlWriter, RowError, write_twin_tables

COLUMNS = ("id", "name", "score", "flag", "note")
ROWS = [
    {"id": 1, "name": "mad", "score": 0.1234567891, "flag": True, "note": None},
    {"id": np.int64(2), "name": "a,\"quoted\"\nline", "score": np.float32(0.5), "flag": False,
     "note": ""},
    {"id": 3, "name": "Überraschung", "score": -0.0, "flag": None, "note": "x"},
    {"id": 4, "name": "big", "score": 1e-07, "flag": True, "note": np.float64(2.5)},
]  # fmt: skip


def test_the_twin_writer_gives_the_single_writers_bytes(tmp_path):
    count = write_twin_tables(tmp_path / "t.csv", tmp_path / "t.jsonl", COLUMNS, iter(ROWS))
    CsvWriter(COLUMNS).write(tmp_path / "single.csv", ROWS)
    JsonlWriter(COLUMNS).write(tmp_path / "single.jsonl", ROWS)

    assert count == len(ROWS)
    assert (tmp_path / "t.csv").read_bytes() == (tmp_path / "single.csv").read_bytes()
    assert (tmp_path / "t.jsonl").read_bytes() == (tmp_path / "single.jsonl").read_bytes()


def test_a_refused_row_leaves_neither_file(tmp_path):
    rows = [*ROWS, {"id": 5, "name": "nan", "score": float("nan"), "flag": None, "note": None}]
    with pytest.raises(RowError, match="row 5"):
        write_twin_tables(tmp_path / "t.csv", tmp_path / "t.jsonl", COLUMNS, iter(rows))
    assert sorted(p.name for p in tmp_path.iterdir()) == []
