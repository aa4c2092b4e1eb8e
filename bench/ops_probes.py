"""What the health, log and metrics machinery costs per call, in process (Django's test
client, no HTTP): /readyz with and without its per-process cache, a /metrics scrape, and
the two middlewares (request id, latency histogram) around a view that does nothing.

Needs the services of the environment (DATABASE_URL on a migrated database,
CELERY_BROKER_URL on Redis, CACHE_URL); a worker heartbeat is written first so /readyz
takes its full path. Wall and CPU time per call and /proc/loadavg are printed: the machine
may be shared.

    EMOLOOP_DEV=true DATABASE_URL=... CELERY_BROKER_URL=redis://... \\
        python -m bench.ops_probes [--calls N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# bench/ (first on the path when run as a script) holds queue.py, which would shadow the
# standard library's `queue`: the repository's root takes its place.
REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")


def _timed(call: Callable[[], object], calls: int) -> dict[str, float]:
    walls = []
    cpu_start = time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        call()
        walls.append((time.perf_counter() - start) * 1000)
    cpu_ms = (time.process_time() - cpu_start) * 1000 / calls
    walls.sort()
    return {
        "p50_ms": round(statistics.median(walls), 3),
        "p95_ms": round(walls[int(0.95 * (len(walls) - 1))], 3),
        "cpu_ms_per_call": round(cpu_ms, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    calls = parser.parse_args().calls

    import django

    django.setup()
    from django.http import HttpResponse
    from django.test import Client, RequestFactory
    from django.test.utils import override_settings, setup_test_environment
    from django.urls import resolve

    from emoloop.middleware import RequestIdMiddleware
    from ops.middleware import MetricsMiddleware
    from ops.services import celery_state, health

    setup_test_environment()
    client = Client()
    token = "bench-token"  # noqa: S105 (a local value)

    def uncached() -> None:
        celery_state.note_heartbeat("bench@ops-probes")  # written at most every 5 s
        health.forget_cached()
        assert client.get("/readyz").status_code == 200

    with override_settings(EMOLOOP_METRICS_TOKEN=token):
        for path in ("/readyz", "/healthz", "/metrics"):  # imports, URLconf, pools: once
            client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
        results = {
            "readyz_uncached": _timed(uncached, calls),
            "readyz_cached": _timed(lambda: client.get("/readyz"), calls * 5),
            "metrics_scrape": _timed(
                lambda: client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}"), calls
            ),
        }
    # The two middlewares alone around a view that does nothing, against no middleware.
    request = RequestFactory().get("/healthz", HTTP_X_REQUEST_ID="bench-1")
    request.resolver_match = resolve("/healthz")
    bare = HttpResponse()
    chain = RequestIdMiddleware(MetricsMiddleware(lambda r: bare))
    results["middlewares"] = _timed(lambda: chain(request), calls * 50)
    results["no_middleware"] = _timed(lambda: (lambda r: bare)(request), calls * 50)
    for name, figures in results.items():
        print(f"{name:28s} " + " ".join(f"{k}={v}" for k, v in figures.items()))
    added = results["middlewares"]["cpu_ms_per_call"] - results["no_middleware"]["cpu_ms_per_call"]
    print(f"middlewares_cpu_us_per_request={added * 1000:.1f}")
    print("loadavg=" + " ".join(Path("/proc/loadavg").read_text().split()[:3]))


if __name__ == "__main__":
    main()
