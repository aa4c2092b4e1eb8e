"""Label Studio JSON import (issue 10, "Interop in"): tasks matched to clips by file name
or ingested from an audio folder, `taxonomy` and `choices` results, raters kept apart."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from labelling.models import Annotation, Clip, LabelSource
from labelling.services import queue
from tests.conftest import make_user
from tests.factories import ClipFactory, tone_wav

pytestmark = pytest.mark.django_db


def _export(path: Path, tasks: list[dict]) -> Path:
    path.write_text(json.dumps(tasks))
    return path


def _task(audio: str, *annotations: dict) -> dict:
    return {"id": 1, "data": {"audio": audio}, "annotations": list(annotations)}


def _taxonomy(who: object, *path: str, cancelled: bool = False) -> dict:
    result = {"type": "taxonomy", "from_name": "emotion", "to_name": "audio",
              "value": {"taxonomy": [list(path)]}}  # fmt: skip
    return {"completed_by": who, "was_cancelled": cancelled, "result": [result]}


def _choice(who: object, label: str) -> dict:
    result = {"type": "choices", "value": {"choices": [label]}}
    return {"completed_by": who, "result": [result]}


def _run(project, path: Path, **options: object) -> str:
    out = io.StringIO()
    call_command("import_labelstudio", project.slug, str(path), stdout=out, verbosity=0, **options)
    return out.getvalue()


def test_tasks_on_existing_clips_become_corpus_annotations_of_labelstudio_raters(
    project, tmp_path, annotator
):
    a = ClipFactory(project=project, original_name="calls/a.wav")
    b = ClipFactory(project=project, original_name="b.wav")
    queue.enqueue_clips(project, [a, b], seed=1)
    export = _export(
        tmp_path / "ls.json",
        [
            _task("/data/upload/3/a.wav", _taxonomy(7, "Mad", "Angry"), _choice(8, "joyful")),
            _task("s3://bucket/x/9f1c2d-b.wav", _choice({"id": 8, "email": "e@x.org"}, "Sad"),
                  _taxonomy(9, "Peaceful", cancelled=True)),
        ],
    )  # fmt: skip
    assert "annotations_written=3" in _run(project, export)
    got = {
        (x.clip.original_name, x.annotator.username, x.node.key)
        for x in Annotation.objects.select_related("clip", "annotator", "node")
    }
    assert got == {
        ("calls/a.wav", "labelstudio:7", "mad.angry"),
        ("calls/a.wav", "labelstudio:8", "joyful"),
        ("b.wav", "labelstudio:e@x.org", "sad"),
    }
    assert set(Annotation.objects.values_list("label_source", flat=True)) == {LabelSource.CORPUS}
    assert not any(x.annotator.is_active for x in Annotation.objects.all())
    # The annotator's own account is never the rater, and the labels take no slot.
    assert not Annotation.objects.filter(annotator=annotator).exists()
    assert {e.open_slots for e in queue.wanting_labels(project)} == {project.annotators_per_clip}
    assert "annotations_written=0" in _run(project, export)  # again: nothing changes


def test_new_audio_is_ingested_from_the_audio_folder_with_every_raters_label(project, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "new.wav").write_bytes(tone_wav(0.4, 300))
    export = _export(
        tmp_path / "ls.json",
        [_task("/data/upload/1/new.wav", _taxonomy(1, "Scared"), _choice(2, "scared.anxious"))],
    )
    out = _run(project, export, audio_dir=str(audio))
    assert "new_files=1 annotations_written=2" in out
    clip = Clip.objects.get(project=project)
    assert clip.original_name == "new.wav"
    assert sorted(clip.annotations.values_list("annotator__username", "node__key")) == [
        ("labelstudio:1", "scared"),
        ("labelstudio:2", "scared.anxious"),
    ]


def test_a_mapping_names_labels_and_unknown_audio_or_labels_write_nothing(project, tmp_path):
    ClipFactory(project=project, original_name="a.wav")
    (tmp_path / "map.json").write_text(json.dumps({"Angry!": "mad", "Meh": None}))
    export = _export(
        tmp_path / "ls.json", [_task("a.wav", _choice(1, "Angry!"), _choice(2, "Meh"))]
    )
    _run(project, export, mapping=str(tmp_path / "map.json"))
    assert list(Annotation.objects.values_list("node__key", flat=True)) == ["mad"]

    Annotation.objects.all().delete()
    bad = _export(
        tmp_path / "bad.json",
        [_task("a.wav", _choice(1, "Grumpy")), _task("gone.wav", _choice(1, "mad"))],
    )
    with pytest.raises(CommandError, match=r"'gone.wav'.*'Grumpy'|'Grumpy'.*'gone.wav'"):
        _run(project, bad)
    assert not Annotation.objects.exists()
    (tmp_path / "notalist.json").write_text('{"tasks": []}')
    with pytest.raises(CommandError, match="not a Label Studio JSON export"):
        _run(project, tmp_path / "notalist.json")


def test_an_account_people_use_is_never_made_a_rater(project, tmp_path):
    make_user("labelstudio:5")  # active, with a password
    ClipFactory(project=project, original_name="a.wav")
    export = _export(tmp_path / "ls.json", [_task("a.wav", _choice(5, "mad"))])
    with pytest.raises(CommandError, match="an account people use"):
        _run(project, export)
    assert not Annotation.objects.exists()
