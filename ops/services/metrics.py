"""Prometheus metrics (served at /metrics, ops.views.metrics).

- `emoloop_http_request_duration_seconds{route, method, status}`: a histogram observed by
  ops.middleware.MetricsMiddleware. `route` is the URL pattern that matched
  (`api/projects/<slug:slug>/clips/`), never the raw path, so the labels stay bounded;
  `unmatched` for a path no pattern matches; `method` is one of the HTTP methods or
  `OTHER`; `status` the class, `2xx`…`5xx`.
- `emoloop_celery_queue_length{queue}`: messages waiting per queue, read from the broker on
  each scrape (Redis `LLEN`; the filesystem broker of `make run` counts its spool files).
- `emoloop_celery_tasks_total{task, outcome}`: succeeded / failed / retried per task name,
  counted by every worker in the database (ops.models.TaskOutcome) and read on each scrape.
  Not prometheus-client's multiprocess files: those are per host, and the workers run on
  other hosts than the web; the broker forgets, and Redis counters would be lost with a
  Redis that is only a broker.
- `emoloop_celery_worker_heartbeat_age_seconds`: seconds since the newest worker heartbeat.
- `emoloop_metrics_source_up{source}`: 1 when the queues / tasks could be read on this
  scrape, else 0 (their series are then absent, not zero).

gunicorn runs several processes, each with its own histogram: with `PROMETHEUS_MULTIPROC_DIR`
set (an empty folder per host, before gunicorn starts), prometheus-client writes each
process's values there and the scrape sums them (MultiProcessCollector); without it, a
scrape sees the one process that answered it (fine for one process, wrong for several).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

from ops.models import TaskOutcome
from ops.services import celery_state

log = logging.getLogger(__name__)

# No `_created` series: they double the output and nothing here graphs them.
disable_created_metrics()

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUEST_SECONDS = Histogram(
    "emoloop_http_request_duration_seconds",
    "Time from the first middleware to the response, by route pattern, method and status class.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    REQUEST_SECONDS.labels(
        route=route or "unmatched",
        method=method if method in METHODS else "OTHER",
        status=f"{min(max(status // 100, 1), 5)}xx",
    ).observe(seconds)


# --- Read on scrape ---------------------------------------------------------------------

_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="metrics")


def _queues() -> Iterator[Metric]:
    lengths = _pool.submit(celery_state.queue_lengths).result(
        settings.OPS_METRICS_SOURCE_TIMEOUT_SECONDS
    )
    family = GaugeMetricFamily(
        "emoloop_celery_queue_length", "Messages waiting in each Celery queue.", labels=["queue"]
    )
    for queue, length in sorted((lengths or {}).items()):
        family.add_metric([queue], length)
    yield family


def _tasks() -> Iterator[Metric]:
    family = CounterMetricFamily(
        "emoloop_celery_tasks",
        "Celery task outcomes on every worker host (succeeded, failed, retried).",
        labels=["task", "outcome"],
    )
    rows = TaskOutcome.objects.order_by("task_name", "outcome")
    for name, outcome, count in rows.values_list("task_name", "outcome", "count"):
        family.add_metric([name, outcome], count)
    yield family
    heartbeat = celery_state.last_heartbeat()
    if heartbeat is not None:
        yield GaugeMetricFamily(
            "emoloop_celery_worker_heartbeat_age_seconds",
            "Seconds since the newest Celery worker heartbeat.",
            value=max(0.0, time.time() - heartbeat["at"]),
        )


SOURCES: dict[str, Callable[[], Iterator[Metric]]] = {"queues": _queues, "tasks": _tasks}


class _ScrapeTime:
    """The sources read at scrape time, each one failing alone."""

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "emoloop_metrics_source_up",
            "1 when this scrape could read the source (queues: the broker; tasks: the database).",
            labels=["source"],
        )
        for name, source in SOURCES.items():
            try:
                metrics = list(source())
            except Exception as exc:  # a broker or database outage must not fail the scrape
                log.warning("metrics: %s unavailable (%s)", name, type(exc).__name__)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from metrics
        yield up


class _Registry:
    """One process's own metrics (REGISTRY: requests, process, platform)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    if settings.PROMETHEUS_MULTIPROC_DIR:
        MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
    else:
        registry.register(_Registry())
    registry.register(_ScrapeTime())
    # The 0.0.4 text format: what every Prometheus-compatible scraper reads (our names are
    # plain ASCII, so the 1.0.0 format's UTF-8 escaping would change nothing).
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
