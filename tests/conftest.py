"""Shared test fixtures: personas, a real Celery worker, EmoDB, media in a temp folder.

The suite runs on the services named in the environment (`make test`: PostgreSQL and Redis).
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
from rest_framework.test import APIClient

from labelling.models import Membership, Project, Role
from labelling.services import taxonomy

REPO = Path(__file__).resolve().parents[1]
EMODB = REPO.parent / "shared" / "data" / "emodb"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need a real worker run last, so a worker starts once for all of them."""
    items.sort(key=lambda item: item.get_closest_marker("celery") is not None)


# --- Data -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def emodb() -> Path:
    if not (EMODB / "labels.csv").exists():
        pytest.skip(f"EmoDB is not at {EMODB} (a clone without ../shared): data tests skipped")
    return EMODB


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
def client_for() -> Callable[[object], APIClient]:
    def make(user: object) -> APIClient:
        client = APIClient()
        client.force_authenticate(user=user)
        return client

    return make


# --- Waiting without sleeping blindly ----------------------------------------------------


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
        pytest.skip("live_worker needs CELERY_BROKER_URL on Redis (make test sets it)")
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
            "default,training",
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
