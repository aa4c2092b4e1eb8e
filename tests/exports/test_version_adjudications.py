"""A reviewer's adjudication is what a dataset version trains on (issue 11: "the datasets use
them when present"), without touching the annotators' labels, and as of the version's
creation: a later adjudication changes the next version, not a rebuild of this one."""

from __future__ import annotations

import pytest

from exports.formats import materialise
from exports.services import build, versions
from labelling.models import Role
from review.services.adjudication import adjudicate
from tests.exports.version_world import built, clip, jsonl, label, member

pytestmark = pytest.mark.django_db


@pytest.fixture
def disputed(project, engineer):
    """Two clips; anna and bert disagree on the first (mad.angry vs joyful), agree on the
    second (sad). A reviewer settles the first as scared.anxious."""
    anna, bert = member(project, "anna"), member(project, "bert")
    first, second = clip(project, "s1"), clip(project, "s2")
    label(first, anna, "mad.angry")
    label(first, bert, "joyful")
    label(second, anna, "sad")
    label(second, bert, "sad")
    reviewer = member(project, "rita", Role.REVIEWER)
    adjudicate(first, reviewer, "scared.anxious", note="frightened, not angry")
    return first, second, reviewer


def test_the_adjudicated_label_is_the_label_and_votes_stay_as_given(project, engineer, disputed):
    first, second, _ = disputed
    folder = versions.folder_of(built(project, engineer))

    core = {row["clip_id"]: row for row in jsonl(folder, "labels_core")}
    assert core[first.pk]["adjudicated"] == "scared"
    assert core[first.pk]["label"] == "scared"
    assert core[first.pk]["majority"] in {"mad", "joyful"}  # the votes, untouched
    assert core[second.pk]["adjudicated"] is None
    assert core[second.pk]["label"] == core[second.pk]["majority"] == "sad"
    secondary = {row["clip_id"]: row for row in jsonl(folder, "labels_secondary")}
    assert secondary[first.pk]["adjudicated"] == "scared.anxious"
    assert jsonl(folder, "adjudications") == [
        {"clip_id": first.pk, "label": "scared.anxious", "given_label": "scared.anxious",
         "created_at": jsonl(folder, "adjudications")[0]["created_at"]}
    ]  # fmt: skip
    given = sorted(
        row["core"] for row in jsonl(folder, "annotations") if row["clip_id"] == first.pk
    )
    assert given == ["joyful", "mad"]


def test_a_later_adjudication_leaves_a_rebuild_unchanged(project, engineer, disputed, tmp_path):
    first, _, reviewer = disputed
    version = built(project, engineer)
    adjudicate(first, reviewer, "peaceful")

    assert build.rebuild_into(version, tmp_path / "again") == version.manifest_sha256
    newer = versions.folder_of(built(project, engineer))
    core = {row["clip_id"]: row for row in jsonl(newer, "labels_core")}
    assert core[first.pk]["label"] == "peaceful"


def test_the_hf_export_carries_the_label_to_train_on(project, engineer, disputed, tmp_path):
    import pyarrow.parquet as pq

    first, _, _ = disputed
    out = materialise(versions.folder_of(built(project, engineer)), "hf", tmp_path / "hf")
    every = {
        row["clip_id"]: row
        for path in out.glob("*/metadata.parquet")
        for row in pq.read_table(path).to_pylist()
    }
    assert every[first.pk]["core_label"] == every[first.pk]["core_adjudicated"] == "scared"
