"""Hugging Face audiofolder export, loaded with the real `datasets` (offline, temp cache).

`datasets` 5.2 encodes every Audio value through torchcodec, which is not installed (and not
needed to read a path): the load test puts a stand-in `torchcodec.encoders` module in
sys.modules (its AudioEncoder is only used for in-memory arrays, never for files on disk) and
checks the Audio column's paths with decode=False instead of decoding.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from exports.core.archive import verify_sha256sums
from exports.formats import materialise
from exports.formats.hf import SPLIT_NAMES
from tests.exports.native_fixture import contents, jsonl, native_copy

# The database is only used to build the session's native version, once (native_fixture).
pytestmark = pytest.mark.django_db


@pytest.fixture
def native(request, tmp_path) -> Path:
    return native_copy(request, tmp_path)


@pytest.fixture
def offline_datasets(tmp_path, monkeypatch):
    """`datasets` with no network, a temporary HF_HOME and the torchcodec stand-in."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    import datasets  # reads the environment above when first imported

    # ... and if something imported it earlier, the same switches by hand.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    encoders = types.ModuleType("torchcodec.encoders")
    encoders.AudioEncoder = None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchcodec", types.ModuleType("torchcodec"))
    monkeypatch.setitem(sys.modules, "torchcodec.encoders", encoders)
    return datasets


def test_load_dataset_reads_every_split_with_the_native_labels(native, tmp_path, offline_datasets):
    out = materialise(native, "hf", tmp_path / "hf")
    datasets = offline_datasets

    loaded = datasets.load_dataset(
        "audiofolder", data_dir=str(out), cache_dir=str(tmp_path / "cache")
    )

    clips = jsonl(native, "clips")
    labels = {ring: {r["clip_id"]: r for r in jsonl(native, f"labels_{ring}")}
              for ring in ("core", "secondary", "tertiary")}  # fmt: skip
    expected_splits = {SPLIT_NAMES[c["split"]] for c in clips}
    assert set(loaded) == expected_splits == {"train", "validation", "test"}
    for split, hf_split in SPLIT_NAMES.items():
        mine = [c for c in clips if c["split"] == split]
        rows = loaded[hf_split].cast_column("audio", datasets.Audio(decode=False))
        assert rows.num_rows == len(mine)
        by_clip = {row["clip_id"]: row for row in rows}
        assert set(by_clip) == {c["clip_id"] for c in mine}
        for clip in mine:
            row = by_clip[clip["clip_id"]]
            audio = Path(row["audio"]["path"])
            assert audio == out / hf_split / "audio" / f"{clip['clip_id']}.wav"
            assert audio.read_bytes() == (native / clip["file_name"]).read_bytes()
            assert (row["speaker_id"], row["gender"]) == (clip["speaker_id"], clip["gender"])
            assert row["duration_s"] == clip["duration_s"]
            for ring, table in labels.items():
                given = table.get(clip["clip_id"])
                assert row[f"{ring}_majority"] == (given and given["majority"])
                assert row[f"{ring}_dawid_skene"] == (given and given["dawid_skene"])
                assert row[f"{ring}_raters"] == (given and given["raters"])
                if given:
                    assert json.loads(row[f"{ring}_soft"]) == json.loads(given["soft"])
                    assert row[f"{ring}_agreement"] == given["agreement"]


def test_every_split_has_the_same_typed_columns_even_when_a_column_is_empty(native, tmp_path):
    out = materialise(native, "hf", tmp_path / "hf")

    schemas = {split: pq.read_schema(out / split / "metadata.parquet") for split in
               ("train", "validation", "test")}  # fmt: skip
    assert len({str(schema) for schema in schemas.values()}) == 1
    # No clip is cut from a recording: recording_id is null everywhere, and still an int.
    assert str(schemas["test"].field("recording_id").type) == "int64"
    assert schemas["test"].names[:2] == ["file_name", "clip_id"]
    assert verify_sha256sums(out) == []
    for name in ("version.json", "datasheet.md", "datasheet.json"):
        assert (out / name).read_bytes() == (native / name).read_bytes()
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(
        p.name for p in (native / "plots").iterdir()
    )


def test_converting_twice_gives_the_same_bytes(native, tmp_path):
    first = materialise(native, "hf", tmp_path / "one")
    second = materialise(native, "hf", tmp_path / "two")

    assert contents(first) == contents(second)
    assert not (tmp_path / "one.partial").exists()
