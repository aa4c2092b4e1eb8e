"""External predictions as weak labels (issue 10, "Interop in"): the CSV and JSON-lines
import with provenance, refusals that write nothing, the weak-label suggestion (assisted
projects only, never on gold clips) and the learner's accessor."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from labelling.models import WeakLabel
from labelling.services import loop, queue, suggestions
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


def _clips(project, n):
    clips = [ClipFactory(project=project, original_name=f"f{i}.wav") for i in range(n)]
    queue.enqueue_clips(project, clips, seed=1)
    return clips


def _import(project, path: Path, **options: object) -> str:
    out = io.StringIO()
    options = {"model": "wav2vec-ser", "model_version": "1.2", **options}
    call_command("import_predictions", project.slug, str(path), stdout=out, **options)
    return out.getvalue()


def test_a_csv_of_the_models_own_labels_is_mapped_imported_and_reimporting_changes_nothing(
    project, tmp_path
):
    a, b = _clips(project, 2)
    (tmp_path / "map.json").write_text(json.dumps({"ang": "mad.angry", "sad": "sad", "oth": None}))
    (tmp_path / "p.csv").write_text(
        f"clip,file,ang,sad,oth\n{a.pk},,0.6,0.3,0.1\n,f1.wav,0.2,0.8,0\n"
    )
    out = _import(project, tmp_path / "p.csv", mapping=str(tmp_path / "map.json"))
    assert "rows=2 created=2 unchanged=0" in out
    weak = {w.clip_id: w for w in WeakLabel.objects.all()}
    # "oth" is dropped by the mapping and the rest renormalised.
    assert weak[a.pk].probabilities == pytest.approx({"mad.angry": 0.6 / 0.9, "sad": 0.3 / 0.9})
    assert weak[a.pk].top_node.key == "mad.angry"
    assert weak[b.pk].top_node.key == "sad"
    assert weak[a.pk].source_probabilities == {"ang": 0.6, "sad": 0.3, "oth": 0.1}
    assert (weak[a.pk].model_name, weak[a.pk].model_version) == ("wav2vec-ser", "1.2")
    assert weak[a.pk].source_file == "p.csv"
    assert "rows=2 created=0 unchanged=2" in _import(
        project, tmp_path / "p.csv", mapping=str(tmp_path / "map.json")
    )
    assert WeakLabel.objects.count() == 2


def test_jsonl_with_node_keys_needs_no_mapping(project, tmp_path):
    (clip,) = _clips(project, 1)
    line = {
        "file": "f0.wav",
        "model": "m",
        "probabilities": {"joyful": 0.25, "joyful.excited": 0.75},
    }
    (tmp_path / "p.jsonl").write_text(json.dumps(line) + "\n")
    _import(project, tmp_path / "p.jsonl", model="m")
    weak = WeakLabel.objects.get()
    assert weak.top_node.key == "joyful.excited"
    assert loop.weak_labels(project) == [
        loop.WeakLabelInfo(clip.pk, "m", "1.2", {"joyful": 0.25, "joyful.excited": 0.75},
                           "joyful.excited")
    ]  # fmt: skip
    assert loop.weak_labels(project, model_name="other") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("clip,mad,sad\n999999,0.5,0.5\n", "unknown clip '999999'"),
        ("file,mad,sad\nnope.wav,0.5,0.5\n", "unknown file 'nope.wav'"),
        ("file,mad,grumpy\nf0.wav,0.5,0.5\n", r"label\(s\) not in mapping.*'grumpy'"),
        ("file,mad,sad\nf0.wav,0.5,0.2\n", "sum to 0.7000, not 1"),
        ("file,mad,sad\nf0.wav,1.5,-0.5\n", r"not in \[0, 1\]"),
        ("file,mad,sad\nf0.wav,0.5,0.5\nf0.wav,0.5,0.5\n", "already given at line 2"),
        ("file,mad,sad\nf0.wav,0.5\n", "wrong number of columns"),
        ("file,model_version,mad,sad\nf0.wav,9,0.5,0.5\n", "model_version '9' is not '1.2'"),
    ],
)
def test_bad_predictions_are_a_clear_error_and_write_nothing(project, tmp_path, body, message):
    _clips(project, 2)
    (tmp_path / "p.csv").write_text(body)
    with pytest.raises(CommandError, match=message):
        _import(project, tmp_path / "p.csv")
    assert not WeakLabel.objects.exists()


def test_different_predictions_for_the_same_model_version_are_refused(project, tmp_path):
    _clips(project, 1)
    (tmp_path / "a.csv").write_text("file,mad,sad\nf0.wav,0.5,0.5\n")
    (tmp_path / "b.csv").write_text("file,mad,sad\nf0.wav,0.9,0.1\n")
    _import(project, tmp_path / "a.csv")
    with pytest.raises(CommandError, match="already has different weak labels"):
        _import(project, tmp_path / "b.csv")
    _import(project, tmp_path / "b.csv", model_version="1.3")
    assert WeakLabel.objects.count() == 2


def test_a_weak_label_is_the_suggestion_only_in_assisted_projects_and_never_on_gold(
    project, tmp_path, client_for, annotator
):
    (clip,) = _clips(project, 1)
    (tmp_path / "p.csv").write_text("file,mad.angry,sad\nf0.wav,0.7,0.3\n")
    _import(project, tmp_path / "p.csv")
    api = client_for(annotator)

    blind = api.post(f"/api/projects/{project.slug}/next/").json()
    assert blind["suggestion"] is None
    assert "wav2vec" not in json.dumps(blind)
    assert suggestions.suggestion(project, clip.pk, is_gold=False) is None

    project.assisted = True
    project.save()
    assert suggestions.suggestion(project, clip.pk, is_gold=True) is None
    shown = suggestions.suggestion(project, clip.pk, is_gold=False)
    assert shown == {
        "model_version": "wav2vec-ser 1.2",
        "source": "weak_label",
        "top": "mad.angry",
        "probabilities": {"core": {"mad": 0.7, "sad": 0.3}, "fine": {"mad.angry": 0.7}},
    }


def test_a_model_suggestion_wins_over_a_weak_label(project, tmp_path, monkeypatch):
    (clip,) = _clips(project, 1)
    (tmp_path / "p.csv").write_text("file,mad,sad\nf0.wav,0.5,0.5\n")
    _import(project, tmp_path / "p.csv")
    project.assisted = True
    monkeypatch.setattr(suggestions, "_PROVIDERS", [lambda p, c: {"model_version": "v7"}])
    assert suggestions.suggestion(project, clip.pk, is_gold=False) == {"model_version": "v7"}
    monkeypatch.setattr(suggestions, "_PROVIDERS", [lambda p, c: None])
    assert suggestions.suggestion(project, clip.pk, is_gold=False)["source"] == "weak_label"
