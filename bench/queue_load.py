"""Queue throughput and latency over real HTTP, the way the README deploys EmoLoop.

A project with 100,000 clips on PostgreSQL, served by gunicorn (gthread workers), driven by
a bounded asyncio load client with one user and token per virtual annotator:

(a) realistic: each annotator loops next -> 2 s of listening (+-20 %) -> submit, at 1, 10
    and 50 annotators, who arrive spread over the first 2 s;
(b) saturation: no think time, closed loop, at 10 and 50 annotators: labelled clips per second.

After every phase the bench checks in the database that no clip was handed out beyond its
overlap (labels + active leases <= target). Results: bench/results/queue.json.

    make bench-queue        # or: python -m bench.queue_load [--clips N] [--phase-seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
import uuid
from pathlib import Path

import django
from tqdm import tqdm

# Run as a script, Python puts bench/ first on the import path: the repository's packages
# (bench.*, labelling) come from its root.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")
os.environ.setdefault("EMOLOOP_DEV", "true")
django.setup()

# Django's models can be imported only once it is set up.
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from bench.loadclient import Connection, percentile  # noqa: E402
from bench.server import free_port, start_gunicorn  # noqa: E402
from labelling.models import (  # noqa: E402
    Annotation,
    Clip,
    ClipSource,
    Lease,
    Membership,
    Project,
    QueueEntry,
)
from labelling.services import taxonomy  # noqa: E402

SLUG = "bench-queue"
OVERLAP = 2
LABELS = ["mad", "scared", "joyful", "powerful", "peaceful", "sad", "mad.hurt", "sad.lonely"]


def prepare(clips: int, users: int) -> tuple[Project, list[str]]:
    """The bench project with `clips` clips and fresh queue state; one token per annotator."""
    version = taxonomy.install_preset("willcox")
    project, _ = Project.objects.get_or_create(
        slug=SLUG,
        defaults={
            "name": "Queue bench",
            "taxonomy_version": version,
            "annotators_per_clip": OVERLAP,
            "queue_policy": "random",
        },
    )
    Annotation.objects.filter(clip__project=project).delete()
    Lease.objects.filter(project=project).delete()
    have = Clip.objects.filter(project=project).count()
    rng = random.Random(0)
    with tqdm(total=clips, initial=min(have, clips), desc="clips", unit="clip") as bar:
        while have < clips:
            n = min(10_000, clips - have)
            rows = Clip.objects.bulk_create(
                Clip(
                    project=project,
                    original=f"bench/{have + i}.wav",
                    canonical=f"bench/{have + i}.wav",
                    original_name=f"{have + i}.wav",
                    original_format="WAV",
                    sha256=f"{have + i:064x}",
                    duration_s=3.0,
                    sample_rate=16000,
                    channels=1,
                    source=ClipSource.UPLOAD,
                    speaker_id=f"s{(have + i) % 500}",
                    rms_dbfs=-24.0,
                )
                for i in range(n)
            )
            QueueEntry.objects.bulk_create(
                QueueEntry(
                    project=project,
                    clip=clip,
                    priority=rng.random(),
                    stratum=clip.speaker_id,
                    target=OVERLAP,
                    open_slots=OVERLAP,
                )
                for clip in rows
            )
            have += n
            bar.update(n)
    QueueEntry.objects.filter(project=project).update(target=OVERLAP, open_slots=OVERLAP)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE labelling_queueentry; ANALYZE labelling_clip")
    tokens = []
    User = get_user_model()
    for i in range(users):
        user, _ = User.objects.get_or_create(username=f"bench-annotator-{i:03d}")
        Membership.objects.get_or_create(user=user, project=project, defaults={"role": "annotator"})
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
    return project, tokens


def overlap_violations(project: Project) -> int:
    """Clips with more current labels plus active leases than their overlap target."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM labelling_queueentry q
            WHERE q.project_id = %s AND q.target < (
                (SELECT count(*) FROM labelling_annotation a
                 WHERE a.clip_id = q.clip_id AND a.is_current AND a.node_id IS NOT NULL)
              + (SELECT count(*) FROM labelling_lease l
                 WHERE l.clip_id = q.clip_id AND l.status = 'active'
                   AND l.revises_id IS NULL AND NOT l.is_gold))
            """,
            [project.pk],
        )
        return cursor.fetchone()[0]


async def annotator(port: int, token: str, think_s: float, stop_at: float, stats: dict) -> None:
    conn = Connection("127.0.0.1", port, {"Authorization": f"Token {token}"})
    rng = random.Random(token)
    if think_s:
        # Real annotators do not all press a key in the same millisecond: each arrives at a
        # random moment within the first think time (a ramp-up, as load tools do).
        await asyncio.sleep(rng.uniform(0, think_s))
    try:
        while time.monotonic() < stop_at:
            reply = await conn.request("POST", f"/api/projects/{SLUG}/next/")
            stats["next"].append(reply.elapsed_ms)
            if reply.status == 204:
                stats["empty"] += 1
                return
            if reply.status != 200:
                stats["errors"].append(f"next {reply.status} {reply.body[:200]!r}")
                return
            lease = reply.json()["lease"]["id"]
            if think_s:
                await asyncio.sleep(think_s * rng.uniform(0.8, 1.2))
            body = {
                "lease": lease,
                "client_id": str(uuid.uuid4()),
                "node": rng.choice(LABELS),
                "time_spent_ms": int(think_s * 1000),
                "play_count": 1,
                "heard_to_end": True,
            }
            reply = await conn.request("POST", f"/api/projects/{SLUG}/annotations/", body)
            stats["submit"].append(reply.elapsed_ms)
            if reply.status != 201:
                stats["errors"].append(f"submit {reply.status} {reply.body[:200]!r}")
                continue
            stats["labels"] += 1
    finally:
        await conn.close()


async def phase(port: int, tokens: list[str], think_s: float, seconds: float) -> dict:
    stats: dict = {"next": [], "submit": [], "labels": 0, "empty": 0, "errors": []}
    started = time.monotonic()
    stop_at = started + seconds
    await asyncio.gather(*(annotator(port, t, think_s, stop_at, stats) for t in tokens))
    wall = time.monotonic() - started
    return {
        "annotators": len(tokens),
        "think_s": think_s,
        "seconds": round(wall, 2),
        "labels": stats["labels"],
        "labels_per_s": round(stats["labels"] / wall, 1),
        "requests": len(stats["next"]) + len(stats["submit"]),
        "next_ms": {f"p{q}": percentile(stats["next"], q) for q in (50, 95, 99)},
        "submit_ms": {f"p{q}": percentile(stats["submit"], q) for q in (50, 95, 99)},
        "errors": len(stats["errors"]),
        "error_samples": stats["errors"][:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--phase-seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit(
            "bench/queue_load.py measures PostgreSQL: set DATABASE_URL (make bench-queue)"
        )

    project, tokens = prepare(args.clips, 50)
    port = free_port()
    server = start_gunicorn(port, args.workers, args.threads, EMOLOOP_DEV="true")
    phases = []
    plan = [
        ("realistic", 1, 2.0),
        ("realistic", 10, 2.0),
        ("realistic", 50, 2.0),
        ("saturation", 10, 0.0),
        ("saturation", 50, 0.0),
    ]
    try:
        asyncio.run(phase(port, tokens[:5], 0.0, 3.0))  # warm-up: imports, connections
        for name, users, think in tqdm(plan, desc="phases"):
            result = asyncio.run(phase(port, tokens[:users], think, args.phase_seconds))
            result["model"] = name
            result["overlap_violations"] = overlap_violations(project)
            phases.append(result)
            tqdm.write(json.dumps(result))
    finally:
        server.terminate()
        server.wait(timeout=30)

    realistic50 = next(p for p in phases if p["model"] == "realistic" and p["annotators"] == 50)
    saturation = max(p["labels_per_s"] for p in phases if p["model"] == "saturation")
    result = {
        "benchmark": "queue",
        "clips": Clip.objects.filter(project=project).count(),
        "overlap": OVERLAP,
        "server": f"gunicorn gthread, {args.workers} workers x {args.threads} threads",
        "database": "postgresql",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "phases": phases,
        "overlap_violations_total": sum(p["overlap_violations"] for p in phases),
        "errors_total": sum(p["errors"] for p in phases),
        "note": "Load client, server and PostgreSQL share the same 2-core machine.",
    }
    out = REPO / "bench" / "results" / "queue.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"p95_next_ms={realistic50['next_ms']['p95']}"
        f" p95_submit_ms={realistic50['submit_ms']['p95']} annotators=50 think_s=2"
        f" saturation_labels_per_s={saturation} clips={result['clips']}"
        f" overlap_violations={result['overlap_violations_total']}"
    )


if __name__ == "__main__":
    main()
