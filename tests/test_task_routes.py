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


# Tasks that claim their row with a compare-and-set: a second delivery while the first still
# runs does nothing, so they may outlast the visibility timeout.
CLAIMED = {
    "learner.tasks.train_model",
    "exports.tasks.build_dataset",
    "exports.tasks.convert_dataset",
}


def test_no_unclaimed_task_outlasts_the_visibility_timeout() -> None:
    """A live worker's message comes back after the visibility timeout: every task that is not
    claimed by a compare-and-set must end (its hard time limit) before that."""
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    app.loader.import_default_modules()
    ours = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert set(ours) >= CLAIMED
    too_long = {
        name: task.time_limit
        for name, task in ours.items()
        if name not in CLAIMED and (task.time_limit is None or task.time_limit >= visibility)
    }
    assert too_long == {}
    # Far shorter than the hour after which the beat gives a stalled ranking up.
    assert visibility < 3600
