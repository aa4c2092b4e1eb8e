"""Learner fixtures: EmoDB clips ingested into the Willcox project, labelled, with features.

Expensive things are computed once per session (the list of EmoDB rows, the acoustic
vectors of every file) and reused; database rows are per test as usual.

`emodb` is either the whole corpus (535 clips, up to 30+ per speaker and emotion) or the
demo subset in the repository (41 clips: one per emotion for speakers 03 08 09 10 11 13, no
disgust for 08). A subset asked for as `kit.clips(project, speakers, per_emotion=n)` is
therefore smaller on the demo: tests take their counts from the clips they got, never from
the corpus, and name speakers and files present in both (`SPEAKERS` below).
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.core.management import call_command

from labelling.models import Annotation, Clip, Project
from learner.features import acoustic
from learner.models import ClipFeatures, LearnerSettings

# EmoDB's seven emotions on the Willcox wheel, at mixed depths on purpose: fear is labelled
# at the core ring only, the others at the secondary ring (the model's two heads).
EMOTION_NODES = {
    "anger": "mad.angry",
    "disgust": "mad.critical",
    "fear": "scared",
    "happiness": "joyful.excited",
    "boredom": "sad.bored",
    "sadness": "sad.depressed",
    "neutral": "peaceful.content",
}


@pytest.fixture(scope="session")
def emodb_rows(emodb: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((emodb / "labels.csv").open()))


def subset(
    rows: list[dict[str, str]], speakers: Iterable[str] | None = None, per_emotion: int = 99
) -> list[dict[str, str]]:
    """Rows of the given speakers, at most `per_emotion` per speaker and emotion."""
    wanted = set(speakers) if speakers is not None else None
    counts: dict[tuple[str, str], int] = {}
    out = []
    for row in rows:
        if wanted is not None and row["speaker"] not in wanted:
            continue
        key = (row["speaker"], row["emotion"])
        if counts.get(key, 0) < per_emotion:
            counts[key] = counts.get(key, 0) + 1
            out.append(row)
    return out


@pytest.fixture(scope="session")
def emodb_folder(emodb: Path, tmp_path_factory) -> Callable[[list[dict[str, str]]], Path]:
    """A folder holding the given EmoDB rows (wav/ and labels.csv), made once per subset."""
    made: dict[tuple[str, ...], Path] = {}

    def make(rows: list[dict[str, str]]) -> Path:
        key = tuple(r["file"] for r in rows)
        if key not in made:
            folder = tmp_path_factory.mktemp("emodb-subset")
            (folder / "wav").mkdir()
            for row in rows:
                shutil.copyfile(emodb / "wav" / row["file"], folder / "wav" / row["file"])
            with (folder / "labels.csv").open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
            made[key] = folder
        return made[key]

    return make


class _Vectors(dict):
    """Acoustic vectors of EmoDB files by name, computed on first use and kept."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def __missing__(self, name: str) -> np.ndarray:
        wave, rate = soundfile.read(str(self.folder / "wav" / name), dtype="float32")
        self[name] = vector = acoustic.extract(wave, rate)
        return vector


@pytest.fixture(scope="session")
def emodb_vectors(emodb: Path) -> dict[str, np.ndarray]:
    return _Vectors(emodb)


class Kit:
    """The helpers below, as one fixture (test modules cannot import this conftest)."""

    def __init__(self, rows, folder, vectors) -> None:
        self.rows = rows
        self.folder = folder
        self.vectors = vectors

    def clips(self, project: Project, speakers=None, per_emotion: int = 99) -> list[Clip]:
        """Ingest a subset of EmoDB into the project (through the ingest command)."""
        return ingest(project, self.folder(subset(self.rows, speakers, per_emotion)))

    def label(self, clips, annotator, nodes=None) -> int:
        return label(clips, annotator, nodes)

    def cache(self, clips) -> None:
        cache_vectors(clips, self.vectors)

    def fast(self, project: Project, **changes) -> LearnerSettings:
        return fast_settings(project, **changes)


@pytest.fixture
def kit(emodb_rows, emodb_folder, emodb_vectors) -> Kit:
    return Kit(emodb_rows, emodb_folder, emodb_vectors)


def ingest(project: Project, folder: Path) -> list[Clip]:
    call_command(
        "ingest",
        project.slug,
        str(folder / "wav"),
        manifest=str(folder / "labels.csv"),
        in_process=True,
        source="corpus",
        verbosity=0,
        stdout=io.StringIO(),
    )
    return list(Clip.objects.filter(project=project).order_by("pk"))


def label(clips: Iterable[Clip], annotator, nodes: dict[str, str] | None = None) -> int:
    """One current annotation per clip from its EmoDB emotion (as an annotator would)."""
    mapping = nodes or EMOTION_NODES
    rows = []
    for clip in clips:
        version = clip.project.taxonomy_version
        node = version.nodes.get(key=mapping[clip.metadata["emotion"]])
        rows.append(Annotation(clip=clip, annotator=annotator, node=node))
    Annotation.objects.bulk_create(rows)
    return len(rows)


def cache_vectors(clips: Iterable[Clip], vectors: dict[str, np.ndarray]) -> None:
    """Store precomputed acoustic vectors, as the feature task would have."""
    ClipFeatures.objects.bulk_create(
        [
            ClipFeatures(
                clip=clip,
                extractor=acoustic.NAME,
                version=acoustic.VERSION,
                dim=acoustic.DIM,
                vector=np.asarray(vectors[clip.original_name], dtype="<f4").tobytes(),
            )
            for clip in clips
        ]
    )


def fast_settings(project: Project, **changes) -> LearnerSettings:
    """Settings for quick test trainings: few epochs, no augmentation (unless changed)."""
    values = {"epochs": 20, "augmentation": False, "min_labelled_clips": 10, **changes}
    row, _ = LearnerSettings.objects.update_or_create(project=project, defaults=values)
    return row


# Six speakers present in the whole corpus and in the demo subset (3 male, 3 female).
SPEAKERS = ["03", "08", "09", "10", "11", "13"]


@pytest.fixture
def labelled_project(project, annotator, kit) -> Project:
    """The Willcox project with 6 speakers x up to 3 clips per emotion of EmoDB (about 125
    clips; all 41 on the demo subset), each labelled once, features cached, quick training
    settings."""
    clips = kit.clips(project, SPEAKERS, per_emotion=3)
    kit.label(clips, annotator)
    kit.cache(clips)
    kit.fast(project)
    return project
