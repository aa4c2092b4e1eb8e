"""A ready native version for the format tests, and helpers they share.

The project is the one of test_versions.py (five clips of four speakers and a gold clip, three
annotators labelling through the queue, the gold clip first), built by the real builder.
Building it takes seconds (aggregation, datasheet plots), and the converters only read its
folder: `shared_native` builds it once per test session, in a transaction that is rolled
back, and every format test reads a copy of that folder (`native_copy`). `native_version`
builds one inside a test's own database (for the CLI test).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import override_settings

from exports.core.archive import list_files
from exports.services import versions
from labelling.models import Membership, Project, Role
from labelling.services import queue, taxonomy
from tests.conftest import make_user
from tests.exports.test_versions import GOLD, PLAN, _build, _label_everything, _speakers_clips


def native_version(project: Project, annotators: list[User], engineer: User) -> Path:
    """Label the project (`label_project`) and return the folder of its first version."""
    label_project(project, annotators)
    return versions.folder_of(_build(project, engineer))


def label_project(project: Project, annotators: list[User]) -> None:
    """Label the project as test_versions' `labelled` fixture does, with a third annotator
    made here."""
    carl = make_user("carl")
    Membership.objects.create(user=carl, project=project, role=Role.ANNOTATOR)
    users = [*annotators, carl]
    project.annotators_per_clip = 3
    project.gold_rate = 1.0  # each annotator's first clip is the gold one
    project.save()
    clips = _speakers_clips(project, ["s1", "s1", "s2", "s3", "s4"])
    gold = _speakers_clips(project, ["s5"])[0]
    queue.enqueue_clips(project, [*clips, gold], seed=1)
    queue.mark_gold(gold, GOLD)
    plan = {clip.pk: labels for clip, labels in zip(clips, PLAN, strict=True)}
    plan[gold.pk] = ("joyful.cheerful", "joyful", "sad")
    for index, user in enumerate(users):
        leased = queue.next_clip(project, user)
        assert leased is not None
        assert leased.clip.pk == gold.pk
        queue.submit(project, user, lease_id=leased.lease.pk, client_id=uuid.uuid4(),
                     node_key=plan[gold.pk][index])  # fmt: skip
    project.gold_rate = 0.0
    project.save()
    _label_everything(project, users, plan)


_BUILT = pytest.StashKey[Path]()


def shared_native(request: pytest.FixtureRequest) -> Path:
    """The folder of the session's native version (built on first use; never modify it:
    tests that could should use `native_copy`)."""
    stash = request.config.stash
    if _BUILT in stash:
        return stash[_BUILT]
    # The test database exists only when a collected test is marked django_db: the format
    # tests are (the database is rolled back after the build, and again after the test).
    request.getfixturevalue("django_db_setup")
    blocker = request.getfixturevalue("django_db_blocker")
    scratch = request.getfixturevalue("tmp_path_factory").mktemp("shared-native")
    media = override_settings(MEDIA_ROOT=str(scratch / "media"))
    with blocker.unblock(), media, transaction.atomic():
        if True:
            willcox = taxonomy.install_preset("willcox")
            project = Project.objects.create(
                name="Call centre", slug="callcentre", taxonomy_version=willcox
            )
            users = [make_user(name) for name in ("anna", "bert", "emil")]
            for user, role in zip(users, (Role.ANNOTATOR, Role.ANNOTATOR, Role.ML_ENGINEER),
                                  strict=True):  # fmt: skip
                Membership.objects.create(user=user, project=project, role=role)
            built = native_version(project, users[:2], users[2])
            folder = Path(shutil.copytree(built, scratch / built.name))
            transaction.set_rollback(True)
    stash[_BUILT] = folder
    return folder


def native_copy(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of the session's native version in `tmp_path`, the test's own."""
    source = shared_native(request)
    return Path(shutil.copytree(source, tmp_path / source.name))


def jsonl(folder: Path, table: str) -> list[dict]:
    """A native table's rows, typed (from its JSON Lines twin)."""
    lines = (folder / f"{table}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def contents(folder: Path) -> dict[str, bytes]:
    """Every file's bytes under `folder`, by relative name (to compare two conversions)."""
    return {name: (folder / name).read_bytes() for name in list_files(folder)}
