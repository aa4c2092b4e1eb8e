"""Workers on other hosts: EmoLoop on a cluster of Linux network namespaces (issue 13).

The web server (gunicorn) runs in one namespace and a Celery worker in each of two others
(tests/netns_cluster.py, tests/cluster_stack.py). Each host has its own hostname and empty
working and media folders; they share only PostgreSQL (this machine's, through a forwarder
on the bridge), a private Redis on the bridge, and a moto S3 server on the bridge: what a
real deployment shares. Through the HTTP API, with an ML engineer's token, the test ingests
EmoDB clips (uploads staged in the object store, decoded on the worker hosts), trains (on a
worker host: features from the audio in the object store, the model artifact back into it)
and rescores a pool of a few thousand clips, and checks that:

- work ran on both worker hosts (their logs name the tasks each ran);
- killing one worker host mid-rescore (SIGKILL every process in its namespace, then the
  namespace itself) still completes the ranking: the chunk it held unacknowledged comes
  back after the broker's visibility timeout (CELERY_VISIBILITY_TIMEOUT, 12 s here) and the
  other host scores it;
- the result equals a single-host run: this process scores the same pool with the same
  model version and chunking, in process. "Equal" means the same clips scored, the same top
  class per clip, scores within 1e-6 (float32 forward passes over a different set of rows
  may differ in the last bits: a chunk redelivered after the kill scores only its clips
  without a score), and so the same order of the pool by score (scores rounded to 6
  decimals, ties by clip id).

Network namespaces need root (CAP_SYS_ADMIN, CAP_NET_ADMIN): without them the test fails and
says so; it is never skipped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from rest_framework.authtoken.models import Token

from labelling.models import Annotation, Clip, ImportBatch
from learner.models import (
    ClipFeatures,
    ClipScore,
    LearnerSettings,
    ModelVersion,
    Ranking,
    TrainingRun,
)
from tests.cluster_stack import Stack, open_stack, seed_pool, wait_for
from tests.netns_cluster import ClusterUnavailable, NetnsCluster
from tests.s3server import use_bucket

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

DEMO = Path(__file__).resolve().parents[1] / "demo" / "emodb"
POOL = 3000  # synthetic pool clips (cached features), beside the ingested ones
CHUNK = 100  # clips per rescoring chunk: about 30 chunk tasks to share and to interrupt
VISIBILITY_S = 12
EMOTION_NODES = {"anger": "mad.angry", "disgust": "mad.critical", "fear": "scared",
                 "happiness": "joyful.excited", "boredom": "sad.bored",
                 "sadness": "sad.depressed", "neutral": "peaceful.content"}  # fmt: skip


@pytest.fixture
def stack(transactional_db: Any, tmp_path: Path, settings: Any) -> Iterator[Stack]:
    """Three hosts (web, w1, w2) and the shared services; everything removed afterwards."""
    cluster = NetnsCluster(["web", "w1", "w2"], tmp_path / "cluster")
    try:
        cluster.open()
    except ClusterUnavailable as exc:
        cluster.close()
        pytest.fail(
            f"The cluster test builds network namespaces and cannot here: {exc}. Run it as "
            "root (or with CAP_SYS_ADMIN and CAP_NET_ADMIN); it is not skipped.",
            pytrace=False,
        )
    try:
        stack = open_stack(cluster, settings.DATABASES["default"])
        try:
            extra = {"CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_S),
                     "EMOLOOP_RESCORE_CHUNK": str(CHUNK)}  # fmt: skip
            stack.start_web(**extra)
            for role in ("w1", "w2"):
                stack.start_worker(role, **extra)
            stack.wait_ready(["w1", "w2"])
            yield stack
        finally:
            # Shown by pytest only when the test failed (captured output).
            for role in ("web", "w1", "w2"):
                print(f"--- {role}'s log, last lines ---\n{stack.log(role)[-4000:]}")
            stack.s3.stop()
    finally:
        cluster.close()


def _api(stack: Stack, token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    return session


def _ingest(stack: Stack, api: requests.Session, slug: str) -> int:
    """Upload the demo EmoDB clips and their manifest in one request; returns the batch id."""
    rows = list(csv.DictReader((DEMO / "labels.csv").open()))
    files = [("files", (r["file"], (DEMO / "wav" / r["file"]).read_bytes(), "audio/wav"))
             for r in rows]  # fmt: skip
    files.append(("manifest", ("labels.csv", (DEMO / "labels.csv").read_bytes(), "text/csv")))
    response = api.post(f"{stack.web_url}/api/projects/{slug}/imports/", files=files,
                        data={"segment": "false"}, timeout=120)  # fmt: skip
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def _label(project: Any, annotator: Any) -> int:
    """One annotation per ingested clip, its EmoDB emotion (labelling is not this test's
    subject; the queue's own tests cover the annotator's API)."""
    nodes = dict(project.taxonomy_version.nodes.values_list("key", "pk"))
    clips = Clip.objects.filter(project=project)
    Annotation.objects.bulk_create(
        Annotation(clip=c, annotator=annotator, node_id=nodes[EMOTION_NODES[c.metadata["emotion"]]])
        for c in clips
    )
    return clips.count()


def _reference_scores(project: Any, version: ModelVersion, pool: list[int]) -> dict[int, tuple]:
    """The single-host run: the same pool, model and chunking, scored in this process."""
    from learner.services import rescoring

    plan = rescoring.start(project, version)
    try:
        assert sorted(i for chunk in plan.chunks for i in chunk) == sorted(pool)
        for chunk in plan.chunks:
            rescoring.score_chunk(plan.ranking.pk, chunk)
        return _scores(plan.ranking)
    finally:
        plan.ranking.delete()


def _scores(ranking: Ranking) -> dict[int, tuple]:
    rows = ClipScore.objects.filter(ranking=ranking).values_list("clip_id", "score", "top_core")
    return {clip: (score, top) for clip, score, top in rows}


def _order(scores: dict[int, tuple]) -> list[int]:
    return sorted(scores, key=lambda c: (-round(scores[c][0], 6), c))


def test_web_and_two_worker_hosts_ingest_train_rescore_and_survive_a_dead_host(
    stack: Stack, project: Any, engineer: Any, annotator: Any, settings: Any
) -> None:
    project.annotators_per_clip = 1
    project.queue_policy = "active"
    project.save()
    LearnerSettings.objects.update_or_create(
        project=project,
        defaults={"epochs": 20, "augmentation": False, "min_labelled_clips": 10,
                  "query_batch_size": 20},
    )  # fmt: skip
    api = _api(stack, Token.objects.create(user=engineer).key)

    # Ingest through the web host; the worker hosts decode the staged uploads.
    batch_id = _ingest(stack, api, project.slug)
    wait_for(lambda: ImportBatch.objects.get(pk=batch_id).status in ("done", "failed"),
             timeout=240, what="the worker hosts to ingest the batch")  # fmt: skip
    counts = api.get(f"{stack.web_url}/api/imports/{batch_id}/", timeout=30).json()["counts"]
    assert counts["accepted"] == counts["total"] > 0, counts
    for role in ("w1", "w2"):
        assert stack.tasks(role, "ingest_item"), (
            f"{role} ingested nothing:\n{stack.log(role)[-3000:]}"
        )
    assert not list((stack.cluster.hosts["w1"].datadir / "media").rglob("*.wav"))

    # Train through the API (on a worker host, from the audio in the object store).
    _label(project, annotator)
    response = api.post(f"{stack.web_url}/api/projects/{project.slug}/training-runs", timeout=60)
    assert response.status_code == 202, response.text
    run_id = response.json()["run"]["id"]
    wait_for(lambda: TrainingRun.objects.get(pk=run_id).status not in TrainingRun.OPEN,
             timeout=300, what="a worker host to train")  # fmt: skip
    run = TrainingRun.objects.get(pk=run_id)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.reason
    version = ModelVersion.objects.get(run=run)
    wait_for(lambda: not Ranking.objects.filter(status__in=("running", "selecting")).exists(),
             timeout=120, what="the first (small) ranking to end")  # fmt: skip

    # A pool of a few thousand clips with cached features near the ingested ones.
    real = list(ClipFeatures.objects.filter(clip__project=project, variant=0)
                .values_list("vector", "clip__speaker_id"))  # fmt: skip
    base = np.stack([np.frombuffer(bytes(v), dtype="<f4") for v, _ in real])
    seed_pool(project, base, [s for _, s in real], POOL)

    # Rescore by (re)activating the version through the API, and kill w1 mid-rescore.
    before = set(Ranking.objects.values_list("pk", flat=True))
    response = api.post(
        f"{stack.web_url}/api/projects/{project.slug}/models/{version.number}/activate", timeout=60
    )
    assert response.status_code == 200, response.text
    wait_for(lambda: Ranking.objects.exclude(pk__in=before).exists(), timeout=60,
             what="the rescoring to open a ranking")  # fmt: skip
    ranking = Ranking.objects.exclude(pk__in=before).get()
    assert ranking.chunks_total >= 20

    def w1_holds_a_chunk_after_scoring_one() -> bool:
        done = set(stack.tasks("w1", "score_chunk"))
        held = set(stack.tasks("w1", "score_chunk", "received")) - done
        return bool(done) and bool(held)

    wait_for(w1_holds_a_chunk_after_scoring_one, timeout=120, what="w1 to be mid-rescore")
    assert stack.cluster.kill_host("w1")
    assert not stack.cluster.pids("w1")
    ranking.refresh_from_db()
    assert ranking.status == Ranking.Status.RUNNING, "the ranking ended before w1 was killed"
    # What w1 had received and not finished when it died (read after the kill: a chunk it
    # finished meanwhile is logged as succeeded before it is acknowledged).
    in_flight = set(stack.tasks("w1", "score_chunk", "received")) - set(
        stack.tasks("w1", "score_chunk")
    )

    wait_for(lambda: Ranking.objects.get(pk=ranking.pk).status not in ("running", "selecting"),
             timeout=VISIBILITY_S + 120, what="w2 to finish the ranking")  # fmt: skip
    ranking.refresh_from_db()
    assert ranking.status == Ranking.Status.COMPLETE, ranking.error
    pool = sorted(_scores(ranking))
    assert len(pool) == ranking.pool_size
    # Both hosts scored chunks; what w1 held when it died was scored by w2.
    assert stack.tasks("w1", "score_chunk")
    assert stack.tasks("w2", "score_chunk")
    assert in_flight <= set(stack.tasks("w2", "score_chunk")), in_flight

    # Equal to a single-host run (see the module docstring for what "equal" means).
    settings.EMOLOOP_RESCORE_CHUNK = CHUNK
    use_bucket(settings, stack.bucket)
    cluster_scores = _scores(ranking)
    reference = _reference_scores(project, version, pool)
    assert sorted(reference) == pool
    assert {c: t for c, (_, t) in reference.items()} == {
        c: t for c, (_, t) in cluster_scores.items()
    }
    worst = max(abs(reference[c][0] - cluster_scores[c][0]) for c in pool)
    assert worst <= 1e-6, worst
    assert _order(reference) == _order(cluster_scores)
