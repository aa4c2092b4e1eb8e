"""The loop's latency: from the label that triggers a retrain to the new model version active
and the queue refilled by it, on a project with 10,000 labelled clips.

The bench creates its own PostgreSQL database (default `emoloop_bench_loop` on the server of
DATABASE_URL, else 127.0.0.1:5432 as user postgres), migrates it and fills it directly: the
Willcox wheel, `--labels` labelled clips and `--pool` unlabelled ones from `--speakers`
speakers, with cached feature vectors (ClipFeatures rows, and the augmented copies the
default settings train on) drawn from class-dependent Gaussian means plus a per-speaker
offset, so that the training is real and learns something. It starts its own Celery worker
(a subprocess with its own hostname, consuming queues named after this run only, so that no
other worker on the same Redis takes its tasks, nor it theirs) and stops it at the end.

Set-up (not timed): version 1 is trained by the worker on all labels but the last
`retrain_after_labels` (the project's setting, default 50), and the pool is ranked by it.
Then all but one of those labels are recorded. Timed: the annotator leases the queue's head
and submits the last label through the API (POST /api/projects/<slug>/annotations/); the
beat's `schedule_training` runs at once, as a tick would (its trigger logic sees the 50th
label and opens a run); the worker trains, activates (quality gate included) and rescores
(the chord of chunk tasks). The clock stops when the new version is active and a COMPLETE
ranking by it orders the queue. The beat's own period (schedule_training every 60 s) comes on
top in production: up to a minute, half of it on average.

    make bench-loop-latency    # or: python -m bench.loop_latency [--labels N] [--pool N]

Writes bench/results/loop_latency.json (with the breakdown: trigger, queue wait, training,
activation, rescoring). The last line printed is

    label_to_queue_s=... labels=10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Run as a script, bench/ comes first on the path: take it off (a bench module named like a
# standard library one, bench/queue.py, would shadow it for Celery) and put the repository on.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

from bench.scratch_db import scratch_database  # noqa: E402

RESULTS = REPO / "bench" / "results"
SLUG = "bench-loop"
TARGET_S = 60.0
# EmoDB's seven emotions on the Willcox wheel (tests/learner/conftest.py): mixed depths.
CLASSES = ["mad.angry", "mad.critical", "scared", "joyful.excited", "sad.bored",
           "sad.depressed", "peaceful.content"]  # fmt: skip
BATCH = 2000


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")
    os.environ.setdefault("EMOLOOP_DEV", "true")
    import django

    django.setup()


def own_queues(prefix: str) -> tuple[str, str]:
    """Route this process's tasks to queues of this run only (the worker does the same)."""
    from emoloop.celery import app

    default, training = f"{prefix}-default", f"{prefix}-training"
    app.conf.task_default_queue = default
    app.conf.task_routes = {"learner.tasks.train_*": {"queue": training}}
    return default, training


def run_worker(prefix: str, hostname: str) -> None:
    """The worker subprocess: this bench's queues only, two processes (the machine's cores)."""
    setup_django()
    from emoloop.celery import app

    default, training = own_queues(prefix)
    app.worker_main(["worker", "-Q", f"{default},{training}", "-n", hostname,
                     "--concurrency", "2", "--without-gossip", "--without-mingle",
                     "-l", "warning"])  # fmt: skip


@dataclass
class World:
    project: Any
    annotator: Any
    later: list[tuple[int, int]]  # (clip, node) labels recorded after version 1
    truth: dict[int, str]  # every clip's class (the trigger's label is its clip's)


def populate(args: argparse.Namespace) -> World:
    """The project, its annotator, its clips, features, labels and queue."""
    import numpy as np
    from django.contrib.auth import get_user_model

    from labelling.models import Annotation, Clip, ClipSource, Membership, Project, QueueEntry
    from labelling.services import taxonomy
    from learner.features import acoustic
    from learner.models import ClipFeatures, LearnerSettings
    from learner.services import features as feature_cache

    rng = np.random.default_rng(args.seed)
    version = taxonomy.install_preset("willcox")
    project = Project.objects.create(
        name="Loop latency bench", slug=SLUG, taxonomy_version=version, annotators_per_clip=1,
        queue_policy="active",
    )  # fmt: skip
    row, _ = LearnerSettings.objects.update_or_create(project=project, defaults={})
    annotator = get_user_model().objects.create(username=f"{SLUG}-annotator")
    Membership.objects.create(user=annotator, project=project, role="annotator")
    nodes = dict(version.nodes.filter(key__in=CLASSES).values_list("key", "pk"))
    total = args.labels + args.pool
    speakers = rng.integers(0, args.speakers, size=total)
    classes = rng.integers(0, len(CLASSES), size=total)
    clips = []
    for start in range(0, total, BATCH):
        clips += Clip.objects.bulk_create(
            Clip(project=project, original="clips/canonical/bench-loop.wav",
                 canonical="clips/canonical/bench-loop.wav", original_name=f"{i}.wav",
                 original_format="WAV", sha256=f"{i:064x}", duration_s=3.0, sample_rate=16000,
                 channels=1, peaks=[], source=ClipSource.UPLOAD,
                 speaker_id=f"spk{speakers[i]:03d}", gender=("female", "male")[speakers[i] % 2])
            for i in range(start, min(start + BATCH, total))
        )  # fmt: skip
    ids = [c.pk for c in clips]
    # Class means about 2.5 apart (Euclidean, in units of the noise), per-speaker offsets of
    # the same size, unit noise: learnable, not trivial (UAR 0.6 on held-out speakers,
    # measured; a first version with means 0.75 apart per dimension was separable, UAR
    # 1.0). Per-speaker normalisation removes most of the offsets.
    dim = acoustic.DIM
    means = rng.normal(0.0, 2.5 / np.sqrt(2 * dim), size=(len(CLASSES), dim))
    offsets = rng.normal(0.0, 2.5 / np.sqrt(2 * dim), size=(args.speakers, dim))
    base = means[classes] + offsets[speakers] + rng.normal(0.0, 1.0, size=(total, dim))
    ex = feature_cache.extractor(acoustic.NAME)
    copies = feature_cache.AUGMENT.copies if row.augmentation else 0
    for variant in range(copies + 1):
        # Every clip's copies: a pool clip labelled later trains on its copies too (the
        # training would compute them from audio, which this bench has none of).
        count = total
        noise = 0.0 if variant == 0 else rng.normal(0.0, 0.3, size=(count, dim))
        vectors = (base[:count] + noise).astype("<f4")
        version_name = feature_cache.version_for(ex, variant)
        for start in range(0, count, BATCH):
            ClipFeatures.objects.bulk_create(
                ClipFeatures(clip_id=ids[i], extractor=ex.name, version=version_name,
                             variant=variant, dim=dim, vector=vectors[i].tobytes())
                for i in range(start, min(start + BATCH, count))
            )  # fmt: skip
    labelled = args.labels - max(row.retrain_after_labels, 1)  # version 1's labels
    for start in range(0, labelled, BATCH):
        Annotation.objects.bulk_create(
            Annotation(clip_id=ids[i], annotator=annotator, node_id=nodes[CLASSES[classes[i]]])
            for i in range(start, min(start + BATCH, labelled))
        )  # fmt: skip
    priorities = rng.random(total)
    QueueEntry.objects.bulk_create(
        [QueueEntry(project=project, clip_id=ids[i], priority=float(priorities[i]), target=1,
                    open_slots=0 if i < args.labels - 1 else 1)
         for i in range(total)],
        batch_size=BATCH,
    )  # fmt: skip
    return World(
        project=project,
        annotator=annotator,
        later=[(ids[i], nodes[CLASSES[classes[i]]]) for i in range(labelled, args.labels - 1)],
        truth={ids[i]: CLASSES[classes[i]] for i in range(total)},
    )


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) of process `root` and its live descendants, plus what
    their reaped children used: the worker's pool processes do the training and the
    rescoring. On a machine shared with others this is the figure wall time cannot be."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, seconds)
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # After the command: state, ppid, ... utime (14th field overall), stime, cutime, cstime.
        parent = int(fields[1])
        seconds = sum(int(fields[k]) for k in (11, 12, 13, 14)) / tick
        stats[int(entry.name)] = (parent, seconds)
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, (parent, _) in stats.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(stats[pid][1] for pid in tree if pid in stats)


def wait_for(predicate: Any, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.perf_counter()


def serving_ranking(project: Any, version: Any) -> Any:
    """The COMPLETE ranking of `version` if it orders the project's queue, else None."""
    from labelling.models import QueueEntry
    from learner.models import Ranking

    ranking = Ranking.objects.filter(model_version=version, status=Ranking.Status.COMPLETE).first()
    if ranking is None:
        return None
    head = (
        QueueEntry.objects.filter(project=project, open_slots__gt=0)
        .order_by("priority", "clip_id")
        .values_list("reason", flat=True)
        .first()
    )
    return ranking if head and head.get("ranking") == ranking.pk else None


def measure(args: argparse.Namespace, prefix: str, scratch: Path) -> dict[str, Any]:
    setup_django()
    own_queues(prefix)
    from django.core.management import call_command

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    migrate_s = time.perf_counter() - started
    hostname = f"{prefix}@{platform.node()}"
    worker = start_worker(prefix, hostname, scratch / "worker.log")
    try:
        return _measure(args, migrate_s, worker.pid)
    except BaseException:
        print((scratch / "worker.log").read_text()[-4000:], file=sys.stderr)
        raise
    finally:
        stop_worker(worker)


def _measure(args: argparse.Namespace, migrate_s: float, worker_pid: int) -> dict[str, Any]:
    from rest_framework.test import APIClient

    from labelling.models import Annotation, QueueEntry
    from learner import tasks
    from learner.models import ModelVersion, Ranking, TrainingRun
    from learner.services import training

    started = time.perf_counter()
    world = populate(args)
    project, annotator = world.project, world.annotator
    populate_s = time.perf_counter() - started
    print(f"populated in {populate_s:.1f} s", file=sys.stderr)

    # Version 1 (set-up): trained with the same settings and ranked by the worker, the
    # steady state of a project. (A one-epoch version 1 was better on held-out speakers
    # than the full retrain, and the quality gate rightly refused the retrain.)
    started = time.perf_counter()
    setup_cpu = tree_cpu_seconds(worker_pid)
    first, _ = training.open_run(project, trigger=TrainingRun.Trigger.COMMAND)
    tasks.send_run(first.pk)
    wait_for(lambda: TrainingRun.objects.get(pk=first.pk).status not in TrainingRun.OPEN,
             args.timeout, "version 1's training")  # fmt: skip
    first.refresh_from_db()
    if first.status != TrainingRun.Status.SUCCEEDED:
        raise SystemExit(f"version 1's training ended {first.status}: {first.reason}")
    v1 = ModelVersion.objects.get(project=project, is_active=True)
    wait_for(lambda: serving_ranking(project, v1) is not None, args.timeout, "version 1's ranking")
    setup_s = time.perf_counter() - started
    setup_cpu = tree_cpu_seconds(worker_pid) - setup_cpu
    print(f"version 1 trained and ranked in {setup_s:.1f} s ({setup_cpu:.1f} CPU s in the worker)",
          file=sys.stderr)  # fmt: skip

    # All but one of the labels that trigger the retrain arrive.
    Annotation.objects.bulk_create(
        Annotation(clip_id=pk, annotator=annotator, node_id=node) for pk, node in world.later
    )
    client = APIClient(HTTP_HOST="127.0.0.1")  # an ALLOWED_HOSTS name in every setting
    client.force_authenticate(annotator)
    leased = client.post(f"/api/projects/{SLUG}/next/")
    if leased.status_code != 200:
        raise SystemExit(f"next clip answered {leased.status_code}: {leased.content[:300]!r}")
    clip_id = leased.json()["clip"]["id"]
    body = {"lease": leased.json()["lease"]["id"], "client_id": str(uuid.uuid4()),
            "node": world.truth[clip_id]}  # fmt: skip

    # Timed from here.
    load_before = os.getloadavg()[0]
    worker_cpu0 = tree_cpu_seconds(worker_pid)
    own_cpu0 = time.process_time()
    t0 = time.perf_counter()
    wall0 = datetime.now(UTC)
    answer = client.post(f"/api/projects/{SLUG}/annotations/", body, format="json")
    if answer.status_code not in (200, 201):
        raise SystemExit(f"submit answered {answer.status_code}: {answer.content[:300]!r}")
    submit_s = time.perf_counter() - t0
    opened = tasks.schedule_training()  # the beat's tick
    if opened != 1:
        raise SystemExit(f"the label did not trigger a retrain (schedule_training: {opened})")
    run = TrainingRun.objects.filter(project=project).exclude(pk=first.pk).get()
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).status not in TrainingRun.OPEN,
             args.timeout, "the retrain")  # fmt: skip
    run.refresh_from_db()
    if run.status != TrainingRun.Status.SUCCEEDED:
        raise SystemExit(f"the retrain ended {run.status}: {run.reason}")
    v2 = ModelVersion.objects.filter(run=run).first()
    if v2 is None or not ModelVersion.objects.filter(pk=v2.pk, is_active=True).exists():
        raise SystemExit(f"the retrain's version was not activated: {run.reason}")
    t_end = wait_for(lambda: serving_ranking(project, v2) is not None, args.timeout,
                     "the new version's ranking to serve the queue")  # fmt: skip
    label_to_queue_s = t_end - t0
    worker_cpu = tree_cpu_seconds(worker_pid) - worker_cpu0
    own_cpu = time.process_time() - own_cpu0
    v2.refresh_from_db()
    ranking = Ranking.objects.get(model_version=v2, status=Ranking.Status.COMPLETE)

    def span(a: datetime | None, b: datetime | None) -> float | None:
        return None if a is None or b is None else round((b - a).total_seconds(), 3)

    labels = Annotation.objects.filter(clip__project=project, is_current=True).count()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": labels,
        "pool": QueueEntry.objects.filter(project=project, open_slots__gt=0).count(),
        "speakers": args.speakers,
        "label_to_queue_s": round(label_to_queue_s, 2),
        "target_s": TARGET_S,
        # CPU seconds of the timed part: the worker (training, gate, rescoring) and this
        # process (the API request, the beat's tick, the polling).
        "cpu_s": {"worker": round(worker_cpu, 1), "bench_process": round(own_cpu, 1)},
        "training_timings": (v2.metrics or {}).get("timings"),
        "training_fit": {
            k: (v2.metrics or {}).get("deployed_fit", {}).get(k) for k in ("epochs", "batch_size")
        },
        "breakdown_s": {
            "submit_request": round(submit_s, 3),
            "label_to_run_opened": span(wall0, run.created_at),
            "run_opened_to_started": span(run.created_at, run.started_at),
            "training_and_activation": span(run.started_at, run.finished_at),
            "activation_at_from_run_start": span(run.started_at, v2.activated_at),
            "activation_to_ranking_opened": span(v2.activated_at, ranking.created_at),
            "rescoring": span(ranking.created_at, ranking.finished_at),
            "ranking_done_to_observed": round(
                t_end - t0 - (span(wall0, ranking.finished_at) or 0), 3
            ),
        },
        "ranking": {
            "pool_size": ranking.pool_size,
            "chunks": ranking.chunks_total,
            "selected": ranking.selected,
            "strategy": ranking.strategy,
        },
        "version": {"number": v2.number, "metrics": _headline_metrics(v2)},
        "setup": {
            "migrate_s": round(migrate_s, 1),
            "populate_s": round(populate_s, 1),
            "version1_train_and_rank_s": round(setup_s, 1),
            "version1_train_and_rank_cpu_s": round(setup_cpu, 1),
        },
        "beat_period_s": 60,
        # The machine's 1-minute load average before and after the timed part (the bench
        # shares it with whatever else runs: the figure is only as quiet as the machine).
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def _headline_metrics(version: Any) -> dict[str, Any]:
    metrics = version.metrics or {}
    return {k: metrics[k] for k in ("uar", "accuracy", "test_clips") if k in metrics}


def start_worker(prefix: str, hostname: str, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--worker", prefix, hostname],
        cwd=REPO, env=dict(os.environ), stdout=handle, stderr=subprocess.STDOUT,
    )  # fmt: skip
    setup_django()
    from emoloop.celery import app

    deadline = time.monotonic() + 120
    while not app.control.ping(destination=[hostname], timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"the bench's Celery worker did not start; see {log}")
    return process


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        run_worker(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=10_000)
    parser.add_argument("--pool", type=int, default=10_000, help="Unlabelled clips to rank.")
    parser.add_argument("--speakers", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="Seconds to wait for each stage before giving up.")  # fmt: skip
    parser.add_argument("--database", default="emoloop_bench_loop",
                        help="Created and dropped by the bench (its own).")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "loop_latency.json")
    args = parser.parse_args()
    if args.labels < 100 or args.pool < 1:
        raise SystemExit("--labels must be at least 100 and --pool at least 1")

    prefix = f"loopbench-{os.getpid()}"
    with scratch_database(args.database, reuse_db=False, prefix="emoloop-bench-loop-") as (
        scratch,
        _new,
    ):
        run = measure(args, prefix, scratch)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(run, indent=2) + "\n")
    print(json.dumps(run["breakdown_s"]), file=sys.stderr)
    print(f"worker CPU {run['cpu_s']['worker']:.1f} s, load {run['load_average']}", file=sys.stderr)
    print(f"label_to_queue_s={run['label_to_queue_s']:.1f} labels={run['labels']}")


if __name__ == "__main__":
    main()
