"""The diff between two versions: new speakers and clips, a majority flipped by a new
annotator's vote, no split moves; the API's permissions, 409 and the cap on lists."""

from __future__ import annotations

import pytest

from exports.core.diff import diff_folders
from exports.services import diff, versions
from labelling.models import Role
from tests.exports.version_world import built, clip, label, member

pytestmark = [pytest.mark.django_db, pytest.mark.slow]  # two builds per test
BASE = "/api/projects/callcentre/datasets/"


@pytest.fixture
def two_versions(project, engineer):
    """v1: four speakers; clip b is tied (sad vs joyful) and joyful wins on dataset
    frequency. v2: two new speakers, one more clip of an old speaker, and carl's vote for
    sad on b: sad 2, joyful 1."""
    anna, bert = member(project, "una"), member(project, "vic")
    a, b, c, d = (clip(project, s) for s in ("s1", "s2", "s3", "s4"))
    for target, (first, second) in ((a, ("joyful", "joyful")), (b, ("sad", "joyful")),
                                    (c, ("mad", "mad")), (d, ("joyful", "joyful"))):  # fmt: skip
        label(target, anna, first)
        label(target, bert, second)
    first = built(project, engineer)
    e, f, g = clip(project, "s5"), clip(project, "s6"), clip(project, "s1")
    for target, key in ((e, "sad"), (f, "mad"), (g, "joyful")):
        label(target, anna, key)
        label(target, bert, key)
    label(b, member(project, "wes"), "sad")
    second = built(project, engineer)
    return first, second, {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f, "g": g}


def test_the_diff_names_added_clips_the_flipped_label_and_no_split_moves(two_versions):
    first, second, clips = two_versions

    found = diff.diff(first, second)

    added = sorted(clips[k].pk for k in "efg")
    assert found == {
        "from": 1,
        "to": 2,
        "summary": {
            "clips_from": 4, "clips_to": 7, "clips_added": 3, "clips_removed": 0,
            "labels_changed": {"core": 1, "secondary": 0, "tertiary": 0},
            "groups_added": 2, "groups_removed": 0, "old_groups": 4,
            "split_moves": 0, "old_groups_kept_split": True,
        },
        "limit": 1000,
        "clips_added": added,
        "clips_removed": [],
        "labels_changed": {
            "core": [{"clip_id": clips["b"].pk, "from": "joyful", "to": "sad"}],
            "secondary": [],
            "tertiary": [],
        },
        "split_moves": [],
    }  # fmt: skip
    backwards = diff.diff(second, first)
    assert backwards["clips_removed"] == added
    assert backwards["labels_changed"]["core"] == [
        {"clip_id": clips["b"].pk, "from": "sad", "to": "joyful"}
    ]


def test_a_group_whose_split_changed_is_reported_as_a_move(two_versions, tmp_path):
    first, second, _clips = two_versions
    old, new = versions.folder_of(first), versions.folder_of(second)
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("labels_core.csv", "labels_secondary.csv", "labels_tertiary.csv"):
        (moved / name).write_bytes((new / name).read_bytes())
    lines = (new / "clips.csv").read_text().splitlines()
    header = lines[0].split(",")
    at_split, at_group = header.index("split"), header.index("group")
    rewritten = [lines[0]]
    before = ""
    for line in lines[1:]:
        cells = line.split(",")
        if cells[at_group] == "speaker:s1":
            before = cells[at_split]
            cells[at_split] = "dev" if before != "dev" else "test"
        rewritten.append(",".join(cells))
    (moved / "clips.csv").write_text("\n".join(rewritten) + "\n")

    found = diff_folders(old, moved)

    after = "dev" if before != "dev" else "test"
    assert found["split_moves"] == [{"group": "speaker:s1", "from": before, "to": after}]
    assert found["summary"]["old_groups_kept_split"] is False


def test_the_api_serves_the_diff_to_ml_engineers(two_versions, project, engineer, client_for):
    first, second, clips = two_versions
    client = client_for(engineer)

    response = client.get(f"{BASE}1/diff/2/")
    assert response.status_code == 200, response.content
    assert response.json() == diff.diff(first, second)

    capped = client.get(f"{BASE}1/diff/2/", {"limit": 1}).json()
    assert capped["clips_added"] == [min(clips[k].pk for k in "efg")]
    assert capped["summary"]["clips_added"] == 3
    assert client.get(f"{BASE}1/diff/2/", {"limit": 10_001}).status_code == 400
    assert client.get(f"{BASE}1/diff/9/").status_code == 404

    admin = member(project, "ada2", Role.ADMIN)
    assert client_for(admin).get(f"{BASE}2/diff/1/").status_code == 200


def test_annotators_and_reviewers_get_403_and_other_projects_404(
    two_versions, annotator, reviewer, outsider, client_for
):
    assert client_for(annotator).get(f"{BASE}1/diff/2/").status_code == 403
    assert client_for(reviewer).get(f"{BASE}1/diff/2/").status_code == 403
    assert client_for(outsider).get(f"{BASE}1/diff/2/").status_code == 404


def test_a_version_not_ready_answers_409(two_versions, project, engineer, client_for):
    versions.create_version(project, user=engineer)

    response = client_for(engineer).get(f"{BASE}1/diff/3/")

    assert response.status_code == 409
    assert response.json()["code"] == "not_ready"
