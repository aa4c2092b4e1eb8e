"""Rescoring on one worker host vs two: the cluster test's topology at 100,000 clips.

Three hosts in Linux network namespaces (tests/netns_cluster.py, tests/cluster_stack.py):
web (gunicorn), w1 and w2 (one Celery worker process each, consuming every queue), sharing
only PostgreSQL (a scratch database of this run, through a forwarder on the bridge), a
private Redis and a moto S3 server on the bridge. Needs root.

Set-up (not timed): a project with `--labels` labelled clips and a pool of `--pool`
unlabelled clips, all with cached acoustic features seeded directly in the database
(vectors drawn around class means with per-speaker offsets, as bench/loop_latency.py does;
no audio: rescoring reads cached features only), and a model trained in this process
(its artifact stored in the object store, where the worker hosts load it from).

Timed: the ML engineer activates the version through the API (POST .../activate), which
queues a rescoring of the whole pool (chunks of EMOLOOP_RESCORE_CHUNK clips, a chord), first
with only w1 running, then with w1 and w2. rescore_s is the ranking's own span (opened ->
complete, database clock); the wall time from the request to the ranking seen complete, the
CPU seconds of each worker host's processes, and /proc/loadavg are recorded beside it.

This machine has 2 cores shared with other work: two worker hosts can at best use both, and
the speed-up is bounded by what else runs. The JSON (bench/results/cluster.json, the last
five runs) keeps the load averages so the figures can be read against them. Last line:

    hosts=3 workers=2 rescore_s_one_worker=... rescore_s_two_workers=... pool=...

    sudo .venv/bin/python -m bench.cluster [--pool 100000] [--labels 700] [--chunk 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
# `python -m bench.cluster` puts bench/ first on the path, where bench/queue.py would shadow
# the standard library's queue (urllib3 needs it): the repository instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

from bench.scratch_db import scratch_database  # noqa: E402
from tests.cluster_stack import Stack, open_stack, seed_pool, wait_for  # noqa: E402
from tests.netns_cluster import NetnsCluster  # noqa: E402

RESULTS = REPO / "bench" / "results" / "cluster.json"
SLUG = "bench-cluster"
CLASSES = ["mad.angry", "scared", "joyful.excited", "sad.bored", "peaceful.content"]
KEEP_RUNS = 5


def host_cpu_seconds(cluster: NetnsCluster, role: str) -> float:
    """User + system CPU seconds of every process in the host's namespace (and the children
    they reaped)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in cluster.pids(role):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += sum(int(fields[k]) for k in (11, 12, 13, 14)) / tick
    return total


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def populate(args: argparse.Namespace) -> tuple[Any, Any]:
    """The project, its engineer, labelled clips and the pool (features cached)."""
    import numpy as np
    from django.contrib.auth import get_user_model

    from labelling.models import Annotation, Membership, Project, QueueEntry
    from labelling.services import taxonomy
    from learner.features import acoustic
    from learner.models import LearnerSettings

    rng = np.random.default_rng(args.seed)
    version = taxonomy.install_preset("willcox")
    project = Project.objects.create(name="Cluster bench", slug=SLUG, taxonomy_version=version,
                                     annotators_per_clip=1, queue_policy="active")  # fmt: skip
    LearnerSettings.objects.update_or_create(
        project=project, defaults={"epochs": 10, "augmentation": False}
    )
    user_model = get_user_model()
    annotator = user_model.objects.create(username=f"{SLUG}-annotator")
    engineer = user_model.objects.create(username=f"{SLUG}-engineer")
    Membership.objects.create(user=annotator, project=project, role="annotator")
    Membership.objects.create(user=engineer, project=project, role="ml_engineer")
    # Class means and speaker offsets about 2.5 noise units apart (bench/loop_latency.py).
    dim, speakers_n = acoustic.DIM, 20
    means = rng.normal(0.0, 2.5 / np.sqrt(2 * dim), size=(len(CLASSES), dim))
    offsets = rng.normal(0.0, 2.5 / np.sqrt(2 * dim), size=(speakers_n, dim))
    classes = rng.integers(0, len(CLASSES), size=args.labels)
    speakers = rng.integers(0, speakers_n, size=args.labels)
    base = means[classes] + offsets[speakers] + rng.normal(0.0, 1.0, size=(args.labels, dim))
    names = [f"spk{s:02d}" for s in speakers]
    labelled = seed_pool(project, base, names, args.labels, seed=args.seed)
    nodes = dict(version.nodes.filter(key__in=CLASSES).values_list("key", "pk"))
    Annotation.objects.bulk_create(
        Annotation(clip_id=pk, annotator=annotator, node_id=nodes[CLASSES[classes[i]]])
        for i, pk in enumerate(labelled)
    )
    QueueEntry.objects.filter(clip_id__in=labelled).update(open_slots=0)
    started = time.perf_counter()
    seed_pool(project, base, names, args.pool, seed=args.seed + 1)
    print(f"pool of {args.pool} seeded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return project, engineer


def train(project: Any) -> Any:
    """Version 1, trained in this process (artifact into the object store)."""
    from learner.models import ModelVersion, TrainingRun
    from learner.services import training

    run, _ = training.open_run(project, trigger=TrainingRun.Trigger.COMMAND)
    training.run_training(run.pk)
    run.refresh_from_db()
    if run.status != TrainingRun.Status.SUCCEEDED:
        raise SystemExit(f"training ended {run.status}: {run.reason}")
    return ModelVersion.objects.get(run=run)


def rescore(stack: Stack, token: str, version: Any, roles: list[str], timeout: float) -> dict:
    """Activate the version through the API and time the ranking it queues."""
    import requests

    from learner.models import Ranking

    before = set(Ranking.objects.values_list("pk", flat=True))
    cpu0 = {role: host_cpu_seconds(stack.cluster, role) for role in roles}
    load0 = loadavg()
    t0 = time.perf_counter()
    response = requests.post(
        f"{stack.web_url}/api/projects/{SLUG}/models/{version.number}/activate",
        headers={"Authorization": f"Token {token}"}, timeout=120,
    )  # fmt: skip
    if response.status_code != 200:
        raise SystemExit(f"activate answered {response.status_code}: {response.text[:300]}")

    def done() -> bool:
        row = Ranking.objects.exclude(pk__in=before).first()
        return row is not None and row.status not in ("running", "selecting")

    wait_for(done, timeout, f"the ranking on {'+'.join(roles)}")
    wall = time.perf_counter() - t0
    ranking = Ranking.objects.exclude(pk__in=before).get()
    if ranking.status != Ranking.Status.COMPLETE:
        raise SystemExit(f"ranking ended {ranking.status}: {ranking.error}")
    chunks = {role: len(stack.tasks(role, "score_chunk")) for role in roles}
    # Where the time went, from the workers' logs (all rankings so far; the last finish is
    # this one's): the chunks run in parallel, the finishing step (selection, queue order)
    # runs once.
    finish = [s for role in roles for s in stack.task_seconds(role, "finish_ranking")]
    chunk_s = {role: round(sum(stack.task_seconds(role, "score_chunk")), 1) for role in roles}
    return {
        "hosts": roles,
        "rescore_s": round((ranking.finished_at - ranking.created_at).total_seconds(), 2),
        "wall_s": round(wall, 2),
        "chunks_total": ranking.chunks_total,
        "pool": ranking.pool_size,
        "cpu_s": {r: round(host_cpu_seconds(stack.cluster, r) - cpu0[r], 1) for r in roles},
        "chunks_done_so_far": chunks,
        "chunk_task_s_so_far": chunk_s,
        "finish_ranking_s": finish[-1] if finish else None,
        "loadavg_before": load0,
        "loadavg_after": loadavg(),
    }


def measure(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    url = urlsplit(os.environ["DATABASE_URL"])
    database = {"USER": url.username or "postgres", "PASSWORD": url.password or "",
                "HOST": url.hostname or "127.0.0.1", "PORT": url.port or 5432,
                "NAME": url.path.lstrip("/")}  # fmt: skip
    with NetnsCluster(["web", "w1", "w2"], scratch / "cluster") as cluster:
        stack = open_stack(cluster, database)
        try:
            return _measure(args, stack)
        except BaseException:
            for role in ("web", "w1", "w2"):
                print(f"--- {role}\n{stack.log(role)[-3000:]}", file=sys.stderr)
            raise
        finally:
            stack.s3.stop()


def _measure(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    bridge = stack.cluster.bridge_ip
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "emoloop.settings", "EMOLOOP_DEV": "true",
        "CELERY_BROKER_URL": f"redis://{bridge}:{stack.redis_port}/0",
        "CELERY_RESULT_BACKEND": f"redis://{bridge}:{stack.redis_port}/1",
        "CACHE_URL": f"redis://{bridge}:{stack.redis_port}/2",
        "EMOLOOP_RESCORE_CHUNK": str(args.chunk), **stack.bucket.env(),
    })  # fmt: skip
    import django

    django.setup()
    import redis
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    call_command("migrate", verbosity=0)
    project, engineer = populate(args)
    started = time.perf_counter()
    version = train(project)
    print(f"trained in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    # The activation queued a rescoring before any worker ran: drop it, so that each timed
    # ranking is the one the API request queues.
    redis.Redis(bridge, stack.redis_port, db=0).flushdb()
    token = Token.objects.create(user=engineer).key
    extra = {"EMOLOOP_RESCORE_CHUNK": str(args.chunk)}
    stack.start_web(**extra)
    stack.start_worker("w1", **extra)
    stack.wait_ready(["w1"])
    one = rescore(stack, token, version, ["w1"], args.timeout)
    print(f"one worker host: {one}", file=sys.stderr)
    stack.start_worker("w2", **extra)
    stack.wait_ready(["w2"])
    w1_before = len(stack.tasks("w1", "score_chunk"))
    two = rescore(stack, token, version, ["w1", "w2"], args.timeout)
    two["chunks_by_host"] = {"w1": len(stack.tasks("w1", "score_chunk")) - w1_before,
                             "w2": len(stack.tasks("w2", "score_chunk"))}  # fmt: skip
    print(f"two worker hosts: {two}", file=sys.stderr)
    return {"one_worker": one, "two_workers": two}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=700)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    cpu0 = time.process_time()
    name = f"emoloop_bench_cluster_{os.getpid()}"
    with scratch_database(name, reuse_db=False, prefix="bench-cluster-") as (scratch, _):
        result = measure(args, scratch)
    one, two = result["one_worker"]["rescore_s"], result["two_workers"]["rescore_s"]
    run = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "args": vars(args),
        "speedup": round(one / two, 2) if two else None,
        "bench_process_cpu_s": round(time.process_time() - cpu0, 1),
        **result,
    }
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([*runs, run][-KEEP_RUNS:], indent=2) + "\n")
    print(f"speed-up {run['speedup']}x; {RESULTS.relative_to(REPO)}", file=sys.stderr)
    print(f"hosts=3 workers=2 rescore_s_one_worker={one:.1f} "
          f"rescore_s_two_workers={two:.1f} pool={result['two_workers']['pool']}")  # fmt: skip


if __name__ == "__main__":
    main()
