"""The datasheet on a constructed project whose figures are known: composition per split
recomputed from the tables, collection figures, agreement, computed limitations, and plots
that are real PNGs, listed in SHA256SUMS, shown by the Markdown and byte-identical when
built again."""

from __future__ import annotations

from collections import Counter

import pytest

from exports.core import plots
from exports.core.archive import MANIFEST
from exports.services import build, versions
from tests.exports.version_world import built, clip, label, member, read_json, rows

pytestmark = pytest.mark.django_db
PNG = b"\x89PNG\r\n\x1a\n"

# speaker: (gender, age band, language, channel), and what anna, bert (and carl) say.
SPEAKERS = {
    "s1": ("female", "18-29", "de-DE", "phone"),
    "s2": ("male", "30-44", "de-DE", "studio"),
    "s3": ("female", "45-59", "en-GB", "phone"),
    "s4": ("male", "", "", ""),
}
PLAN = [
    ("s1", ("mad.angry", "sad", "joyful")),
    ("s1", ("mad", "mad.rage")),
    ("s2", ("sad", "joyful")),
    ("s2", ("joyful", "joyful.excited")),
    ("s3", ("scared", "mad")),
    ("s4", ("peaceful",)),
]


@pytest.fixture
def sheet_project(project, engineer):
    project.annotators_per_clip = 2
    project.gold_rate = 0.05
    project.assisted = True
    project.save()
    people = [member(project, name) for name in ("anna", "bert", "carl")]
    for speaker, said in PLAN:
        gender, age, language, channel = SPEAKERS[speaker]
        made = clip(project, speaker, gender=gender, age_band=age, language=language,
                    channel=channel, duration_s=1.25)  # fmt: skip
        for who, key in zip(people, said, strict=False):
            label(made, who, key, suggestion_shown=who.username == "anna")
    return project


def test_composition_per_split_matches_the_tables(sheet_project, engineer):
    folder = versions.folder_of(built(sheet_project, engineer))
    sheet = read_json(folder, "datasheet.json")
    clips = rows(folder, "clips")
    core = {r["clip_id"]: r["majority"] for r in rows(folder, "labels_core")}

    composition = sheet["composition"]
    assert (composition["clips"], composition["speakers"]) == (6, 4)
    assert composition["duration_s"] == 7.5
    assert sum(s["clips"] for s in composition["splits"].values()) == 6
    for split, figures in composition["splits"].items():
        mine = [r for r in clips if r["split"] == split]
        assert figures["clips"] == len(mine)
        assert figures["speakers"] == len({r["speaker_id"] for r in mine})
        assert figures["duration_s"] == pytest.approx(1.25 * len(mine))
        for facet in ("gender", "age_band", "language", "channel"):
            assert figures[facet] == dict(Counter(r[facet] or "unknown" for r in mine)), facet
        assert figures["classes"]["core"] == dict(Counter(core[r["clip_id"]] for r in mine))
    md = (folder / "datasheet.md").read_text()
    assert "6 clips, 7.5 s of audio, 4 speakers (0 clips without a speaker id)." in md
    assert "### Classes (majority label) per split, core ring" in md


def test_collection_agreement_and_limitations_are_computed(sheet_project, engineer):
    folder = versions.folder_of(built(sheet_project, engineer))
    sheet = read_json(folder, "datasheet.json")
    figures = read_json(folder, "agreement.json")

    collection = sheet["collection"]
    assert collection["annotators"] == 3
    assert collection["human_labels"] == 12
    assert collection["annotators_per_clip"] == 2
    assert collection["raters_per_clip"] == {
        "histogram": {"1": 1, "2": 4, "3": 1}, "mean": 2.0, "min": 1, "max": 3
    }  # fmt: skip
    assert collection["mode"] == "assisted"
    assert collection["labels_with_suggestion_shown"] == 6
    assert collection["gold"] == {"gold_rate": 0.05, "gold_clips": 0, "gold_answers": 0,
                                  "share_of_human_labels": 0.0}  # fmt: skip
    assert collection["label_sources"] == {"human": 12}
    for ring in ("core", "secondary", "tertiary"):
        assert sheet["agreement"][ring]["alpha"] == figures[ring]["alpha"]
        assert sheet["agreement"][ring]["alpha_per_class"] == figures[ring]["alpha_per_class"]
    alpha = figures["core"]["alpha"]
    assert alpha is not None
    assert alpha < 0.4
    limitations = sheet["limitations"]
    assert f"Alpha is {round(alpha, 3)} at the core ring (below 0.4)." in limitations
    assert "1 clips have a single human rater (no agreement information)." in limitations
    # Core votes in the dataset: mad 4, joyful 4, sad 2, scared 1, peaceful 1. Majorities:
    # clip 1 (mad/sad/joyful tie -> mad and joyful 4 each -> smaller key) joyful, clip 2 mad,
    # clip 3 (sad/joyful tie) joyful, clip 4 joyful, clip 5 (scared/mad tie) mad, clip 6
    # peaceful.
    assert ("At the core ring 3 classes have fewer than 20 clips: joyful (3), mad (2), "
            "peaceful (1).") in limitations  # fmt: skip
    test_speakers = sheet["composition"]["splits"]["test"]["speakers"]
    assert (f"The test split has {test_speakers} speakers (fewer than 10): its figures "
            "generalise poorly to new voices.") in limitations  # fmt: skip
    md = (folder / "datasheet.md").read_text()
    overlap = (
        "- Overlap: the project asks 2 annotators per clip; observed raters per clip: "
        "mean 2.0, min 1, max 3 (1 clips with 1, 4 clips with 2, 1 clips with 3)."
    )
    assert overlap in md


def test_plots_are_pngs_listed_in_the_manifest_and_shown_by_the_markdown(
    sheet_project, engineer, tmp_path
):
    version = built(sheet_project, engineer)
    folder = versions.folder_of(version)
    sheet = read_json(folder, "datasheet.json")

    expected = ["plots/agreement.png", "plots/class_balance_core.png", "plots/coverage.png"]
    assert sheet["plots"] == expected
    listed = (folder / MANIFEST).read_text()
    md = (folder / "datasheet.md").read_text()
    for name in expected:
        data = (folder / name).read_bytes()
        assert data.startswith(PNG), name
        assert b"Software" not in data, name
        assert b"matplotlib" not in data, name
        assert f"  {name}\n" in listed
        assert f"]({name})" in md

    build.rebuild_into(version, tmp_path / "again")
    for name in expected:
        assert (tmp_path / "again" / name).read_bytes() == (folder / name).read_bytes(), name


def test_the_plots_core_draws_the_same_bytes_twice(tmp_path):
    data = {
        "composition": {"splits": {
            "train": {"classes": {"core": {"mad": 3, "sad": 1}}, "speakers": 3, "duration_s": 4.0,
                      "gender": {"female": 2, "male": 2}, "age_band": {"unknown": 4},
                      "language": {"de-DE": 4}, "channel": {"phone": 4}},
            "test": {"classes": {"core": {"sad": 1}}, "speakers": 1, "duration_s": 1.0,
                     "gender": {"male": 1}, "age_band": {"unknown": 1},
                     "language": {"de-DE": 1}, "channel": {"phone": 1}},
        }},
        "agreement": {"core": {"alpha": 0.25, "alpha_per_class": {"mad": 0.5, "sad": None}}},
    }  # fmt: skip
    plots.write_all(tmp_path / "one", data)
    plots.write_all(tmp_path / "two", data)

    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == ["agreement.png", "class_balance_core.png", "coverage.png"]
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
