"""Label Studio export of a version: task structure, config, round trip through the reader,
deterministic bytes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET  # our own output, not untrusted input
from pathlib import Path

import pytest

from exports.core.archive import verify_sha256sums
from exports.formats import materialise
from exports.formats.labelstudio import config_xml, iter_tasks, read_labelstudio
from tests.exports.native_fixture import contents, jsonl, native_copy

# The database is only used to build the session's native version, once (native_fixture).
pytestmark = pytest.mark.django_db


@pytest.fixture
def native(request, tmp_path) -> Path:
    return native_copy(request, tmp_path)


def _deepest(row: dict) -> str | None:
    return row["tertiary"] or row["secondary"] or row["core"]


def test_every_clip_is_a_task_with_one_annotation_per_annotator(native, tmp_path):
    out = materialise(native, "labelstudio", tmp_path / "ls")

    tasks = json.loads((out / "tasks.json").read_text(encoding="utf-8"))
    clips = jsonl(native, "clips")
    assert [task["id"] for task in tasks] == [clip["clip_id"] for clip in clips]
    annotations = jsonl(native, "annotations")
    for task, clip in zip(tasks, clips, strict=True):
        assert set(task) == {"id", "data", "annotations", "predictions"}
        assert task["data"]["audio"] == clip["file_name"]
        assert (out / task["data"]["audio"]).read_bytes() == (
            native / clip["file_name"]
        ).read_bytes()
        assert task["data"]["speaker_id"] == clip["speaker_id"]
        assert task["predictions"] == []
        mine = sorted((r for r in annotations if r["clip_id"] == clip["clip_id"]),
                      key=lambda r: r["annotator"])  # fmt: skip
        assert [a["completed_by"] for a in task["annotations"]] == [r["annotator"] for r in mine]
        for annotation, row in zip(task["annotations"], mine, strict=True):
            assert annotation["id"] == row["annotation_id"]
            assert isinstance(annotation["result"], list)
            (result,) = annotation["result"]
            assert {k: result[k] for k in ("from_name", "to_name", "type")} == {
                "from_name": "emotion", "to_name": "audio", "type": "taxonomy"
            }  # fmt: skip
            assert result["value"] == {"taxonomy": [_deepest(row).split(".")]}
            assert annotation["was_cancelled"] is False
    assert verify_sha256sums(out) == []


def test_the_config_is_the_taxonomy_the_version_shows(native, tmp_path):
    out = materialise(native, "labelstudio", tmp_path / "ls")

    view = ET.fromstring(  # noqa: S314
        (out / "config.xml").read_text(encoding="utf-8")
    )
    assert view.tag == "View"
    audio, taxonomy = list(view)
    assert (audio.tag, audio.get("name"), audio.get("value")) == ("Audio", "audio", "$audio")
    assert (taxonomy.tag, taxonomy.get("name"), taxonomy.get("toName")) == (
        "Taxonomy", "emotion", "audio"
    )  # fmt: skip

    def paths(element: ET.Element, prefix: tuple[str, ...] = ()) -> set[str]:
        found: set[str] = set()
        for choice in element:
            path = (*prefix, choice.get("value"))
            found.add(".".join(path))
            found |= paths(choice, path)
        return found

    given = {_deepest(r) for r in jsonl(native, "annotations") if _deepest(r)}
    assert given <= paths(taxonomy)
    assert {"mad", "mad.rage", "mad.rage.furious", "joyful.cheerful"} <= paths(taxonomy)


def test_config_xml_nests_choices_and_escapes_values():
    text = config_xml(["b.x", "a", 'q"<'])

    assert '<Choice value="a"/>' in text
    assert '<Choice value="b">\n      <Choice value="x"/>\n    </Choice>' in text
    assert (
        ET.fromstring(  # noqa: S314
            text
        )
        .find("Taxonomy")[2]
        .get("value")
        == 'q"<'
    )


def test_the_reader_gives_back_every_label_of_the_export(native, tmp_path):
    out = materialise(native, "labelstudio", tmp_path / "ls")

    read = sorted(read_labelstudio(out / "tasks.json"))
    expected = sorted(
        (f"audio/{r['clip_id']}.wav", r["annotator"], _deepest(r))
        for r in jsonl(native, "annotations")
        if _deepest(r)
    )
    assert read == expected
    assert len(read) == 18


def test_the_reader_streams_across_chunks_and_reads_label_studio_shapes(tmp_path: Path):
    tasks = [
        {"id": n, "data": {"audio": f"/data/local-files/?d=x/{n}.wav"}, "annotations": [
            {"completed_by": {"id": 7, "email": "a@b.c"}, "was_cancelled": False, "result": [
                {"from_name": "emotion", "type": "choices", "value": {"choices": ["sad"]}},
                {"from_name": "other", "type": "choices", "value": {"choices": ["x"]}},
            ]},
            {"completed_by": 3, "was_cancelled": True, "result": []},
        ]}
        for n in range(50)
    ]  # fmt: skip
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks, indent=1), encoding="utf-8")

    assert len(list(iter_tasks(path, chunk=97))) == 50
    labels = list(read_labelstudio(path))
    assert labels[0] == ("/data/local-files/?d=x/0.wav", "a@b.c", "sad")
    assert len(labels) == 50


def test_a_truncated_export_is_an_error(tmp_path: Path):
    path = tmp_path / "cut.json"
    path.write_text('[{"id": 1, "data": {}}, {"id": 2', encoding="utf-8")

    with pytest.raises(ValueError, match=r"not closed|Expecting|Unterminated"):
        list(iter_tasks(path, chunk=8))


def test_converting_twice_gives_the_same_bytes(native, tmp_path):
    first = materialise(native, "labelstudio", tmp_path / "one")
    second = materialise(native, "labelstudio", tmp_path / "two")

    assert contents(first) == contents(second)


def test_weak_labels_are_predictions(native, tmp_path):
    clips = [row["clip_id"] for row in jsonl(native, "clips")]
    weak = [
        {"clip_id": clips[0], "model": "ext", "model_version": "1", "taxonomy_version": 1,
         "top_label": "scared.anxious", "top_probability": 0.75,
         "probabilities": '{"scared.anxious":0.75,"sad":0.25}'},
        {"clip_id": clips[0], "model": "ext", "model_version": "2", "taxonomy_version": 1,
         "top_label": "sad", "top_probability": 0.5, "probabilities": '{"sad":0.5}'},
        {"clip_id": clips[2], "model": "ext", "model_version": "1", "taxonomy_version": 1,
         "top_label": "surprised.amazed.astonished", "top_probability": 0.9,
         "probabilities": '{"surprised.amazed.astonished":0.9}'},
    ]  # fmt: skip
    (native / "weak_labels.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in weak), encoding="utf-8"
    )

    out = materialise(native, "labelstudio", tmp_path / "ls")

    tasks = {task["id"]: task for task in json.loads((out / "tasks.json").read_text())}
    first = tasks[clips[0]]["predictions"]
    assert [(p["model_version"], p["score"]) for p in first] == [("ext 1", 0.75), ("ext 2", 0.5)]
    assert first[0]["result"][0]["value"] == {"taxonomy": [["scared", "anxious"]]}
    assert first[0]["result"][0]["type"] == "taxonomy"
    assert tasks[clips[1]]["predictions"] == []
    assert tasks[clips[2]]["predictions"][0]["score"] == 0.9
    assert 'value="astonished"' in (out / "config.xml").read_text()
    # Predictions are not labels: the reader gives annotations only.
    assert len(list(read_labelstudio(out / "tasks.json"))) == 18
