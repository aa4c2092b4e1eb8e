"""Dataset versions built from a project labelled through the queue: the native layout,
SHA256SUMS, byte-identical rebuilds, splits stable across versions, a hand-checked majority,
and the Celery path with a real worker."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from exports.core.archive import MANIFEST, verify_sha256sums
from exports.core.splits import split_moves
from exports.models import DatasetVersion
from exports.services import build, versions
from exports.tasks import start_version
from labelling.models import Clip, Membership, Project, Role
from labelling.services import queue
from tests.conftest import make_user, wait_until
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db

# Per clip (by index): what anna, bert and carl say. Clip 0 is checked by hand below.
PLAN = [
    ("mad.angry", "mad.rage.furious", "sad"),
    ("joyful", "joyful.excited", "joyful"),
    ("sad.lonely", "sad", "scared"),
    ("powerful", "scared.anxious", "powerful.proud"),
    ("peaceful", "peaceful", "peaceful.content"),
]
GOLD = "joyful.cheerful"


def _label_everything(project: Project, users: list[User], plan: dict[int, tuple[str, ...]]):
    """Each annotator takes clips from the queue until it has none left, and says what the
    plan says for that clip (lease order does not matter)."""
    for index, user in enumerate(users):
        while (leased := queue.next_clip(project, user)) is not None:
            queue.submit(
                project,
                user,
                lease_id=leased.lease.pk,
                client_id=uuid.uuid4(),
                node_key=plan[leased.clip.pk][index],
            )


def _speakers_clips(project: Project, speakers: list[str]) -> list[Clip]:
    genders = ["female", "male"]
    return [
        ClipFactory(project=project, speaker_id=speaker, gender=genders[i % 2])
        for i, speaker in enumerate(speakers)
    ]


@pytest.fixture
def raters(project, annotator, second_annotator) -> list[User]:
    carl = make_user("carl")
    Membership.objects.create(user=carl, project=project, role=Role.ANNOTATOR)
    return [annotator, second_annotator, carl]


@pytest.fixture
def labelled(project, raters, engineer) -> list[Clip]:
    project.annotators_per_clip = 3
    project.save()
    clips = _speakers_clips(project, ["s1", "s1", "s2", "s3", "s4"])
    gold = _speakers_clips(project, ["s5"])[0]
    queue.enqueue_clips(project, [*clips, gold], seed=1)
    queue.mark_gold(gold, GOLD)
    plan = {clip.pk: labels for clip, labels in zip(clips, PLAN, strict=True)}
    plan[gold.pk] = ("joyful.cheerful", "joyful", "sad")
    project.gold_rate = 1.0  # each annotator's first clip is the gold one
    project.save()
    for index, user in enumerate(raters):
        leased = queue.next_clip(project, user)
        assert leased is not None
        assert leased.clip.pk == gold.pk
        queue.submit(project, user, lease_id=leased.lease.pk, client_id=uuid.uuid4(),
                     node_key=plan[gold.pk][index])  # fmt: skip
    project.gold_rate = 0.0
    project.save()
    _label_everything(project, raters, plan)
    return [*clips, gold]


def _build(project: Project, user: User, seed: int = 7) -> DatasetVersion:
    version = versions.create_version(project, user=user, seed=seed)
    built = build.run_build(version.pk)
    assert built is not None
    return built


def _rows(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / f"{name}.csv").open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_a_built_version_has_the_native_layout_and_a_manifest_that_verifies(
    project, labelled, engineer
):
    version = _build(project, engineer)

    folder = versions.folder_of(version)
    assert version.status == DatasetVersion.Status.READY
    assert folder.name == "callcentre-v1"
    for table in ("clips", "annotations", "labels_core", "labels_secondary",
                  "labels_tertiary", "gold"):  # fmt: skip
        assert (folder / f"{table}.csv").is_file()
        assert (folder / f"{table}.jsonl").is_file()
    for name in ("agreement.json", "splits.json", "version.json", "datasheet.json",
                 "datasheet.md", MANIFEST):  # fmt: skip
        assert (folder / name).is_file()
    assert verify_sha256sums(folder) == []
    assert sorted(p.name for p in (folder / "audio").iterdir()) == sorted(
        f"{clip.pk}.wav" for clip in labelled
    )
    clips = _rows(folder, "clips")
    assert [int(row["clip_id"]) for row in clips] == sorted(clip.pk for clip in labelled)
    assert {row["group"] for row in clips} == {f"speaker:s{n}" for n in range(1, 6)}
    assert len(_rows(folder, "annotations")) == 18  # 6 clips x 3 raters
    assert {row["annotator"] for row in _rows(folder, "annotations")} == {
        "r0001", "r0002", "r0003"
    }  # fmt: skip
    meta = json.loads((folder / "version.json").read_text())
    assert meta["number"] == 1
    assert meta["split"]["seed"] == 7
    assert meta["created_by"] == "emil"
    assert meta["created_at"] == version.created_at.isoformat().replace("+00:00", "Z")
    assert version.split_history == json.loads((folder / "splits.json").read_text())
    sheet = json.loads((folder / "datasheet.json").read_text())
    assert sheet["composition"]["clips"] == 6
    assert (sheet["collection"]["annotators"], sheet["collection"]["annotations"]) == (3, 18)
    assert sheet["collection"]["raters_per_clip"]["histogram"] == {"3": 6}
    assert sum(s["clips"] for s in sheet["composition"]["splits"].values()) == 6
    assert "# Datasheet: callcentre v1" in (folder / "datasheet.md").read_text()


def test_the_majority_at_each_ring_matches_the_hand_count(project, labelled, engineer):
    folder = versions.folder_of(_build(project, engineer))
    first = str(labelled[0].pk)

    # mad.angry, mad.rage.furious, sad: core mad 2 of 3; at the secondary ring angry and
    # rage have one vote each (sad has no secondary label): tie broken by dataset frequency
    # (1 each), then the smaller key.
    core = {row["clip_id"]: row for row in _rows(folder, "labels_core")}[first]
    assert (core["majority"], core["majority_votes"], core["raters"]) == ("mad", "2", "3")
    assert core["tied"] == "false"
    assert json.loads(core["soft"]) == {"mad": pytest.approx(2 / 3, abs=1e-6),
                                         "sad": pytest.approx(1 / 3, abs=1e-6)}  # fmt: skip
    secondary = {row["clip_id"]: row for row in _rows(folder, "labels_secondary")}[first]
    assert (secondary["majority"], secondary["tied"], secondary["raters"]) == (
        "mad.angry", "true", "2"
    )  # fmt: skip


def test_gold_rows_and_gold_accuracy(project, labelled, engineer):
    folder = versions.folder_of(_build(project, engineer))
    gold = _rows(folder, "gold")
    assert [(row["annotator"], row["label"], row["correct"]) for row in gold] == [
        ("r0001", "joyful.cheerful", "true"),
        ("r0002", "joyful", "true"),
        ("r0003", "sad", "false"),
    ]
    figures = json.loads((folder / "agreement.json").read_text())
    assert figures["core"]["gold_accuracy"]["r0003"]["accuracy"] == 0.0
    assert figures["core"]["gold_accuracy"]["r0001"]["accuracy"] == 1.0


def test_a_rebuild_into_another_folder_is_byte_identical(project, labelled, engineer, tmp_path):
    version = _build(project, engineer)

    digest = build.rebuild_into(version, tmp_path / "again")

    assert digest == version.manifest_sha256
    original = versions.folder_of(version)
    assert (tmp_path / "again" / MANIFEST).read_bytes() == (original / MANIFEST).read_bytes()


def test_a_ready_version_is_never_built_again(project, labelled, engineer):
    version = _build(project, engineer)
    assert build.run_build(version.pk) is None  # nothing to claim
    with pytest.raises(ValueError, match="immutable"):
        build.build(version)


def test_a_second_version_keeps_old_speakers_in_their_splits(project, labelled, raters, engineer):
    first = _build(project, engineer)
    more = _speakers_clips(project, ["s6", "s7", "s8", "s1"])
    queue.enqueue_clips(project, more, seed=2)
    _label_everything(project, raters, {clip.pk: ("sad", "sad", "mad") for clip in more})

    second = _build(project, engineer)

    assert second.number == 2
    assert split_moves(first.split_history, second.split_history) == {}
    assert set(first.split_history) < set(second.split_history)
    by_clip = {int(r["clip_id"]): r["split"] for r in _rows(versions.folder_of(second), "clips")}
    assert by_clip[more[3].pk] == first.split_history["speaker:s1"]


def test_a_failed_build_is_recorded_on_the_version(project, labelled, engineer):
    version = versions.create_version(project, user=engineer)
    labelled[0].canonical.storage.delete(labelled[0].canonical.name)

    with pytest.raises(FileNotFoundError):
        build.run_build(version.pk)

    version.refresh_from_db()
    assert version.status == DatasetVersion.Status.FAILED
    assert "FileNotFoundError" in version.error


@pytest.mark.celery
def test_the_worker_builds_a_version_sent_after_commit(worker, project, labelled, engineer):
    version = start_version(project, user=engineer, seed=3)

    def ready() -> bool:
        version.refresh_from_db()
        return version.status in (DatasetVersion.Status.READY, DatasetVersion.Status.FAILED)

    wait_until(ready, what="the dataset version to be built")
    assert version.status == DatasetVersion.Status.READY, version.error
    assert version.progress["stage"] == "ready"
    assert verify_sha256sums(versions.folder_of(version)) == []
