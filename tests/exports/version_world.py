"""Helpers for dataset-version tests that build constructed projects label by label
(annotations written directly, so every figure of the result is known in advance)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User

from exports.models import DatasetVersion
from exports.services import build, versions
from labelling.models import (
    Annotation,
    Clip,
    LabelSource,
    Membership,
    Project,
    Role,
    TaxonomyNode,
    TaxonomyVersion,
)
from tests.conftest import make_user
from tests.factories import ClipFactory


def member(project: Project, name: str, role: Role = Role.ANNOTATOR) -> User:
    user = make_user(name)
    Membership.objects.create(user=user, project=project, role=role)
    return user


def clip(project: Project, speaker: str, **facts: Any) -> Clip:
    return ClipFactory(project=project, speaker_id=speaker, **facts)


def label(
    clip: Clip,
    user: User,
    key: str,
    *,
    on: TaxonomyVersion | None = None,
    source: str = LabelSource.HUMAN,
    **more: Any,
) -> Annotation:
    """`user`'s current label `key` (a node of `on`, default the project's version)."""
    version_id = on.pk if on is not None else clip.project.taxonomy_version_id
    node = TaxonomyNode.objects.get(version_id=version_id, key=key)
    return Annotation.objects.create(
        clip=clip, annotator=user, node=node, label_source=source, **more
    )


def built(project: Project, user: User | None, seed: int = 7, **options: Any) -> DatasetVersion:
    version = versions.create_version(project, user=user, seed=seed, **options)
    done = build.run_build(version.pk)
    assert done is not None
    assert done.status == DatasetVersion.Status.READY, done.error
    return done


def rows(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / f"{name}.csv").open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def jsonl(folder: Path, name: str) -> list[dict[str, Any]]:
    lines = (folder / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def read_json(folder: Path, name: str) -> Any:
    return json.loads((folder / name).read_text(encoding="utf-8"))
