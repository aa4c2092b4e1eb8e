"""What a version holds besides its labels' aggregates: the taxonomy mapping of labels made
on an older version of the wheel, corpus labels kept apart from human ones, weak labels,
active-learning lineage, and audio by reference."""

from __future__ import annotations

import json

import pytest

from exports.core.archive import verify_sha256sums
from exports.services import build, versions
from labelling.models import LabelSource, TaxonomyNode, WeakLabel
from labelling.services import taxonomy
from labelling.services.interop import raters
from labelling.taxonomy_schema import TaxonomyDocument
from learner.models import ClipScore, ModelVersion, Ranking
from tests.exports.version_world import built, clip, jsonl, label, member, read_json, rows

pytestmark = pytest.mark.django_db


def _switch_mid_way(project, willcox):
    """Version 2 of the wheel: mad.angry becomes sad, scared.anxious is dropped, every other
    node maps onto itself. The project moves to it."""
    document = TaxonomyDocument(
        name=willcox.taxonomy.name, slug=willcox.taxonomy.slug,
        description=willcox.taxonomy.description, source=willcox.taxonomy.source,
        nodes=tuple(taxonomy.flat_nodes(willcox)),
    )  # fmt: skip
    mapping: dict[str, str | None] = {
        key: key for key in willcox.nodes.values_list("key", flat=True)
    }
    mapping["mad.angry"] = "sad"
    mapping["scared.anxious"] = None
    second = taxonomy.create_next_version(willcox, document, mapping)
    taxonomy.assign_to_project(project, second)
    project.refresh_from_db()
    return second


def test_labels_made_before_a_taxonomy_switch_are_mapped_onto_the_versions_taxonomy(
    project, willcox, engineer
):
    anna, bert = member(project, "anna"), member(project, "bert")
    a, b, c = clip(project, "s1"), clip(project, "s2"), clip(project, "s3")
    label(a, anna, "mad.angry")
    label(b, anna, "scared.anxious")
    label(c, anna, "joyful")
    second = _switch_mid_way(project, willcox)
    label(a, bert, "mad.angry", on=second)
    label(c, bert, "joyful", on=second)

    version = built(project, engineer)
    folder = versions.folder_of(version)

    meta = read_json(folder, "version.json")
    assert meta["taxonomy"] == {
        "taxonomy": "willcox",
        "version": 2,
        "mapping": {"joyful": "joyful", "mad.angry": "sad", "scared.anxious": None},
    }
    given = {(int(r["clip_id"]), r["annotator"]): r for r in rows(folder, "annotations")}
    anna_a, anna_b, bert_a = given[(a.pk, "r0001")], given[(b.pk, "r0001")], given[(a.pk, "r0002")]
    assert (anna_a["core"], anna_a["secondary"], anna_a["given_label"]) == ("sad", "", "mad.angry")
    assert (anna_b["core"], anna_b["skip_reason"], anna_b["given_label"]) == (
        "", "", "scared.anxious"
    )  # fmt: skip
    assert (bert_a["core"], bert_a["secondary"]) == ("mad", "mad.angry")
    core = {int(r["clip_id"]): r for r in rows(folder, "labels_core")}
    # a: sad (anna, mapped) vs mad (bert): a tie; both once in the dataset: smaller key.
    assert (core[a.pk]["majority"], core[a.pk]["tied"]) == ("mad", "true")
    assert core[c.pk]["majority"] == "joyful"
    assert b.pk not in core  # its only label was dropped; the clip stays in the dataset
    assert b.pk in {int(r["clip_id"]) for r in rows(folder, "clips")}
    sheet = read_json(folder, "datasheet.json")
    assert sheet["collection"]["labels_dropped_by_mapping"] == 1
    assert sheet["collection"]["raters_per_clip"]["histogram"] == {"0": 1, "2": 2}
    assert any("1 labels were given on feelings a taxonomy update dropped" in item
               for item in sheet["limitations"])  # fmt: skip


def test_a_version_keeps_its_taxonomy_when_the_project_moves_on(project, willcox, engineer):
    anna = member(project, "anna")
    a = clip(project, "s1")
    label(a, anna, "mad.angry")
    version = built(project, engineer)
    _switch_mid_way(project, willcox)

    digest = build.rebuild_into(version, versions.folder_of(version).with_name("again"))

    assert digest == version.manifest_sha256
    assert read_json(versions.folder_of(version), "version.json")["taxonomy"]["mapping"] == {}


def test_corpus_labels_are_exported_apart_and_count_in_no_aggregate(project, engineer, willcox):
    anna = member(project, "anna")
    corpus = raters.rater("corpus:emodb")
    a, only_corpus = clip(project, "s1"), clip(project, "s2")
    label(a, anna, "mad")
    label(a, corpus, "joyful", source=LabelSource.CORPUS)
    label(only_corpus, corpus, "sad", source=LabelSource.CORPUS)
    mad = TaxonomyNode.objects.get(version=willcox, key="mad")
    WeakLabel.objects.create(
        clip=a, model_name="ser-wav2vec", model_version="1.2", taxonomy_version=willcox,
        probabilities={"sad": 0.25, "mad": 0.75}, top_node=mad, top_probability=0.75,
    )  # fmt: skip

    version = versions.create_version(project, user=engineer)
    WeakLabel.objects.create(  # imported after the version was defined: not in it
        clip=only_corpus, model_name="ser-wav2vec", model_version="1.2",
        taxonomy_version=willcox, probabilities={"sad": 1.0}, top_node=mad, top_probability=1.0,
    )  # fmt: skip
    build.run_build(version.pk)
    folder = versions.folder_of(version)

    annotations = sorted(
        (int(r["clip_id"]), r["annotator"], r["label_source"], r["core"])
        for r in rows(folder, "annotations")
    )
    assert annotations == sorted([
        (a.pk, "r0001", "human", "mad"),
        (a.pk, "corpus:emodb", "corpus", "joyful"),
        (only_corpus.pk, "corpus:emodb", "corpus", "sad"),
    ])  # fmt: skip
    core = {int(r["clip_id"]): r for r in rows(folder, "labels_core")}
    assert list(core) == [a.pk]
    assert (core[a.pk]["majority"], core[a.pk]["raters"]) == ("mad", "1")
    assert {int(r["clip_id"]) for r in rows(folder, "clips")} == {a.pk, only_corpus.pk}
    agreement = read_json(folder, "agreement.json")
    assert list(agreement["core"]["rater_vs_majority"]) == ["r0001"]
    assert jsonl(folder, "weak_labels") == [{
        "clip_id": a.pk, "model": "ser-wav2vec", "model_version": "1.2", "taxonomy_version": 1,
        "top_label": "mad", "top_probability": 0.75,
        "probabilities": json.dumps({"mad": 0.75, "sad": 0.25}, sort_keys=True),
    }]  # fmt: skip
    collection = read_json(folder, "datasheet.json")["collection"]
    assert collection["label_sources"] == {"corpus": 2, "human": 1}
    assert collection["annotators"] == 1
    assert collection["raters_per_clip"]["histogram"] == {"0": 1, "1": 1}


def test_lineage_lists_the_rankings_that_selected_each_clip_before_the_version(project, engineer):
    anna = member(project, "anna")
    a, b, c = clip(project, "s1"), clip(project, "s2"), clip(project, "s3")
    unlabelled = clip(project, "s4")
    for each in (a, b, c):
        label(each, anna, "mad")
    model = ModelVersion.objects.create(
        project=project, number=1, extractor="mfcc", extractor_version="1",
        artifact="learner/models/m1.joblib", artifact_sha256="0" * 64,
    )  # fmt: skip
    cold = Ranking.objects.create(project=project, strategy="random", batch_size=3)
    # Selected: b 0.9 (rank 1), unlabelled 0.7 (2), a 0.5 (3); c 0.99 was not selected.
    for target, score, selected in ((a, 0.5, True), (b, 0.9, True), (unlabelled, 0.7, True),
                                    (c, 0.99, False)):  # fmt: skip
        ClipScore.objects.create(ranking=cold, clip=target, score=score, selected=selected)
    warm = Ranking.objects.create(project=project, strategy="entropy", model_version=model)
    ClipScore.objects.create(ranking=warm, clip=a, score=0.3, selected=True)

    version = versions.create_version(project, user=engineer)
    later = Ranking.objects.create(project=project, strategy="entropy", model_version=model)
    ClipScore.objects.create(ranking=later, clip=c, score=0.8, selected=True)
    build.run_build(version.pk)
    folder = versions.folder_of(version)

    got = [(int(r["clip_id"]), int(r["ranking_id"]), r["strategy"], r["model_version"],
            float(r["score"]), int(r["rank"])) for r in rows(folder, "lineage")]  # fmt: skip
    assert got == [
        (a.pk, cold.pk, "random", "", 0.5, 3),
        (a.pk, warm.pk, "entropy", "1", 0.3, 1),
        (b.pk, cold.pk, "random", "", 0.9, 1),
    ]
    assert rows(folder, "lineage")[0]["selected_at"] == cold.created_at.isoformat().replace(
        "+00:00", "Z"
    )
    meta = read_json(folder, "version.json")["lineage"]
    assert (meta["clips"], meta["clips_selected_by_loop"], meta["clips_not_selected_by_loop"]) == (
        3, 2, 1
    )  # fmt: skip
    assert meta["selections_by_strategy"] == {"entropy": 1, "random": 2}
    assert [(r["ranking_id"], r["clips"]) for r in meta["rankings"]] == [(cold.pk, 2), (warm.pk, 1)]
    version.refresh_from_db()
    assert version.lineage == meta
    assert (
        read_json(folder, "datasheet.json")["collection"]["lineage"]["clips_selected_by_loop"] == 2
    )


def test_audio_by_reference_copies_no_audio_and_names_the_stored_file(project, engineer):
    anna = member(project, "anna")
    a = clip(project, "s1")
    label(a, anna, "mad")

    version = built(project, engineer, audio="reference")
    folder = versions.folder_of(version)

    assert not (folder / "audio").exists()
    (row,) = jsonl(folder, "clips")
    assert row["file_name"] is None
    assert row["audio_uri"] == a.canonical.name
    assert row["sha256"] is None
    assert row["original_sha256"] == a.sha256
    assert read_json(folder, "version.json")["options"] == {"audio": "reference"}
    assert verify_sha256sums(folder) == []
    with pytest.raises(ValueError, match="audio must be one of copy, reference"):
        versions.create_version(project, user=engineer, audio="symlink")


def test_a_copied_clip_names_its_file_and_the_hash_of_the_copy(project, engineer):
    anna = member(project, "anna")
    a = clip(project, "s1")
    label(a, anna, "mad")

    folder = versions.folder_of(built(project, engineer))

    (row,) = jsonl(folder, "clips")
    assert row["file_name"] == f"audio/{a.pk}.wav"
    assert row["audio_uri"] is None
    assert row["sha256"] == build.sha256_file(folder / row["file_name"])
