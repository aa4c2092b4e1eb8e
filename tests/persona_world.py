"""Audio whose feeling can be heard, for the persona browser tests (tests/browser/): tones
whose pitch and loudness follow the feeling, with a manifest naming speaker and gender, so a
real training on the worker finds something to learn in seconds."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import soundfile
from django.core.management import call_command

from labelling.models import Annotation, Clip, Project, TaxonomyNode

SPEAKERS = ["s1", "s2", "s3", "s4", "s5", "s6"]
PER_SPEAKER = 4  # two low, calm tones and two high, loud ones


def synthesise(folder: Path) -> tuple[list[Path], Path, dict[str, str]]:
    """Tones whose pitch and loudness follow the feeling, a manifest naming the speakers,
    and the feeling (core key) of each file."""
    rng = np.random.default_rng(7)
    files, feelings, rows = [], {}, []
    for s, speaker in enumerate(SPEAKERS):
        for k in range(PER_SPEAKER):
            high = k % 2 == 1
            freq = (520.0 if high else 140.0) + 15 * s + 3 * k
            t = np.arange(int(16000 * 0.8)) / 16000
            wave = (0.5 if high else 0.12) * np.sin(2 * np.pi * freq * t)
            wave += 0.01 * rng.standard_normal(t.size)
            name = f"{speaker}-{k}.wav"
            soundfile.write(folder / name, wave.astype(np.float32), 16000)
            files.append(folder / name)
            feelings[name] = "mad" if high else "sad"
            rows.append({"file": name, "speaker": speaker, "gender": "female" if s % 2 else "male"})
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "speaker", "gender"])
        writer.writeheader()
        writer.writerows(rows)
    return files, manifest, feelings


def label(
    project: Project, annotator, feelings: dict[str, str], skip: frozenset[int] = frozenset()
):
    """One annotation per clip (but those in `skip`) with its file's feeling, as an
    annotator would have given it (the labelling page has its own tests)."""
    nodes = {n.key: n for n in TaxonomyNode.objects.filter(version=project.taxonomy_version)}
    clips = list(Clip.objects.filter(project=project).order_by("original_name"))
    Annotation.objects.bulk_create(
        Annotation(clip=c, annotator=annotator, node=nodes[feelings[c.original_name]])
        for c in clips
        if c.pk not in skip
    )
    return clips


def ingest_labelled(project: Project, folder: Path, annotator) -> list[Clip]:
    """The synthesised audio imported in this process (the import service, as the
    `ingest` command runs it) and labelled by `annotator`."""
    audio = folder / "audio"
    audio.mkdir()
    _files, manifest, feelings = synthesise(audio)
    manifest = manifest.rename(folder / "manifest.csv")
    call_command(
        "ingest", project.slug, str(audio), manifest=str(manifest), in_process=True,
        verbosity=0, stdout=io.StringIO(),
    )  # fmt: skip
    return label(project, annotator, feelings)
