"""The dashboards at scale: GET the project overview (as an ML engineer) and the annotators
and agreement pages (as a reviewer) of a project with 100,000 clips, 300,000 human
annotations and 50 annotators.

The bench creates its own PostgreSQL database (default `emoloop_bench_console` on the server
of DATABASE_URL, else 127.0.0.1:5432 as user postgres), migrates it, fills it with COPY
(bench/export_data.py, the dataset bench's synthetic project: three labels per clip at every
ring of the Willcox wheel, skips, unsure labels, gold clips) and drops it at the end.

The quality pages read the project's quality snapshot (review.services.snapshots), the
overview reads its figures kept in the cache (console.overview): the bench computes both
once, as their Celery tasks do when the figures are stale, and reports how long that took
(`snapshot_s`, `overview_compute_s`). The very first overview load of a project (nothing
computed yet: the page computes and waits) is timed once, `overview_first_load_ms`. Then
each page is loaded through Django's test client (the whole request: middleware, session,
access check, freshness check, template), a few warm-up loads and `--loads` timed ones;
p50/p95/max per page. Also timed (not in the headline): one annotator's page and the review
queue.

    make bench-console     # or: python -m bench.console [--clips N] [--annotations N] [--loads N]

Writes bench/results/console.json. The last line printed is

    overview_p95_ms=... annotators_p95_ms=... agreement_p95_ms=... clips=100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script, bench/ comes first on the path

from bench.scratch_db import scratch_database  # noqa: E402

RESULTS = REPO / "bench" / "results"
SLUG = "bench-console"
TARGET_MS = 300
WARMUP = 3


def setup_django() -> None:
    # Run as a script, Python puts bench/ first on the import path: the repository's
    # packages come from its root.
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")
    os.environ.setdefault("EMOLOOP_DEV", "true")
    import django

    django.setup()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, linear interpolation (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def time_page(client: Any, url: str, loads: int) -> dict[str, Any]:
    for _ in range(WARMUP):
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"GET {url} answered {response.status_code}")
    timings = []
    for _ in range(loads):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"GET {url} answered {response.status_code}")
    return {
        "url": url,
        "loads": loads,
        "bytes": len(response.content),
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(percentile(timings, 95), 1),
        "max_ms": round(max(timings), 1),
    }


def measure(args: argparse.Namespace, scratch: Path, fresh: bool) -> dict[str, Any]:
    setup_django()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from bench import export_data
    from console import overview
    from labelling.models import Annotation, Membership, Project, Role
    from review.services import snapshots

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    project = Project.objects.filter(slug=SLUG).first()
    if project is None or fresh:
        project = export_data.populate(
            SLUG, args.clips, args.annotations, args.annotators, args.speakers, args.seed
        )
    populate_s = time.perf_counter() - started
    reviewer, _ = get_user_model().objects.get_or_create(username=f"{SLUG}-reviewer")
    Membership.objects.get_or_create(user=reviewer, project=project, role=Role.REVIEWER)
    engineer, _ = get_user_model().objects.get_or_create(username=f"{SLUG}-engineer")
    Membership.objects.get_or_create(user=engineer, project=project, role=Role.ML_ENGINEER)
    overview_url = f"/projects/{SLUG}/overview/"
    engineer_client = Client(HTTP_HOST="127.0.0.1")
    engineer_client.force_login(engineer)
    engineer_client.get("/healthz")  # the first request's imports do not count

    overview.forget(project)
    started = time.perf_counter()
    first = engineer_client.get(overview_url)
    overview_first_load_ms = (time.perf_counter() - started) * 1000
    if first.status_code != 200:
        raise SystemExit(f"GET {overview_url} answered {first.status_code}")
    overview.forget(project)
    started = time.perf_counter()
    overview.compute(project)
    overview_compute_s = time.perf_counter() - started
    print(f"overview computed in {overview_compute_s:.1f} s", file=sys.stderr)

    started = time.perf_counter()
    snapshot = snapshots.compute(project)
    snapshot_s = time.perf_counter() - started
    print(f"snapshot computed in {snapshot_s:.1f} s", file=sys.stderr)

    client = Client(HTTP_HOST="127.0.0.1")  # an ALLOWED_HOSTS name in every setting
    client.force_login(reviewer)
    annotator = snapshot.figures["annotators"][0]["id"]
    pages = {
        "annotators": f"/projects/{SLUG}/quality/",
        "agreement": f"/projects/{SLUG}/quality/agreement/",
        "annotator": f"/projects/{SLUG}/quality/annotators/{annotator}/",
        "review": f"/projects/{SLUG}/review/",
    }
    timed = {"overview": time_page(engineer_client, overview_url, args.loads)}
    print(f"overview: {timed['overview']}", file=sys.stderr)
    for name, url in pages.items():
        timed[name] = time_page(client, url, args.loads)
        print(f"{name}: {timed[name]}", file=sys.stderr)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "clips": project.clips.count(),
        "annotations": Annotation.objects.filter(clip__project=project).count(),
        "annotators": args.annotators,
        "populate_s": round(populate_s, 1),
        "snapshot_s": round(snapshot_s, 1),
        "snapshot_bytes": len(json.dumps(snapshot.figures)),
        "overview_compute_s": round(overview_compute_s, 2),
        "overview_first_load_ms": round(overview_first_load_ms, 1),
        "review_queue": project.review_items.count(),
        "pages": timed,
        "target_ms": TARGET_MS,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--annotations", type=int, default=300_000)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--speakers", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loads", type=int, default=20, help="Timed loads per page.")
    parser.add_argument("--database", default="emoloop_bench_console",
                        help="Created and dropped by the bench (its own; never an existing one "
                        "unless --reuse-db).")  # fmt: skip
    parser.add_argument("--reuse-db", action="store_true",
                        help="Keep the database afterwards and reuse a populated one.")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "console.json")
    args = parser.parse_args()

    prefix = "emoloop-bench-console-"
    with scratch_database(args.database, reuse_db=args.reuse_db, prefix=prefix) as (scratch, new):
        run = measure(args, scratch, fresh=new)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(run, indent=2) + "\n")
    pages = run["pages"]
    print(
        f"overview_p95_ms={pages['overview']['p95_ms']:.0f} "
        f"annotators_p95_ms={pages['annotators']['p95_ms']:.0f} "
        f"agreement_p95_ms={pages['agreement']['p95_ms']:.0f} clips={run['clips']}"
    )


if __name__ == "__main__":
    main()
