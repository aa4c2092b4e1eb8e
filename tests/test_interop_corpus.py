"""Corpus import (issue 10, "Interop in"): presets onto every wheel, the CLI end to end on
the demo EmoDB (or the whole corpus when present), idempotence, and refusals that write
nothing."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from labelling.models import (
    Annotation,
    Clip,
    ImportBatch,
    LabelSource,
    Project,
    TaxonomyNode,
)
from labelling.services import taxonomy
from labelling.services.interop import InteropError, load_mapping
from labelling.services.interop.mapping import PRESET_DIR, PRESETS, preset_document
from tests.factories import tone_wav

pytestmark = pytest.mark.django_db

EMODB_CODES = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness",
               "T": "sadness", "N": "neutral"}  # fmt: skip
WHEELS = ("basic", "plutchik", "willcox")


def _project(slug: str, wheel: str) -> Project:
    version = taxonomy.install_preset(wheel)
    return Project.objects.create(name=slug, slug=slug, taxonomy_version=version)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("wheel", WHEELS)
def test_every_preset_label_and_alias_maps_onto_a_node_of_every_wheel_or_is_dropped(preset, wheel):
    project = _project(f"p-{preset}-{wheel}", wheel)
    mapping = load_mapping(project, preset=preset)
    doc = preset_document(preset)
    keys = set(
        TaxonomyNode.objects.filter(version=project.taxonomy_version).values_list("key", flat=True)
    )
    for label in [*doc["labels"], *doc.get("aliases", {})]:
        node = mapping.node_for(label)
        assert node is None or node.key in keys
        assert mapping.node_for(label) == mapping.node_for(doc["aliases"].get(label, label))


def test_the_emodb_preset_maps_every_emodb_label_onto_willcox_without_dropping_any(emodb, project):
    mapping = load_mapping(project, preset="emodb")
    demo = {row["emotion"] for row in csv.DictReader((emodb / "labels.csv").open())}
    for label in demo | set(EMODB_CODES) | set(EMODB_CODES.values()):
        assert mapping.node_for(label) is not None, label
    assert {mapping.node_for(code).key for code in EMODB_CODES} == {
        "mad.angry", "sad.bored", "mad", "scared", "joyful", "sad", "peaceful"
    }  # fmt: skip
    assert mapping.node_for("W") == mapping.node_for("anger")


def test_a_label_the_mapping_does_not_know_is_an_error_listing_them(project):
    mapping = load_mapping(project, preset="emodb")
    with pytest.raises(InteropError, match=r"2 label\(s\) not in mapping.*'contempt'.*'pride'"):
        mapping.check_labels({"anger", "pride", "contempt"})


def test_a_custom_mapping_may_drop_a_label_and_must_name_real_nodes(project, tmp_path):
    good = tmp_path / "m.json"
    good.write_text(json.dumps({"labels": {"grr": "mad.angry", "meh": None}}))
    mapping = load_mapping(project, mapping_path=good)
    assert mapping.node_for("grr").key == "mad.angry"
    assert mapping.node_for("meh") is None
    assert mapping.node_for("mad").key == "mad"  # node keys map to themselves
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"grr": "no.such.node"}))
    with pytest.raises(InteropError, match=r"no\.such\.node"):
        load_mapping(project, mapping_path=bad)


def test_the_preset_files_are_the_presets():
    assert sorted(p.stem for p in PRESET_DIR.glob("*.json")) == sorted(PRESETS)


# --- The command -----------------------------------------------------------------------


def _run(*args: str, **kwargs: object) -> str:
    out = io.StringIO()
    call_command("import_corpus", *args, stdout=out, verbosity=0, **kwargs)
    return out.getvalue()


def _small_corpus(folder: Path, rows: list[tuple[str, str]]) -> Path:
    (folder / "wav").mkdir(parents=True)
    with (folder / "labels.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "speaker", "gender", "age", "emotion"])
        for index, (name, label) in enumerate(rows):
            (folder / "wav" / name).write_bytes(tone_wav(0.4, 200 + 37 * index))
            writer.writerow([name, f"s{index % 2}", "female", "30", label])
    return folder


def test_a_corpus_is_imported_with_one_corpus_annotation_per_clip_and_again_changes_nothing(
    project, tmp_path, annotator
):
    corpus = _small_corpus(tmp_path / "c", [("a.wav", "W"), ("b.wav", "sadness"), ("c.wav", "N")])
    out = _run(project.slug, str(corpus), preset="emodb", in_process=True)
    assert "labels=3 dropped=0" in out
    clips = {c.original_name: c for c in Clip.objects.filter(project=project)}
    assert sorted(clips) == ["a.wav", "b.wav", "c.wav"]
    assert clips["a.wav"].speaker_id == "s0"
    assert clips["a.wav"].age_band == "25-34"
    corpus_labels = Annotation.objects.filter(label_source=LabelSource.CORPUS)
    assert {(a.clip.original_name, a.node.key) for a in corpus_labels} == {
        ("a.wav", "mad.angry"), ("b.wav", "sad"), ("c.wav", "peaceful")
    }  # fmt: skip
    rater = corpus_labels.first().annotator
    assert rater.username == "corpus:emodb"
    assert not rater.is_active
    assert not rater.has_usable_password()
    assert not rater.memberships.exists()
    # The corpus labels take no queue slot: every clip still waits for its annotators.
    for clip in clips.values():
        assert clip.queue_entry.open_slots == project.annotators_per_clip

    before = (Annotation.objects.count(), ImportBatch.objects.count(), Clip.objects.count())
    again = _run(project.slug, str(corpus), preset="emodb", in_process=True)
    assert "3 clip(s) already present (0 annotation(s) written), 0 new file(s)" in again
    assert (Annotation.objects.count(), ImportBatch.objects.count(), Clip.objects.count()) == before


def test_an_archive_works_like_a_folder(project, tmp_path):
    corpus = _small_corpus(tmp_path / "c", [("a.wav", "F"), ("b.wav", "T")])
    archive = tmp_path / "audio.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for wav in (corpus / "wav").iterdir():
            z.write(wav, f"wav/{wav.name}")
    _run(project.slug, str(archive), preset="emodb", labels=str(corpus / "labels.csv"),
         in_process=True)  # fmt: skip
    assert Annotation.objects.filter(label_source="corpus").count() == 2


@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        ([("a.wav", "W"), ("b.wav", "contempt")], None, "not in mapping.*'contempt'"),
        ([("a.wav", "W")], "missing.wav,s9,male,40,W\n", "missing: 'missing.wav'"),
        ([("a.wav", "W")], "a.wav,s0,female,30,W\n", "listed twice"),
        ([("a.wav", "W")], 'x.wav,"unterminated\n', "not a valid CSV|malformed"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(project, tmp_path, rows, extra, message):
    corpus = _small_corpus(tmp_path / "c", rows)
    if extra:
        with (corpus / "labels.csv").open("a") as f:
            f.write(extra)
    with pytest.raises(CommandError, match=message):
        _run(project.slug, str(corpus), preset="emodb", in_process=True)
    assert not Clip.objects.exists()
    assert not Annotation.objects.exists()
    assert not ImportBatch.objects.exists()


def test_a_clip_already_in_the_project_is_matched_by_sha256(project, tmp_path):
    corpus = _small_corpus(tmp_path / "c", [("a.wav", "W")])
    call_command("ingest", project.slug, str(corpus / "wav"), in_process=True, verbosity=0,
                 stdout=io.StringIO())  # fmt: skip
    clip = Clip.objects.get()
    assert clip.speaker_id == ""
    renamed = tmp_path / "d"
    shutil.copytree(corpus, renamed)
    _run(project.slug, str(renamed), preset="emodb", in_process=True)
    clip.refresh_from_db()
    assert Clip.objects.count() == 1
    assert clip.speaker_id == "s0"  # an empty field is filled from the labels
    assert clip.annotations.get().label_source == LabelSource.CORPUS


@pytest.mark.slow
@pytest.mark.celery
def test_emodb_is_imported_through_the_worker_with_one_corpus_annotation_per_clip(emodb, worker):
    version = taxonomy.install_preset("willcox")
    project = Project.objects.create(name="emodb", slug="emodb", taxonomy_version=version)
    labels = list(csv.DictReader((emodb / "labels.csv").open()))
    out = _run(project.slug, str(emodb), preset="emodb", timeout=600)
    assert f"labels={len(labels)} dropped=0" in out
    clips = Clip.objects.filter(project=project)
    assert clips.count() == len(labels)
    per_clip = {a.clip_id: a for a in Annotation.objects.filter(clip__project=project)}
    assert len(per_clip) == len(labels)
    assert {a.label_source for a in per_clip.values()} == {LabelSource.CORPUS}
    expected = {row["file"]: row["emotion"] for row in labels}
    mapping = load_mapping(project, preset="emodb")
    for clip in clips:
        assert per_clip[clip.pk].node.key == mapping.node_for(expected[clip.original_name]).key
