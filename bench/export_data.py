"""Synthetic project data for bench/export.py, written with PostgreSQL COPY.

Shaped like a busy project: clips from a few hundred speakers (gender, age band, language and
channel per speaker; a small share without a speaker id, which the splitter groups one clip
each), three annotations per clip by distinct annotators out of ~50 whose activity and skill
differ, labels at all three rings of the Willcox wheel (most at the outer ring), a skewed class
balance, a little skipping, and a few gold clips. Everything is drawn from one seed, so two
runs populate the same rows.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from django.contrib.auth import get_user_model
from django.db import connection, models
from tqdm import tqdm

from labelling.models import Annotation, Clip, ClipSource, GoldClip, Membership, Project
from labelling.services import taxonomy

COPY_ROWS = 20_000
SKIP_SHARE = 0.02
GOLD_SHARE = 0.005
NO_SPEAKER_SHARE = 0.02
# Share of labels given at the core, secondary and tertiary ring.
DEPTHS = (0.10, 0.25, 0.65)
SKIPS = ("no_speech", "several_speakers", "noise", "other_language", "other")
AUDIO_NAME = "clips/canonical/bench-export.wav"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _text(value: Any) -> str:
    """A value in COPY's text format."""
    if value is None:
        return r"\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        value = json.dumps(value)
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def copy_rows(model: type[models.Model], rows: Iterable[dict[str, Any]], bar: tqdm) -> None:
    """COPY rows (attname -> value; missing fields take their default) into model's table."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    sql = f"COPY {model._meta.db_table} ({columns}) FROM STDIN"

    def flush(buffer: io.StringIO, n: int) -> None:
        buffer.seek(0)
        with connection.cursor() as cursor:
            cursor.copy_expert(sql, buffer)
        bar.update(n)

    buffer, n = io.StringIO(), 0
    for row in rows:
        values = (row[f.attname] if f.attname in row else f.get_default() for f in fields)
        buffer.write("\t".join(_text(v) for v in values) + "\n")
        n += 1
        if n == COPY_ROWS:
            flush(buffer, n)
            buffer, n = io.StringIO(), 0
    if n:
        flush(buffer, n)


def write_audio(media_root: Path) -> None:
    """The one tiny canonical WAV (10 ms of 16 kHz silence) every clip points at."""
    path = media_root / AUDIO_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros(160, dtype=np.int16), 16000, subtype="PCM_16")


def _weighted_distinct(rng: random.Random, weights: list[float], k: int) -> list[int]:
    chosen: list[int] = []
    while len(chosen) < k:
        (pick,) = rng.choices(range(len(weights)), weights=weights)
        if pick not in chosen:
            chosen.append(pick)
    return chosen


def populate(
    slug: str, clips: int, annotations: int, annotators: int, speakers: int, seed: int
) -> Project:
    """The bench project: `clips` clips and `annotations` current annotations (spread evenly,
    at most one per annotator and clip). Returns the project."""
    if annotations < clips:
        raise SystemExit("--annotations must be at least --clips (every clip is labelled)")
    per_clip = -(-annotations // clips)
    if per_clip > annotators:
        raise SystemExit(f"{per_clip} annotations per clip need as many annotators")
    rng = random.Random(seed)
    version = taxonomy.install_preset("willcox")
    project = Project.objects.create(
        name="Export bench", slug=slug, taxonomy_version=version, annotators_per_clip=per_clip
    )
    User = get_user_model()
    users = User.objects.bulk_create(
        User(username=f"{slug}-annotator-{i:03d}") for i in range(annotators)
    )
    Membership.objects.bulk_create(
        Membership(user=user, project=project, role="annotator") for user in users
    )
    nodes = dict(version.nodes.values_list("key", "pk"))
    leaves = sorted(key for key in nodes if key.count(".") == 2)
    # A skewed class balance: some feelings are far more common than others.
    leaf_weights = [1.0 / (1 + i % 12) for i in range(len(leaves))]
    activity = [rng.uniform(0.2, 1.0) for _ in range(annotators)]
    skill = [rng.uniform(0.45, 0.92) for _ in range(annotators)]
    speaker_meta = [
        (
            rng.choice(["female", "male", "female", "male", "other", ""]),
            rng.choice(["18-29", "30-44", "45-64", "65+", ""]),
            rng.choice(["de-DE", "en-GB", "en-US", "fr-FR"]),
            rng.choice(["phone", "studio", "headset"]),
        )
        for _ in range(speakers)
    ]

    truth: list[str] = []

    def clip_rows() -> Iterator[dict[str, Any]]:
        for i in range(clips):
            speaker = rng.randrange(speakers)
            gender, age, language, channel = speaker_meta[speaker]
            truth.append(rng.choices(leaves, weights=leaf_weights)[0])
            yield {
                "project_id": project.pk, "original": AUDIO_NAME, "original_name": f"{i}.wav",
                "original_format": "WAV", "canonical": AUDIO_NAME, "sha256": f"{i:064x}",
                "duration_s": round(rng.uniform(1.0, 8.0), 3), "sample_rate": 16000,
                "channels": 1, "peaks": [], "rms_dbfs": -24.0, "source": ClipSource.UPLOAD,
                "speaker_id": "" if rng.random() < NO_SPEAKER_SHARE else f"spk{speaker:04d}",
                "gender": gender, "age_band": age, "language": language, "dialect": "",
                "channel": channel, "transcript": "", "metadata": {},
                "created_at": EPOCH + timedelta(seconds=i),
            }  # fmt: skip

    with tqdm(total=clips, desc="populate clips", unit="clip") as bar:
        copy_rows(Clip, clip_rows(), bar)
    clip_ids = list(
        Clip.objects.filter(project=project).order_by("pk").values_list("pk", flat=True)
    )

    def label_for(true: str, rater: int) -> str:
        if rng.random() < skill[rater]:
            key = true
        elif rng.random() < 0.6:  # confused within the same core feeling
            core = true.split(".")[0]
            key = rng.choice([leaf for leaf in leaves if leaf.startswith(core + ".")])
        else:
            key = rng.choice(leaves)
        depth = rng.choices(range(3), weights=DEPTHS)[0]
        return ".".join(key.split(".")[: depth + 1])

    def annotation_rows() -> Iterator[dict[str, Any]]:
        made = 0
        for index, clip_id in enumerate(clip_ids):
            n = min(per_clip, annotations - made - (len(clip_ids) - index - 1))
            for slot, rater in enumerate(_weighted_distinct(rng, activity, n)):
                skip = slot > 0 and rng.random() < SKIP_SHARE  # every clip keeps one label
                dimensional = rng.random() < 0.5
                made += 1
                yield {
                    "clip_id": clip_id, "annotator_id": users[rater].pk,
                    "node_id": None if skip else nodes[label_for(truth[index], rater)],
                    "intensity": "" if skip else rng.choice(["", "low", "medium", "high"]),
                    "unsure": rng.random() < 0.1, "skip_reason": rng.choice(SKIPS) if skip else "",
                    "time_spent_ms": rng.randint(1500, 12000),
                    "suggestion_shown": rng.random() < 0.3, "play_count": rng.randint(1, 3),
                    "heard_to_end": rng.random() < 0.9,
                    "valence": round(rng.uniform(-1, 1), 2) if dimensional else None,
                    "arousal": round(rng.uniform(-1, 1), 2) if dimensional else None,
                    "client_id": None, "lease_id": None, "is_current": True,
                    "created_at": EPOCH + timedelta(days=30, seconds=3 * index + slot),
                }  # fmt: skip

    with tqdm(total=annotations, desc="populate annotations", unit="row") as bar:
        copy_rows(Annotation, annotation_rows(), bar)
    gold = rng.sample(range(len(clip_ids)), max(1, int(len(clip_ids) * GOLD_SHARE)))
    GoldClip.objects.bulk_create(
        GoldClip(clip_id=clip_ids[i], node_id=nodes[truth[i]]) for i in sorted(gold)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE labelling_clip; ANALYZE labelling_annotation")
    return project
