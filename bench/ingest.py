"""Ingestion throughput on EmoDB: seconds of audio ingested per wall-clock second.

Runs the real ingestion path (staging, streaming decode, validation, canonical 16 kHz copy,
peaks, loudness, database rows) on the database in DATABASE_URL (`make bench-ingest` uses
PostgreSQL), in a throw-away project whose rows and files are removed afterwards
(`storage.delete_project`). The corpus is EmoDB from ../shared/data/emodb when present, else
the 41-clip demo subset in demo/emodb (the result names the corpus it used).

    make bench-ingest            # or: python -m bench.ingest [--corpus DIR] [--repeats N]

Writes bench/results/ingest.json; the last printed line holds the headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import django
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
# Run as a script, Python puts bench/ first on the import path: the project's packages come
# from the repository's root.
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")
os.environ.setdefault("EMOLOOP_DEV", "true")
django.setup()

# Django's settings and models can be imported only once it is set up.
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from labelling.models import Clip, Project  # noqa: E402
from labelling.services import ingest, storage  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "emodb"
DEMO = REPO / "demo" / "emodb"
CORPUS = SHARED if (SHARED / "labels.csv").is_file() else DEMO


def run_once(corpus: Path, manifest: Path | None) -> dict:
    project = Project.objects.create(name="bench", slug=f"bench-ingest-{os.getpid()}")
    try:
        started = time.perf_counter()
        batch = ingest.stage_folder(project, corpus, manifest_path=manifest)
        ingest.mark_dispatched(batch.pk)  # processed here: the beat must not send it too
        staged = time.perf_counter()
        while ids := ingest.pending_item_ids(batch):
            for item_id in tqdm(ids, desc="ingest", unit="file", leave=False):
                ingest.process_item(item_id)
        finished = time.perf_counter()
        clips = Clip.objects.filter(project=project)
        seconds = sum(clips.values_list("duration_s", flat=True))
        return {
            "clips": clips.count(),
            "audio_s": round(seconds, 3),
            "wall_s": round(finished - started, 3),
            "stage_s": round(staged - started, 3),
            "process_s": round(finished - staged, 3),
        }
    finally:
        storage.delete_project(project)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS / "wav")
    parser.add_argument("--manifest", type=Path, default=CORPUS / "labels.csv")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"No corpus at {args.corpus}")
    manifest = args.manifest if args.manifest.is_file() else None

    media = Path(tempfile.mkdtemp(prefix="emoloop-bench-"))
    settings.MEDIA_ROOT = str(media)
    try:
        runs = [run_once(args.corpus, manifest) for _ in range(args.repeats)]
    finally:
        shutil.rmtree(media, ignore_errors=True)
    ratios = [run["audio_s"] / run["wall_s"] for run in runs]
    result = {
        "benchmark": "ingest",
        "corpus": str(args.corpus),
        "database": connection.vendor,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "runs": runs,
        "x_realtime_median": round(statistics.median(ratios), 1),
        "x_realtime_min": round(min(ratios), 1),
        "clips_per_s_median": round(statistics.median(r["clips"] / r["wall_s"] for r in runs), 1),
        "note": "One process, sequential; staging + decode + canonical copy + peaks + rows.",
    }
    out = REPO / "bench" / "results" / "ingest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"ingest_x_realtime={result['x_realtime_median']} clips={runs[0]['clips']}")


if __name__ == "__main__":
    main()
