"""A reviewer may decide a clip deeper than any annotator labelled it: the version then has
the clip in labels_<ring> at that ring too, with the reviewer's label and no votes."""

from __future__ import annotations

import pytest

from exports.services import versions
from labelling.models import Role
from review.services.adjudication import adjudicate
from tests.exports.version_world import built, clip, jsonl, label, member

pytestmark = pytest.mark.django_db


def test_a_clip_decided_below_its_labels_is_in_every_ring_it_was_decided_at(project, engineer):
    anna, bert = member(project, "anna"), member(project, "bert")
    shallow, deep = clip(project, "s1"), clip(project, "s2")
    label(shallow, anna, "joyful")  # core only
    label(shallow, bert, "scared.confused")  # secondary
    label(deep, anna, "sad.guilty.remorseful")
    label(deep, bert, "sad.guilty.remorseful")
    adjudicate(shallow, member(project, "rita", Role.REVIEWER), "joyful.excited.thrilled")

    folder = versions.folder_of(built(project, engineer))
    rows = {
        ring: {row["clip_id"]: row for row in jsonl(folder, f"labels_{ring}")}
        for ring in ("core", "secondary", "tertiary")
    }
    assert rows["core"][shallow.pk]["label"] == "joyful"
    assert rows["secondary"][shallow.pk]["label"] == "joyful.excited"
    assert rows["secondary"][shallow.pk]["majority"] == "scared.confused"
    tertiary = rows["tertiary"]
    assert sorted(tertiary) == sorted([shallow.pk, deep.pk])
    assert tertiary[shallow.pk] == {
        "clip_id": shallow.pk, "label": "joyful.excited.thrilled",
        "adjudicated": "joyful.excited.thrilled", "raters": 0, "majority": None,
        "majority_votes": 0, "tied": False, "soft": "{}", "dawid_skene": None,
        "dawid_skene_probability": None, "agreement": None,
    }  # fmt: skip
    assert tertiary[deep.pk]["label"] == tertiary[deep.pk]["majority"] == "sad.guilty.remorseful"
    assert tertiary[deep.pk]["adjudicated"] is None
