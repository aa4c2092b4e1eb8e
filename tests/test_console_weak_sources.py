"""The console's models page lists the project's weak-label sources, read-only."""

from __future__ import annotations

import pytest
from django.test import Client

from labelling.models_interop import WeakLabel
from labelling.services import annotations as annotation_service
from labelling.services.interop import sources
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


def test_the_models_page_lists_each_source_with_its_agreement_and_state(
    project, annotator, engineer, settings
):
    settings.EMOLOOP_WEAK_MIN_OVERLAP = 2
    node = project.taxonomy_version.nodes.get(key="joyful")
    for _ in range(2):
        clip = ClipFactory(project=project)
        annotation_service.record_annotation(clip=clip, annotator=annotator, node_key="mad")
        WeakLabel.objects.create(
            clip=clip, model_name="ser-x", model_version="2",
            taxonomy_version=project.taxonomy_version, probabilities={"joyful": 1.0},
            top_node=node, top_probability=1.0,
        )  # fmt: skip
    sources.set_source(project, "later-model", weight=0.5)
    client = Client()
    client.force_login(engineer)

    html = client.get(f"/projects/{project.slug}/models/").content.decode()

    assert 'id="weak-sources"' in html
    row = html.split('data-source="ser-x"')[1].split("</tr>")[0]
    assert "0 % of 2 clips" in row
    assert "flagged: disagrees" in row
    assert "not used" in row
    later = html.split('data-source="later-model"')[1].split("</tr>")[0]
    assert "0.50" in later
    assert "trains" in later


def test_without_sources_the_section_is_not_there(project, engineer):
    client = Client()
    client.force_login(engineer)
    html = client.get(f"/projects/{project.slug}/models/").content.decode()
    assert 'id="weak-sources"' not in html
