"""Starting the platform the way the README deploys it (gunicorn, gthread workers) for the
HTTP benchmarks, on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(
    port: int, workers: int, threads: int, *, preload: bool = False, **env: str
) -> subprocess.Popen:
    """gunicorn on 127.0.0.1:port, returned once it accepts connections. With `preload` the
    master imports the application and every view before forking (bench/gunicorn_warm.py),
    so that the first requests of each worker cost what later ones do."""
    environment = {**os.environ, "DEBUG": "false", "LOG_LEVEL": "WARNING", **env}
    warm = ["--preload", "--config", str(REPO / "bench" / "gunicorn_warm.py")] if preload else []
    server = subprocess.Popen(
        [str(REPO / ".venv/bin/gunicorn"), "emoloop.wsgi", "--bind", f"127.0.0.1:{port}",
         "--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads),
         "--keep-alive", "30", "--log-level", "warning", "--no-control-socket", *warm],
        cwd=REPO, env=environment,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.1)
    server.kill()
    raise SystemExit("gunicorn did not start")
