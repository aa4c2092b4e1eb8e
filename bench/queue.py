"""The annotator's hot path at 1,000,000 clips: the two-request flow (next, then submit) and
the one-request flow (submit with `next: true`), over real HTTP.

PostgreSQL (a database of the bench's own, `emoloop_bench_queue_<version>_<clips>`, seeded
once server-side with INSERT … SELECT from generate_series and reused while its seed marker
matches), gunicorn as deployed (gthread workers, persistent database connections,
`--no-control-socket`, a free port), driven by requests sessions in threads (one per virtual
annotator, each with its own user and token; bench/loadclient.py):

(a) realistic: 50 annotators, 2 s of listening (±20 %) per clip, arriving over the first
    2 s: p50/p95/p99 latency of next, submit and submit+next;
(b) saturation: no think time, closed loop: labelled clips per second, for both flows.

After every phase the bench counts, in the database, clips handed out beyond their overlap
(labels + active leases > target) and clips whose open slots disagree with their labels
and leases. CPU seconds (client, gunicorn, PostgreSQL backends, whole machine) and
/proc/loadavg are recorded beside every wall time: the machine is shared.

    make bench-queue                 # or: python -m bench.queue [--clips N] [--seconds S]
    python -m bench.queue --profile  # also a pyinstrument profile of 300 submit+next calls

Results: bench/results/queue.json (and queue-profile.txt). The last line is the summary.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on the import path, where this file would shadow
# the standard library's `queue` (which concurrent.futures, and so Django, import): the
# repository's root takes bench/'s place.
REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")
os.environ.setdefault("EMOLOOP_DEV", "true")

from bench.scratch_db import admin, database_urls, scratch_database  # noqa: E402

SEED_VERSION = 1  # bump when the seeded rows change shape
SLUG = "bench-queue"
OVERLAP = 2
LABELS = ["mad", "scared", "joyful", "powerful", "peaceful", "sad", "mad.hurt", "sad.lonely"]
RESULTS = REPO / "bench" / "results"


# --- Database: seeded once, reused -----------------------------------------------------------


def _seed_marker(url: str) -> tuple[int, int] | None:
    import psycopg2

    try:
        conn = psycopg2.connect(url)
    except psycopg2.OperationalError:
        return None  # no such database yet
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT to_regclass('bench_queue_seed')")
            if cursor.fetchone()[0] is None:
                return None
            cursor.execute("SELECT version, clips FROM bench_queue_seed")
            row = cursor.fetchone()
            return (row[0], row[1]) if row else None
    finally:
        conn.close()


def seed(clips: int) -> tuple[object, float]:
    """The bench project with `clips` clips queued at overlap 2 (seeded server-side when the
    database is new); returns (project, seconds spent seeding)."""
    from django.db import connection

    from labelling.models import ClipSource, Project
    from labelling.services import taxonomy

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
    if _seed_marker_here() == (SEED_VERSION, clips):
        return project, 0.0
    started = time.monotonic()
    print(f"seeding {clips:,} clips (once; the database is kept for later runs)", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0)")
        cursor.execute(
            """
            INSERT INTO labelling_clip (project_id, original, original_name, original_format,
                canonical, sha256, duration_s, sample_rate, channels, peaks, rms_dbfs, source,
                speaker_id, gender, age_band, language, dialect, channel, transcript, metadata,
                created_at)
            SELECT %s, 'bench/' || g || '.wav', g || '.wav', 'WAV', 'bench/' || g || '.wav',
                lpad(to_hex(g), 64, '0'), 3.0, 16000, 1, '[]', -24.0, %s, 's' || (g %% 500),
                '', '', '', '', '', '', '{}', now()
            FROM generate_series(0, %s - 1) AS g
            """,
            [project.pk, ClipSource.UPLOAD.value, clips],
        )
        cursor.execute(
            """
            INSERT INTO labelling_queueentry (project_id, clip_id, priority, stratum, target,
                open_slots, is_gold, reason, updated_at)
            SELECT project_id, id, random(), speaker_id, %s, %s, false, '{}', now()
            FROM labelling_clip WHERE project_id = %s
            """,
            [OVERLAP, OVERLAP, project.pk],
        )
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_queue_seed (version int, clips int)")
        cursor.execute("DELETE FROM bench_queue_seed")
        cursor.execute("INSERT INTO bench_queue_seed VALUES (%s, %s)", [SEED_VERSION, clips])
        cursor.execute("VACUUM ANALYZE labelling_clip")
        cursor.execute("VACUUM ANALYZE labelling_queueentry")
    return project, time.monotonic() - started


def _seed_marker_here() -> tuple[int, int] | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('bench_queue_seed')")
        if cursor.fetchone()[0] is None:
            return None
        cursor.execute("SELECT version, clips FROM bench_queue_seed")
        row = cursor.fetchone()
        return (row[0], row[1]) if row else None


def reset_and_users(project: object, users: int) -> list[str]:
    """Fresh queue state (the bench users' labels and every lease gone, slots full again)
    and one user and token per virtual annotator."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from labelling.models import Annotation, Lease, Membership

    User = get_user_model()
    tokens = []
    people = []
    for i in range(users):
        user, _ = User.objects.get_or_create(username=f"bench-annotator-{i:03d}")
        Membership.objects.get_or_create(user=user, project=project, defaults={"role": "annotator"})
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
        people.append(user)
    Annotation.objects.filter(annotator__in=people).delete()
    Lease.objects.filter(project=project).delete()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE labelling_queueentry SET open_slots = target"
            " WHERE project_id = %s AND open_slots <> target",
            [project.pk],
        )
        cursor.execute("VACUUM ANALYZE labelling_queueentry")
        cursor.execute("VACUUM ANALYZE labelling_lease")
        cursor.execute("VACUUM ANALYZE labelling_annotation")
    return tokens


def integrity(project: object) -> dict:
    """Over every clip that was ever leased: clips beyond their overlap (current labels +
    active leases > target) and clips whose open slots disagree with those facts."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH touched AS (
                SELECT DISTINCT clip_id FROM labelling_lease WHERE project_id = %s
            ), facts AS (
                SELECT q.target, q.open_slots,
                    (SELECT count(*) FROM labelling_annotation a
                     WHERE a.clip_id = q.clip_id AND a.is_current AND a.node_id IS NOT NULL)
                  + (SELECT count(*) FROM labelling_lease l
                     WHERE l.clip_id = q.clip_id AND l.status = 'active'
                       AND l.revises_id IS NULL AND NOT l.is_gold) AS held
                FROM touched t JOIN labelling_queueentry q ON q.clip_id = t.clip_id
            )
            SELECT count(*) FILTER (WHERE held > target),
                   count(*) FILTER (WHERE open_slots <> target - held),
                   count(*)
            FROM facts
            """,
            [project.pk],
        )
        beyond, mismatched, touched = cursor.fetchone()
    return {"overlap_violations": beyond, "slot_mismatches": mismatched, "clips_touched": touched}


# --- CPU accounting --------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _pg_backends(dbname: str) -> list[int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [dbname],
        )
        return [row[0] for row in cursor.fetchall()]


def _machine_busy() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / _TICK


class CpuMeter:
    """CPU seconds spent between start() and stop() by this process (the load client), the
    gunicorn processes, the bench database's PostgreSQL backends and the whole machine."""

    def __init__(self, server_pid: int, dbname: str) -> None:
        self.server_pid, self.dbname = server_pid, dbname

    def _sample(self) -> dict:
        server = [self.server_pid, *_children(self.server_pid)]
        return {
            "client": resource.getrusage(resource.RUSAGE_SELF),
            "server": {pid: _proc_cpu(pid) for pid in server},
            "db": {pid: _proc_cpu(pid) for pid in _pg_backends(self.dbname)},
            "machine": _machine_busy(),
            "load": Path("/proc/loadavg").read_text().split()[:3],
        }

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict:
        after, before = self._sample(), self.before

        def grown(key: str) -> float:
            return sum(v - before[key].get(pid, 0.0) for pid, v in after[key].items())

        client = (after["client"].ru_utime + after["client"].ru_stime) - (
            before["client"].ru_utime + before["client"].ru_stime
        )
        return {
            "client_cpu_s": round(client, 2),
            "gunicorn_cpu_s": round(grown("server"), 2),
            "postgres_cpu_s": round(grown("db"), 2),
            "machine_cpu_s": round(after["machine"] - before["machine"], 2),
            "loadavg_before": " ".join(before["load"]),
            "loadavg_after": " ".join(after["load"]),
        }


# --- The load: requests sessions in threads ---------------------------------------------------


def _label(rng: random.Random, lease: str, think_s: float, next_too: bool) -> dict:
    body = {
        "lease": lease,
        "client_id": str(uuid.uuid4()),
        "node": rng.choice(LABELS),
        "time_spent_ms": int(think_s * 1000),
        "play_count": 1,
        "heard_to_end": True,
    }
    if next_too:
        body["next"] = True
    return body


def annotator(base: str, token: str, flow: str, think_s: float, stop_at: float, stats: dict):
    """One virtual annotator: `two` = next, listen, submit; `one` = next once, then listen,
    submit with next: true, repeat."""
    from bench.loadclient import SessionClient

    try:
        _annotate(SessionClient(base, token), token, flow, think_s, stop_at, stats)
    except Exception as exc:  # a timeout or a refused connection: counted, not fatal
        with stats["lock"]:
            stats["errors"].append(f"{type(exc).__name__}: {exc}"[:200])


def _annotate(client, token: str, flow: str, think_s: float, stop_at: float, stats: dict):
    rng = random.Random(token)
    path_next, path_submit = f"/api/projects/{SLUG}/next/", f"/api/projects/{SLUG}/annotations/"
    record = stats["lock"]
    if think_s:
        time.sleep(rng.uniform(0, think_s))  # arrivals spread over the first think time
    ticket = None
    try:
        while time.monotonic() < stop_at:
            if ticket is None:
                reply = client.post(path_next)
                with record:
                    stats["next"].append(reply.elapsed_ms)
                if reply.status == 204:
                    with record:
                        stats["empty"] += 1
                    return
                if reply.status != 200:
                    with record:
                        stats["errors"].append(f"next {reply.status} {reply.body[:200]!r}")
                    return
                ticket = reply.json()
            if think_s:
                time.sleep(think_s * rng.uniform(0.8, 1.2))
            one = flow == "one"
            reply = client.post(path_submit, _label(rng, ticket["lease"]["id"], think_s, one))
            with record:
                stats["submit_next" if one else "submit"].append(reply.elapsed_ms)
                if reply.status == 201:
                    stats["labels"] += 1
                else:
                    stats["errors"].append(f"submit {reply.status} {reply.body[:200]!r}")
            ticket = reply.json().get("next") if one and reply.status == 201 else None
            if one and reply.status == 201 and ticket is None:
                with record:
                    stats["empty"] += 1
                return
    finally:
        client.close()


def phase(base: str, tokens: list[str], flow: str, think_s: float, seconds: float) -> dict:
    from bench.loadclient import percentile

    stats: dict = {
        "next": [], "submit": [], "submit_next": [], "labels": 0, "empty": 0, "errors": [],
        "lock": threading.Lock(),
    }  # fmt: skip
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=annotator, args=(base, t, flow, think_s, started + seconds, stats), daemon=True
        )
        for t in tokens
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    return {
        "flow": "one request per label" if flow == "one" else "two requests per label",
        "annotators": len(tokens),
        "think_s": think_s,
        "seconds": round(wall, 2),
        "labels": stats["labels"],
        "labels_per_s": round(stats["labels"] / wall, 1),
        "requests": sum(len(stats[k]) for k in ("next", "submit", "submit_next")),
        **{
            f"{key}_ms": {f"p{q}": percentile(stats[key], q) for q in (50, 95, 99)}
            for key in ("next", "submit", "submit_next")
            if stats[key]
        },
        "ran_out": stats["empty"],
        "errors": len(stats["errors"]),
        "error_samples": stats["errors"][:5],
    }


# --- Profile ---------------------------------------------------------------------------------


def _in_process_labels(client, flow: str, labels: int) -> None:
    rng = random.Random(flow)
    path_next, path_submit = f"/api/projects/{SLUG}/next/", f"/api/projects/{SLUG}/annotations/"
    ticket = client.post(path_next).json()
    for _ in range(labels):
        body = _label(rng, ticket["lease"]["id"], 0.0, flow == "one")
        reply = client.post(path_submit, body, content_type="application/json")
        assert reply.status_code == 201, reply.content
        ticket = reply.json()["next"] if flow == "one" else client.post(path_next).json()


def cpu_per_label(tokens: list[str], labels: int) -> dict:
    """CPU milliseconds per label through Django's whole request stack (middleware, DRF, the
    queue) in this process, one request at a time, for both flows: this process's CPU plus
    its PostgreSQL backend's. CPU time, unlike wall time, is barely distorted by other users
    of the machine."""
    from django.db import connection
    from django.test import Client

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    found = {}
    for flow, token in (("two", tokens[0]), ("one", tokens[1])):
        client = Client(HTTP_AUTHORIZATION=f"Token {token}", SERVER_NAME="127.0.0.1")
        _in_process_labels(client, flow, 20)  # warm: imports, caches
        django0, pg0, wall0 = time.process_time(), _proc_cpu(backend), time.perf_counter()
        _in_process_labels(client, flow, labels)
        django_ms = (time.process_time() - django0) * 1000 / labels
        pg_ms = (_proc_cpu(backend) - pg0) * 1000 / labels
        found["one_request" if flow == "one" else "two_requests"] = {
            "labels": labels,
            "django_cpu_ms_per_label": round(django_ms, 2),
            "postgres_cpu_ms_per_label": round(pg_ms, 2),
            "wall_ms_per_label": round((time.perf_counter() - wall0) * 1000 / labels, 2),
        }
    found["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    return found


def profile(token: str, calls: int) -> str:
    """A pyinstrument profile of `calls` submit+next round trips in this process."""
    from django.test import Client
    from pyinstrument import Profiler

    client = Client(HTTP_AUTHORIZATION=f"Token {token}", SERVER_NAME="127.0.0.1")
    _in_process_labels(client, "one", 10)
    profiler = Profiler(interval=0.0005)
    with profiler:
        _in_process_labels(client, "one", calls)
    return profiler.output_text(unicode=True, color=False, show_all=False)


# --- Main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="per phase")
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--think", type=float, default=2.0)
    parser.add_argument(
        "--saturation-annotators", type=int, nargs="+", default=[10, 50], help="closed loops"
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="also profile submit+next")
    parser.add_argument(
        "--cpu-labels", type=int, default=300, help="labels per flow for CPU per label"
    )
    parser.add_argument("--drop-db", action="store_true", help="drop the database at the end")
    args = parser.parse_args()

    name = f"emoloop_bench_queue_v{SEED_VERSION}_{args.clips}"
    url, maintenance = database_urls(name)
    marker = _seed_marker(url)
    if marker is not None and marker != (SEED_VERSION, args.clips):
        admin(maintenance, f'DROP DATABASE IF EXISTS "{name}"')
    with scratch_database(name, reuse_db=True, prefix="emoloop-bench-queue-") as (_, created):
        # The in-process figures run with the deployment's persistent connections too (the
        # test client does not close them; prepared statements need them: emoloop.rows).
        os.environ["DATABASE_CONN_MAX_AGE"] = "60"
        import django

        django.setup()
        from django.core.management import call_command

        from bench.server import free_port, start_gunicorn

        started = time.monotonic()
        call_command("migrate", "--no-input", verbosity=0)
        migrate_s = time.monotonic() - started
        project, seed_s = seed(args.clips)
        users = max(args.annotators, *args.saturation_annotators)
        tokens = reset_and_users(project, users)
        in_process = cpu_per_label(tokens[-2:], args.cpu_labels)
        print(json.dumps({"in_process": in_process}), flush=True)
        profile_text = profile(tokens[-3], 300) if args.profile else None
        tokens = reset_and_users(project, users)

        port = free_port()
        # The deployment's settings: persistent database connections (the scratch database
        # helper turns them off for its own process), DEBUG off.
        server = start_gunicorn(
            port, args.workers, args.threads, preload=True,
            DATABASE_CONN_MAX_AGE="60", EMOLOOP_DEV="true",
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        meter = CpuMeter(server.pid, name)
        plan = [("realistic", "two", args.annotators, args.think)]
        plan += [("realistic", "one", args.annotators, args.think)]
        for n in args.saturation_annotators:
            plan += [("saturation", "two", n, 0.0), ("saturation", "one", n, 0.0)]
        phases = []
        try:
            # Warm-up: every worker's imports and database connections.
            phase(base, tokens[: args.workers * args.threads], "one", 0.0, 8.0)
            for model, flow, n, think in plan:
                meter.start()
                result = phase(base, tokens[:n], flow, think, args.seconds)
                result = {"model": model, **result, **meter.stop(), **integrity(project)}
                phases.append(result)
                print(json.dumps(result), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
        from labelling.models import Clip

        clips = Clip.objects.filter(project=project).count()
    if args.drop_db:
        admin(maintenance, f'DROP DATABASE IF EXISTS "{name}"')

    def pick(model: str, flow: str) -> list[dict]:
        return [p for p in phases if p["model"] == model and p["flow"].startswith(flow)]

    two, one = pick("realistic", "two")[0], pick("realistic", "one")[0]
    saturation_one = max(p["labels_per_s"] for p in pick("saturation", "one"))
    saturation_two = max(p["labels_per_s"] for p in pick("saturation", "two"))
    violations = sum(p["overlap_violations"] for p in phases)
    result = {
        "benchmark": "queue (two-request and one-request flows)",
        "clips": clips,
        "overlap": OVERLAP,
        "database": f"postgresql ({name}, {'seeded now' if created or seed_s else 'reused'})",
        "seed_s": round(seed_s, 1),
        "migrate_s": round(migrate_s, 1),
        "server": f"gunicorn gthread, {args.workers} workers x {args.threads} threads",
        "client": "requests sessions in threads, one per annotator (bench/loadclient.py)",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "in_process_cpu_per_label": in_process,
        "phases": phases,
        "saturation_labels_per_s": {"one_request": saturation_one, "two_requests": saturation_two},
        "overlap_violations_total": violations,
        "slot_mismatches_total": sum(p["slot_mismatches"] for p in phases),
        "errors_total": sum(p["errors"] for p in phases),
        "note": "Load client, gunicorn and PostgreSQL share one 2-core machine with other "
        "users; see each phase's CPU seconds and load average.",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "queue.json").write_text(json.dumps(result, indent=2) + "\n")
    if profile_text:
        (RESULTS / "queue-profile.txt").write_text(profile_text)
    print(
        f"p95_next_ms={two['next_ms']['p95']} p95_submit_ms={two['submit_ms']['p95']}"
        f" p95_submit_next_ms={one['submit_next_ms']['p95']}"
        f" annotators={args.annotators} think_s={args.think:g}"
        f" saturation_labels_per_s={saturation_one} clips={clips}"
        f" overlap_violations={violations}"
    )


if __name__ == "__main__":
    main()
