"""Taxonomy presets, import/export and the versioning rules, through the API."""

from __future__ import annotations

import json

import pytest

from labelling.models import Annotation, NodeMapping, TaxonomyVersion
from labelling.services import annotations as annotation_service
from labelling.services import taxonomy
from labelling.taxonomy_schema import load_preset
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db

SMALL = {
    "format": "emoloop-taxonomy/1",
    "name": "Support calls",
    "slug": "support",
    "nodes": [
        {
            "key": "angry",
            "name": "Angry",
            "children": [{"key": "angry.impatient", "name": "Impatient"}],
        },
        {"key": "calm", "name": "Calm"},
    ],
}


def test_presets_install_with_their_full_trees(db):
    sizes = {}
    for slug in ("willcox", "plutchik", "basic"):
        version = taxonomy.install_preset(slug)
        sizes[slug] = [version.nodes.filter(level=level).count() for level in range(3)]
        assert taxonomy.install_preset(slug) == version, "installing twice is a no-op"
    assert sizes == {"willcox": [6, 36, 72], "plutchik": [8, 24, 0], "basic": [9, 0, 0]}


def test_export_then_import_round_trips(client_for, engineer, willcox):
    api = client_for(engineer)
    exported = api.get("/api/taxonomies/willcox/versions/1/").json()
    assert exported["version"] == 1
    exported["slug"], exported["name"] = "willcox-copy", "Willcox copy"

    response = api.post("/api/taxonomies/import/", exported, format="json")

    assert response.status_code == 201, response.content
    copy = api.get("/api/taxonomies/willcox-copy/versions/1/").json()
    assert copy["nodes"] == exported["nodes"]


def test_an_invalid_document_lists_every_problem_and_writes_nothing(client_for, engineer):
    bad = json.loads(json.dumps(SMALL))
    bad["nodes"][1]["key"] = "angry"  # duplicate
    bad["nodes"][0]["colour"] = "red"  # not #rrggbb

    response = client_for(engineer).post("/api/taxonomies/import/", bad, format="json")

    assert response.status_code == 400
    assert len(response.json()["document"]) >= 2
    assert not TaxonomyVersion.objects.filter(taxonomy__slug="support").exists()


def test_annotators_cannot_edit_taxonomies(client_for, annotator):
    assert (
        client_for(annotator).post("/api/taxonomies/import/", SMALL, format="json").status_code
        == 403
    )


def test_an_unused_version_is_edited_in_place_but_a_used_one_is_immutable(
    client_for, engineer, annotator, project
):
    api = client_for(engineer)
    assert api.post("/api/taxonomies/import/", SMALL, format="json").status_code == 201
    version = TaxonomyVersion.objects.get(taxonomy__slug="support")
    edited = {**SMALL, "nodes": [*SMALL["nodes"], {"key": "sad", "name": "Sad"}]}

    assert api.put("/api/taxonomies/support/versions/1/", edited, format="json").status_code == 200
    assert version.nodes.count() == 4

    taxonomy.assign_to_project(project, version)
    annotation_service.record_annotation(
        clip=ClipFactory(project=project), annotator=annotator, node_key="angry.impatient"
    )
    response = api.put("/api/taxonomies/support/versions/1/", SMALL, format="json")

    assert response.status_code == 409
    assert version.nodes.count() == 4, "nothing changed"


def test_a_new_version_needs_an_explicit_mapping_of_every_old_node(
    client_for, engineer, annotator, project
):
    api = client_for(engineer)
    api.post("/api/taxonomies/import/", SMALL, format="json")
    v1 = TaxonomyVersion.objects.get(taxonomy__slug="support")
    taxonomy.assign_to_project(project, v1)
    annotation_service.record_annotation(
        clip=ClipFactory(project=project), annotator=annotator, node_key="angry.impatient"
    )
    v2_doc = {
        **SMALL,
        "nodes": [
            {
                "key": "frustrated",
                "name": "Frustrated",
                "children": [{"key": "frustrated.impatient", "name": "Impatient"}],
            },
            {"key": "neutral", "name": "Neutral"},
        ],
    }

    incomplete = api.post(
        "/api/taxonomies/support/versions/",
        {"based_on": 1, "document": v2_doc, "mapping": {"angry": "frustrated"}},
        format="json",
    )
    assert incomplete.status_code == 400
    assert any("angry.impatient" in problem for problem in incomplete.json()["mapping"])
    assert TaxonomyVersion.objects.filter(taxonomy__slug="support").count() == 1

    mapping = {"angry": "frustrated", "angry.impatient": "frustrated.impatient", "calm": None}
    created = api.post(
        "/api/taxonomies/support/versions/",
        {"based_on": 1, "document": v2_doc, "mapping": mapping, "note": "rename"},
        format="json",
    )
    assert created.status_code == 201, created.content
    v2 = TaxonomyVersion.objects.get(taxonomy__slug="support", number=2)
    assert v2.previous == v1
    assert NodeMapping.objects.get(source__key="calm", target_version=v2).target is None
    assert (
        NodeMapping.objects.get(source__key="angry.impatient").target.key == "frustrated.impatient"
    )

    # The project may move to v2 (a descendant of the used version), not to an unrelated one.
    taxonomy.assign_to_project(project, v2)
    unrelated = taxonomy.install_preset("basic")
    with pytest.raises(taxonomy.MappingError):
        taxonomy.assign_to_project(project, unrelated)
    assert Annotation.objects.get().node.version == v1, "old labels keep their version"


def test_the_preset_documents_match_the_database_export(willcox):
    exported = taxonomy.export_version(willcox)
    preset = load_preset("willcox")
    assert [n["key"] for n in exported["nodes"]] == [n.key for n in preset.nodes if n.level == 0]
