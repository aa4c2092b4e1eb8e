"""Shared test fixtures: personas, a real Celery worker, EmoDB, media in a temp folder.

The suite runs on the services named in the environment (`make test`: PostgreSQL and Redis).
Nothing here skips a test because something outside the repository is missing: the EmoDB
fixture falls back to the demo subset that ships in `demo/emodb`, and a missing service fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.test import APIClient

from labelling.models import Membership, Project, Role
from labelling.services import taxonomy
from ops.services import health

# The moto S3 server and the S3 storage fixtures (s3_server, s3_storage, s3_worker).
pytest_plugins = ["tests.s3server"]

REPO = Path(__file__).resolve().parents[1]
# The whole corpus (535 clips, ten speakers), where a checkout has ../shared beside it.
EMODB = REPO.parent / "shared" / "data" / "emodb"
# 41 of its clips (one per emotion for six speakers) that ship with the repository.
DEMO_EMODB = REPO / "demo" / "emodb"
# EMOLOOP_TEST_CORPUS=demo forces the demo subset (to check the suite as a clone without
# ../shared runs it), =full insists on the whole corpus; unset: the whole one when present.
CORPUS_ENV = "EMOLOOP_TEST_CORPUS"


def emodb_path() -> Path:
    """The EmoDB folder the tests use (wav/ and labels.csv), as the `emodb` fixture gives it."""
    choice = os.environ.get(CORPUS_ENV, "").strip().lower()
    if choice not in {"", "demo", "full"}:
        raise pytest.UsageError(f"{CORPUS_ENV}={choice!r}: expected 'demo', 'full' or nothing")
    if choice != "demo" and (EMODB / "labels.csv").exists():
        return EMODB
    if choice == "full":
        raise pytest.UsageError(f"{CORPUS_ENV}=full but EmoDB is not at {EMODB}")
    return DEMO_EMODB


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need a real worker run last, so a worker starts once for all of them."""
    items.sort(key=lambda item: item.get_closest_marker("celery") is not None)


# --- Data -------------------------------------------------------------------------------


def pytest_report_header(config: pytest.Config) -> str:
    return f"EmoDB for the tests: {emodb_path()}"


@pytest.fixture(scope="session")
def emodb() -> Path:
    """EmoDB: ../shared/data/emodb when present, else the demo subset in the repository.

    Both have wav/ and labels.csv (file, speaker, gender, age, text, emotion; the demo adds
    language and channel). Tests derive counts from labels.csv and pick files present in
    both (the demo's files are listed in demo/emodb/labels.csv).
    """
    path = emodb_path()
    if not (path / "labels.csv").exists():
        pytest.fail(f"no EmoDB labels at {path}: the demo subset should ship in the repository")
    return path


def clear_cache() -> None:
    """Empty Django's default cache, but only of this checkout's keys where it is Redis.

    `cache.clear()` on Redis is FLUSHDB: it would also take the keys of another checkout
    testing on the same Redis database (settings keeps them apart by KEY_PREFIX, the
    database's name). Other backends are cleared whole (locmem is per process; the file
    cache is the data folder's own).
    """
    default = caches["default"]  # `cache` is a proxy to it
    if isinstance(default, RedisCache):
        client = default._cache.get_client(write=True)
        keys = list(client.scan_iter(match=f"{default.key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    else:
        default.clear()


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    """Each test starts and ends with an empty cache: login throttling counts failures
    there, and the cache outlives a test's transaction."""
    clear_cache()
    yield
    clear_cache()


@pytest.fixture(autouse=True)
def _fresh_readiness() -> None:
    """/readyz reuses its answer for a few seconds (ops.services.health): each test asks anew."""
    health.forget_cached()


@pytest.fixture(autouse=True)
def media_root(tmp_path_factory: pytest.TempPathFactory, settings) -> Path:
    """Each test stores files in its own folder, so no test sees another's audio."""
    root = tmp_path_factory.mktemp("media")
    settings.MEDIA_ROOT = str(root)
    return root


# --- Personas ---------------------------------------------------------------------------


def make_user(username: str, **extra: object):
    return get_user_model().objects.create_user(
        username=username, password="pw-" + username, **extra
    )


@pytest.fixture
def willcox(db):
    return taxonomy.install_preset("willcox")


@pytest.fixture
def project(db, willcox) -> Project:
    return Project.objects.create(
        name="Call centre", slug="callcentre", taxonomy_version=willcox, annotators_per_clip=2
    )


@pytest.fixture
def other_project(db, willcox) -> Project:
    return Project.objects.create(name="Game chat", slug="gamechat", taxonomy_version=willcox)


def _member(project: Project, username: str, role: Role):
    user = make_user(username)
    Membership.objects.create(user=user, project=project, role=role)
    return user


@pytest.fixture
def annotator(project):
    return _member(project, "anna", Role.ANNOTATOR)


@pytest.fixture
def second_annotator(project):
    return _member(project, "bert", Role.ANNOTATOR)


@pytest.fixture
def reviewer(project):
    return _member(project, "rita", Role.REVIEWER)


@pytest.fixture
def engineer(project):
    return _member(project, "emil", Role.ML_ENGINEER)


@pytest.fixture
def project_admin(project):
    return _member(project, "ada", Role.ADMIN)


@pytest.fixture
def outsider(other_project):
    """Admin of another project, member of nothing here."""
    return _member(other_project, "otto", Role.ADMIN)


@pytest.fixture
def staff(db):
    """Django staff (the admin site's login), member of no project."""
    return make_user("stan", is_staff=True)


@pytest.fixture
def superuser(db):
    """Django superuser, holding no membership (labelling.scoping treats a superuser as a
    member of every project)."""
    return make_user("sue", is_staff=True, is_superuser=True)


@pytest.fixture
def client_for() -> Callable[[object], APIClient]:
    def make(user: object) -> APIClient:
        client = APIClient()
        client.force_authenticate(user=user)
        return client

    return make


# --- Waiting without sleeping blindly ----------------------------------------------------


def start_django(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Load the settings and set Django up in a fresh process with `env` (start-up checks
    run at import time, so they are tested in a process of their own)."""
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Poll a condition until it holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(0.05)


# --- A real Celery worker ---------------------------------------------------------------


@pytest.fixture(scope="session")
def live_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A `celery worker` process on the test database and the test broker (Redis).

    Session-scoped: tests using it need `transactional_db` so that the worker sees their
    committed rows. The broker's database is purged first so no stale task runs.
    """
    from emoloop.celery import app

    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.fail(
            f"live_worker needs CELERY_BROKER_URL on Redis, not {settings.CELERY_BROKER_URL!r}: "
            "run the suite through `make test` (it sets redis://127.0.0.1:6379/15 and starts "
            "Redis), or set CELERY_BROKER_URL and CELERY_RESULT_BACKEND to a Redis database",
            pytrace=False,
        )
    app.control.purge()
    media = tmp_path_factory.mktemp("worker-media")
    env = dict(os.environ)
    db = settings.DATABASES["default"]
    env["DATABASE_URL"] = (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    env["MEDIA_ROOT"] = str(media)
    log = (tmp_path_factory.mktemp("worker-log") / "worker.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "emoloop",
            "worker",
            "-Q",
            ",".join(settings.EMOLOOP_WORKER_QUEUES),
            "--concurrency",
            "2",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while not app.control.ping(timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Celery worker did not start; see {log.name}")
        yield {"process": process, "media_root": media, "log": Path(log.name)}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def worker(live_worker, transactional_db, settings) -> Iterator[dict]:
    """Per test: the live worker, with this process storing media where the worker does."""
    settings.MEDIA_ROOT = str(live_worker["media_root"])
    return live_worker
