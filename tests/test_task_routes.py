"""Celery routes by kind of work (emoloop/settings.py, docs/deploying.md "Topology"): every
route names a real task, the rescoring chord stays on one queue, and the worker that `make
run` and the tests start consumes every queue a task can be sent to."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from emoloop.celery import app

REPO = Path(__file__).resolve().parents[1]


def _queue(task: str) -> str:
    route = app.amqp.router.route({}, task)
    queue = route["queue"]
    return str(getattr(queue, "name", queue))


def test_every_route_names_a_registered_task() -> None:
    app.loader.import_default_modules()
    for pattern in settings.CELERY_TASK_ROUTES:
        if "*" in pattern:
            prefix = pattern.split("*", 1)[0]
            assert any(name.startswith(prefix) for name in app.tasks), pattern
        else:
            assert pattern in app.tasks, pattern


def test_tasks_go_to_the_queue_of_their_kind() -> None:
    assert _queue("labelling.tasks.ingest_item") == "ingest"
    assert _queue("learner.tasks.compute_features") == "ingest"
    assert _queue("learner.tasks.train_model") == "training"
    for task in ("rescore_project", "score_chunk", "finish_ranking", "ranking_failed"):
        assert _queue(f"learner.tasks.{task}") == "rescoring"
    assert _queue("learner.tasks.dispatch_pending") == "default"


def test_the_all_in_one_worker_consumes_every_routed_queue() -> None:
    routed = {settings.CELERY_TASK_DEFAULT_QUEUE} | {
        route["queue"] for route in settings.CELERY_TASK_ROUTES.values()
    }
    assert set(settings.EMOLOOP_WORKER_QUEUES) == routed
    procfile = (REPO / "Procfile").read_text()
    worker = next(line for line in procfile.splitlines() if line.startswith("worker:"))
    queues = worker.split("-Q", 1)[1].split()[0].split(",")
    assert sorted(queues) == sorted(routed)


def test_a_dead_hosts_messages_come_back_within_the_visibility_timeout() -> None:
    # The suite runs on Redis (make test). Longer than a rescoring chunk takes (seconds), far
    # shorter than the hour after which the beat gives a stalled ranking up.
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    assert 60 <= settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] < 3600
