"""A real S3-speaking server for the tests (moto in server mode), and fixtures that use it.

Nothing is patched: boto3 and django-storages talk HTTP to a `python -m moto.server` process
on a free port. Registered as a pytest plugin by tests/conftest.py (`pytest_plugins`).

- `start_s3_server(host, port)`: a plain function (the cluster test binds the server on a
  bridge address); `S3Server.endpoint_url`, `.client()`, `.stop()`.
- `s3_server` (session): one server for the run.
- `s3_storage` (per test): a fresh bucket, and settings.STORAGES switched to it in this
  process (Django's setting_changed handler resets default_storage).
- `s3_worker` (per test, needs `transactional_db`; the process lives for the module): a
  Celery worker process whose *environment* says EMOLOOP_STORAGE=s3 (a worker reads its
  settings from the environment), on its own prefixed queues, so it never takes a task
  meant for the suite's local-storage `live_worker` and the other way round; this process
  sends to those queues while the test runs.

Run as a script, this file starts that worker: `python tests/s3server.py worker PREFIX
-- <celery worker args>` (see `_worker_main`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# moto accepts any credentials; these are never real ones.
ACCESS_KEY = "emoloop-test-access"
SECRET_KEY = "emoloop-test-secret"
REGION = "us-east-1"
QUEUE_PREFIX = "s3test-"
WORKER_NAME = "s3worker@%h"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    """A running `moto.server` process."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    buckets: list[str] = field(default_factory=list)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> Any:
        """A boto3 S3 client on this server (path-style addressing)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )

    def create_bucket(self, name: str | None = None) -> str:
        bucket = name or f"emoloop-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        self.buckets.append(bucket)
        return bucket

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in `bucket` under `prefix`, sorted (all pages)."""
        paginator = self.client().get_paginator("list_objects_v2")
        found: list[str] = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(found)

    def empty(self, bucket: str) -> None:
        client = self.client()
        keys = self.keys(bucket)
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": key} for key in chunk]}
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_s3_server(
    host: str = "127.0.0.1", port: int | None = None, timeout: float = 60.0
) -> S3Server:
    """Start `python -m moto.server` on host:port (a free port when None); wait until it answers.

    Raises RuntimeError (with the server's log) if it exits or does not answer in `timeout`.
    """
    import urllib.error
    import urllib.request

    chosen = port or free_port(host)
    log = Path(tempfile.gettempdir()) / f"moto-{host}-{chosen}-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", host, "-p", str(chosen)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
        )
    server = S3Server(host=host, port=chosen, process=process, log=log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"moto.server exited ({process.returncode}): {log.read_text(errors='replace')}"
            )
        try:
            with urllib.request.urlopen(server.endpoint_url + "/", timeout=2):  # noqa: S310
                return server
        except urllib.error.HTTPError:
            return server  # it answers (an error status is still an answer)
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(
                    f"moto.server did not answer on {server.endpoint_url} in {timeout:.0f} s"
                ) from None
            time.sleep(0.05)


def s3_storages(server: S3Server, bucket: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    """settings.STORAGES for `bucket` on `server`, built as the settings build it."""
    from emoloop.storage import s3_options, storages_setting

    return storages_setting(
        "s3",
        s3_options(
            bucket=bucket,
            endpoint_url=server.endpoint_url,
            region=REGION,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            prefix=prefix,
        ),
    )


@dataclass
class S3Bucket:
    """What `s3_storage` gives a test: the server, the bucket and helpers to look inside."""

    server: S3Server
    name: str
    prefix: str = ""

    def keys(self, prefix: str = "") -> list[str]:
        return self.server.keys(self.name, prefix)

    def get(self, key: str) -> bytes:
        answer = self.server.client().get_object(Bucket=self.name, Key=key)
        return bytes(answer["Body"].read())

    def env(self) -> dict[str, str]:
        """Environment variables giving another process this bucket as its storage."""
        return {
            "EMOLOOP_STORAGE": "s3",
            "S3_BUCKET": self.name,
            "S3_ENDPOINT_URL": self.server.endpoint_url,
            "S3_REGION": REGION,
            "S3_PREFIX": self.prefix,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }


def use_bucket(settings: Any, bucket: S3Bucket) -> None:
    """Point this process's settings (a pytest-django `settings` fixture) at `bucket`."""
    settings.EMOLOOP_STORAGE = "s3"
    settings.S3_BUCKET = bucket.name
    settings.S3_ENDPOINT_URL = bucket.server.endpoint_url
    settings.S3_PUBLIC_ENDPOINT_URL = ""
    settings.S3_REGION = REGION
    settings.S3_PREFIX = bucket.prefix
    settings.STORAGES = s3_storages(bucket.server, bucket.name, bucket.prefix)


# --- Fixtures ---------------------------------------------------------------------------

import pytest  # noqa: E402 (the functions above are usable without pytest)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto S3 server on 127.0.0.1 for the whole run."""
    server = start_s3_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_storage(s3_server: S3Server, settings: Any) -> Iterator[S3Bucket]:
    """This test's default_storage is a fresh bucket on the moto server."""
    bucket = S3Bucket(s3_server, s3_server.create_bucket())
    use_bucket(settings, bucket)
    yield bucket
    s3_server.empty(bucket.name)


# --- A Celery worker on S3 storage -------------------------------------------------------


def prefixed_routes(routes: Any, prefix: str) -> Any:
    """CELERY_TASK_ROUTES with every queue name prefixed (dict routes; others unchanged)."""
    if isinstance(routes, dict):
        return {
            pattern: {**route, "queue": prefix + route["queue"]}
            if isinstance(route, dict) and "queue" in route
            else route
            for pattern, route in routes.items()
        }
    return routes


def worker_queues() -> list[str]:
    """The queues the suite's worker consumes (the settings' list, else what routes name)."""
    from django.conf import settings

    named = getattr(settings, "EMOLOOP_WORKER_QUEUES", None)
    if named:
        return list(named)
    queues = {settings.CELERY_TASK_DEFAULT_QUEUE}
    for route in (settings.CELERY_TASK_ROUTES or {}).values():
        if isinstance(route, dict) and "queue" in route:
            queues.add(route["queue"])
    return sorted(queues)


def _reset_routing(app: Any) -> None:
    amqp = app.amqp
    amqp._rtable = None
    for cached in ("default_queue", "queues", "router"):
        amqp.__dict__.pop(cached, None)


@contextmanager
def prefixed_queues(app: Any, prefix: str) -> Iterator[None]:
    """While inside, `app` sends every task to the prefixed queue of its route."""
    conf = app.conf
    saved = (conf.task_default_queue, conf.task_routes)
    conf.task_default_queue = prefix + saved[0]
    conf.task_routes = prefixed_routes(saved[1], prefix)
    _reset_routing(app)
    try:
        yield
    finally:
        conf.task_default_queue, conf.task_routes = saved
        _reset_routing(app)


def database_url() -> str:
    """The test database as a URL (what the worker process is given)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


@dataclass
class S3Worker:
    process: subprocess.Popen[bytes]
    bucket: S3Bucket
    media_root: Path
    log: Path
    hostname: str


@pytest.fixture(scope="module")
def s3_live_worker(
    django_db_setup: Any, django_db_blocker: Any, s3_server: S3Server, tmp_path_factory: Any
) -> Iterator[S3Worker]:
    """A `celery worker` process with S3 storage (one bucket for the module) and an empty
    MEDIA_ROOT of its own, consuming the prefixed queues only.

    Module-scoped: it answers broadcasts (ping, inspect) like any worker, so it is stopped
    before another module's tests count the workers they see."""
    from django.conf import settings

    from emoloop.celery import app

    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.fail(
            f"s3_live_worker needs CELERY_BROKER_URL on Redis, not {settings.CELERY_BROKER_URL!r}",
            pytrace=False,
        )
    bucket = S3Bucket(s3_server, s3_server.create_bucket(), prefix="emoloop")
    media = tmp_path_factory.mktemp("s3-worker-media")
    log_path = tmp_path_factory.mktemp("s3-worker-log") / "worker.log"
    hostname = f"s3worker-{uuid.uuid4().hex[:8]}@localhost"
    queues = ",".join(QUEUE_PREFIX + queue for queue in worker_queues())
    env = {
        **os.environ,
        **bucket.env(),
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(media),
        "DJANGO_SETTINGS_MODULE": "emoloop.settings",
    }
    with prefixed_queues(app, QUEUE_PREFIX):
        app.control.purge()
    command = [sys.executable, str(Path(__file__)), "worker", QUEUE_PREFIX, "--",
               "-Q", queues, "-n", hostname, "--concurrency", "2", "--without-gossip",
               "--without-mingle", "-l", "info"]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while not app.control.ping(destination=[hostname], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"S3 Celery worker did not start; see {log_path}", pytrace=False)
        yield S3Worker(process, bucket, media, log_path, hostname)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def s3_worker(s3_live_worker: S3Worker, transactional_db: Any, settings: Any) -> Iterator[S3Worker]:
    """Per test: this process on the worker's bucket (emptied first), sending to its queues."""
    from emoloop.celery import app

    s3_live_worker.bucket.server.empty(s3_live_worker.bucket.name)
    use_bucket(settings, s3_live_worker.bucket)
    with prefixed_queues(app, QUEUE_PREFIX):
        yield s3_live_worker


def _worker_main(argv: list[str]) -> None:
    """`python tests/s3server.py worker PREFIX -- ARGS`: a Celery worker whose app routes
    every task to the prefixed queues (so tasks it sends stay among S3 workers)."""
    prefix = argv[1]
    celery_args = argv[argv.index("--") + 1 :]
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")
    import django

    django.setup()
    from emoloop.celery import app

    app.conf.task_default_queue = prefix + app.conf.task_default_queue
    app.conf.task_routes = prefixed_routes(app.conf.task_routes, prefix)
    _reset_routing(app)
    app.worker_main(["worker", *celery_args])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        _worker_main(sys.argv[1:])
    else:
        raise SystemExit("usage: python tests/s3server.py worker PREFIX -- <celery worker args>")
