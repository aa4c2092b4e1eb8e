"""audformat export of a version, loaded with the real audformat: schemes, raters, splits
and tables equal to the native tables; deterministic bytes."""

from __future__ import annotations

import json
from pathlib import Path

import audformat
import pandas as pd
import pytest

from exports.core.archive import verify_sha256sums
from exports.formats import materialise
from exports.formats.audformat import yaml_text
from tests.exports.native_fixture import contents, jsonl, native_copy

# The database is only used to build the session's native version, once (native_fixture).
pytestmark = pytest.mark.django_db
RINGS = ("core", "secondary", "tertiary")


@pytest.fixture
def native(request, tmp_path) -> Path:
    return native_copy(request, tmp_path)


@pytest.fixture
def database(native, tmp_path) -> audformat.Database:
    return audformat.Database.load(str(materialise(native, "audformat", tmp_path / "db")))


def _value(cell):
    return None if pd.isna(cell) else cell


def test_the_header_has_the_schemes_raters_and_splits(native, database):
    annotations = jsonl(native, "annotations")

    assert database.name == "callcentre-v1"
    assert set(database.splits) == {"train", "dev", "test"}
    assert {s: database.splits[s].type for s in database.splits} == {
        "train": "train", "dev": "dev", "test": "test"
    }  # fmt: skip
    humans = {r["annotator"] for r in annotations}
    assert humans == {"r0001", "r0002", "r0003"}
    assert {r: database.raters[r].type for r in database.raters} == {
        **dict.fromkeys(humans, "human"), "majority": "vote", "soft": "vote",
        "dawid_skene": "vote", "gold": "truth", "adjudication": "human",
    }  # fmt: skip
    for ring in RINGS:
        given = {r[ring] for r in annotations if r[ring]}
        assert given <= set(database.schemes[f"emotion.{ring}"].labels)
    assert database.schemes["split"].labels == ["train", "dev", "test"]
    assert database.schemes["speaker"].dtype == "str"
    assert database.schemes["gender"].dtype == "str"
    assert database.media["audio"].sampling_rate == 16000


def test_the_files_table_has_every_clip_and_its_metadata(native, database, tmp_path):
    clips = jsonl(native, "clips")
    files = database["files"].get()

    assert list(files.index) == [c["file_name"] for c in clips]
    for clip in clips:
        row = files.loc[clip["file_name"]]
        assert row["speaker"] == clip["speaker_id"]
        assert row["gender"] == clip["gender"]
        assert row["split"] == clip["split"]
        assert row["clip_id"] == clip["clip_id"]
        assert row["duration_s"] == clip["duration_s"]
        assert _value(row["recording_id"]) is None
    assert database["files"].columns["speaker"].scheme_id == "speaker"
    root = Path(database.root)
    for clip in clips:
        assert (root / clip["file_name"]).read_bytes() == (native / clip["file_name"]).read_bytes()


def test_each_split_table_holds_the_aggregated_labels_of_its_clips(native, database):
    clips = {c["file_name"]: c for c in jsonl(native, "clips")}
    labels = {ring: {r["clip_id"]: r for r in jsonl(native, f"labels_{ring}")} for ring in RINGS}

    seen = set()
    for split in ("train", "dev", "test"):
        table = database[f"emotion.{split}"]
        assert table.split_id == split
        assert table.columns["core"].rater_id == "majority"
        assert table.columns["core_dawid_skene"].rater_id == "dawid_skene"
        assert table.columns["core"].scheme_id == "emotion.core"
        frame = table.get()
        assert {clips[f]["split"] for f in frame.index} <= {split}
        seen |= set(frame.index)
        for file, row in frame.iterrows():
            for ring in RINGS:
                given = labels[ring].get(clips[file]["clip_id"])
                assert _value(row[ring]) == (given and given["majority"])
                assert _value(row[f"{ring}_dawid_skene"]) == (given and given["dawid_skene"])
                assert _value(row[f"{ring}_raters"]) == (given and given["raters"])
                if given:
                    assert json.loads(row[f"{ring}_soft"]) == json.loads(given["soft"])
                    assert row[f"{ring}_tied"] == given["tied"]
                    assert _value(row[f"{ring}_agreement"]) == given["agreement"]
    assert seen == set(clips)


def test_the_ratings_table_holds_every_raw_annotation(native, database):
    annotations = jsonl(native, "annotations")
    ratings = database["ratings"].get()

    assert list(ratings.index) == [r["annotation_id"] for r in annotations]
    assert ratings.index.name == "annotation_id"
    for row in annotations:
        got = ratings.loc[row["annotation_id"]]
        assert got["file"] == f"audio/{row['clip_id']}.wav"
        assert got["annotator"] == row["annotator"]
        for ring in RINGS:
            assert _value(got[ring]) == row[ring]
        assert bool(got["unsure"]) == row["unsure"]
        assert _value(got["time_spent_ms"]) == row["time_spent_ms"]
    gold = database["gold"].get()
    answers = {f"audio/{r['clip_id']}.wav": r["gold_label"] for r in jsonl(native, "gold")}
    assert dict(gold["gold"]) == answers == {next(iter(answers)): "joyful.cheerful"}
    assert database["gold"].columns["gold"].rater_id == "gold"


def test_converting_twice_gives_the_same_bytes(native, tmp_path):
    first = materialise(native, "audformat", tmp_path / "one")
    second = materialise(native, "audformat", tmp_path / "two")

    assert contents(first) == contents(second)
    assert verify_sha256sums(first) == []


def test_yaml_text_quotes_every_string():
    text = yaml_text({"a.b": {"b: c": ['x"y', 1, 0.5, True, None], "no": "1"}, "e": {}})

    assert text == ('a.b:\n  "b: c": ["x\\"y", 1, 0.5, true, null]\n  "no": "1"\ne: {}\n')
