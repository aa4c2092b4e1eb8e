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

    response = api.post("/api/taxonomies/import/?project=callcentre", exported, format="json")

    assert response.status_code == 201, response.content
    copy = api.get("/api/taxonomies/willcox-copy/versions/1/").json()
    assert copy["nodes"] == exported["nodes"]


def test_an_invalid_document_lists_every_problem_and_writes_nothing(client_for, engineer):
    bad = json.loads(json.dumps(SMALL))
    bad["nodes"][1]["key"] = "angry"  # duplicate
    bad["nodes"][0]["colour"] = "red"  # not #rrggbb

    response = client_for(engineer).post(
        "/api/taxonomies/import/?project=callcentre", bad, format="json"
    )

    assert response.status_code == 400
    assert len(response.json()["errors"]["document"]) >= 2
    assert not TaxonomyVersion.objects.filter(taxonomy__slug="support").exists()


def test_annotators_cannot_edit_taxonomies(client_for, annotator):
    api = client_for(annotator)
    for url in ("/api/taxonomies/import/", "/api/taxonomies/import/?project=callcentre"):
        assert api.post(url, SMALL, format="json").status_code == 403, url


def test_an_unused_version_is_edited_in_place_but_a_used_one_is_immutable(
    client_for, engineer, annotator, project
):
    api = client_for(engineer)
    imported = api.post("/api/taxonomies/import/?project=callcentre", SMALL, format="json")
    assert imported.status_code == 201
    version = TaxonomyVersion.objects.get(taxonomy__slug="support")
    edited = {**SMALL, "nodes": [*SMALL["nodes"], {"key": "sad", "name": "Sad"}]}

    assert api.put("/api/taxonomies/support/versions/1/", edited, format="json").status_code == 200
    assert version.nodes.count() == 4

    # Once a project uses it, its annotators see these names: it is frozen.
    taxonomy.assign_to_project(project, version)
    response = api.put("/api/taxonomies/support/versions/1/", SMALL, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "version_locked"
    assert "a project uses it" in response.json()["detail"]
    assert version.nodes.count() == 4, "nothing changed"


def test_a_new_version_needs_an_explicit_mapping_of_every_old_node(
    client_for, engineer, annotator, project
):
    api = client_for(engineer)
    api.post("/api/taxonomies/import/?project=callcentre", SMALL, format="json")
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
    problems = incomplete.json()["errors"]["mapping"]
    assert any("angry.impatient" in problem for problem in problems)
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


def test_a_wheel_is_written_only_by_its_owner_project_and_presets_only_by_staff(
    client_for, engineer, outsider, other_project, project, willcox
):
    """A member of another project cannot rewrite a wheel this project uses; presets are
    the instance's (staff)."""
    from labelling.models import Membership
    from tests.conftest import make_user

    foreign = make_user("fiona")
    Membership.objects.create(user=foreign, project=other_project, role="ml_engineer")
    mine = client_for(engineer)
    assert (
        mine.post("/api/taxonomies/import/?project=callcentre", SMALL, format="json").status_code
        == 201
    )
    draft = {**SMALL, "nodes": [*SMALL["nodes"], {"key": "sad", "name": "Sad"}]}

    theirs = client_for(foreign)
    assert theirs.get("/api/taxonomies/support/").status_code == 404
    assert (
        theirs.put("/api/taxonomies/support/versions/1/", draft, format="json").status_code == 404
    )
    assert (
        theirs.post("/api/taxonomies/import/?project=callcentre", SMALL, format="json").status_code
        == 404
    )
    # The shared presets: readable by everyone signed in, writable by staff only.
    assert theirs.get("/api/taxonomies/willcox/versions/1/").status_code == 200
    body = {"based_on": 1, "document": SMALL, "mapping": {}}
    for api in (mine, theirs):
        assert api.post("/api/taxonomies/willcox/versions/", body, format="json").status_code == 403
        assert (
            api.put("/api/taxonomies/willcox/versions/1/", SMALL, format="json").status_code == 403
        )
        assert api.post("/api/taxonomies/import/", SMALL, format="json").status_code == 403
    # Another project cannot switch to this project's wheel either.
    from labelling.models import Project

    other_admin = client_for(outsider)
    switched = other_admin.post(
        f"/api/projects/{other_project.slug}/taxonomy/",
        {"taxonomy": "support", "version": 1},
        format="json",
    )
    assert switched.status_code == 400
    assert Project.objects.get(pk=other_project.pk).taxonomy_version == willcox


def test_versions_with_successors_or_gold_clips_are_immutable(
    client_for, engineer, reviewer, project
):
    api = client_for(engineer)
    api.post("/api/taxonomies/import/?project=callcentre", SMALL, format="json")
    mapping = {"angry": "angry", "angry.impatient": "angry.impatient", "calm": "calm"}
    created = api.post(
        "/api/taxonomies/support/versions/",
        {"based_on": 1, "document": SMALL, "mapping": mapping},
        format="json",
    )
    assert created.status_code == 201
    before = NodeMapping.objects.count()

    rewrite = api.put("/api/taxonomies/support/versions/1/", SMALL, format="json")

    assert rewrite.status_code == 409
    assert "a later version maps from it" in rewrite.json()["detail"]
    assert NodeMapping.objects.count() == before, "the mappings survive"

    # A gold clip on a draft's node freezes it too (it was a 500 before).
    v2 = TaxonomyVersion.objects.get(taxonomy__slug="support", number=2)
    clip = ClipFactory(project=project)
    from labelling.models import GoldClip

    GoldClip.objects.create(clip=clip, node=v2.nodes.get(key="calm"))
    gold_rewrite = api.put("/api/taxonomies/support/versions/2/", SMALL, format="json")
    assert gold_rewrite.status_code == 409
    assert "gold" in gold_rewrite.json()["detail"]


def test_the_taxonomy_switch_takes_a_slug_and_a_version_number(client_for, project_admin, project):
    taxonomy.install_preset("basic")
    api = client_for(project_admin)

    by_id = api.post(f"/api/projects/{project.slug}/taxonomy/", {"version": 1}, format="json")
    by_number = api.post(
        f"/api/projects/{project.slug}/taxonomy/",
        {"taxonomy": "basic", "version": 1},
        format="json",
    )
    missing = api.post(
        f"/api/projects/{project.slug}/taxonomy/",
        {"taxonomy": "basic", "version": 9},
        format="json",
    )

    assert by_id.status_code == 400
    assert by_number.status_code == 200, by_number.content
    assert by_number.json()["taxonomy"] == "basic@1"
    assert missing.status_code == 400


def test_the_versions_listing_is_paginated_as_declared(client_for, engineer, willcox):
    body = client_for(engineer).get("/api/taxonomies/willcox/versions/").json()
    assert body["count"] == 1
    assert body["results"][0]["number"] == 1
