"""The queue's behaviour tests, run a second time on SQLite (`make run`'s database).

The queue has one statement per backend where they differ (the lease: one PostgreSQL
statement with SKIP LOCKED, the ORM elsewhere; see labelling/services/queue/lease.py), so its
behaviour tests must pass on both. pytest-django knows one database per run: this test runs
the modules below in a child pytest on a fresh SQLite database, configured as `make run`
configures it (file cache, filesystem broker), and fails if any of their tests fails, errors,
is skipped or does not run there. The concurrency test (tests/test_queue_concurrency.py) is
about PostgreSQL's row locking and stays on PostgreSQL.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import REPO

MODULES = ("tests.test_queue", "tests.test_api_annotations", "tests.test_queue_handoff")

# The child checks the database it was given before it runs a test.
CHILD = """
import sys

import django
import pytest

django.setup()
from django.db import connection

assert connection.vendor == "sqlite", f"expected SQLite, got {connection.vendor}"
sys.exit(pytest.main(sys.argv[1:]))
"""

# Services `make run` does without; the child must not share them with this run.
NOT_INHERITED = ("CACHE_URL", "CACHE_KEY_PREFIX", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


def _test_names(module: str) -> set[str]:
    return {name for name in vars(importlib.import_module(module)) if name.startswith("test_")}


@pytest.mark.slow
def test_the_queue_behaviour_tests_pass_on_sqlite(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    env |= {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "EMOLOOP_DATA_DIR": str(tmp_path / "data"),
        "EMOLOOP_DEV": "true",
        "DJANGO_SETTINGS_MODULE": "emoloop.settings",
    }
    report = tmp_path / "report.xml"
    paths = [module.replace(".", "/") + ".py" for module in MODULES]
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *paths, "-q", "-p", "no:cacheprovider",
         f"--junitxml={report}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, f"queue tests failed on SQLite:\n{output}"

    # The report is the child's own (written above), not untrusted input.
    cases = ET.parse(report).getroot().iter("testcase")  # noqa: S314
    outcomes = {
        f"{case.get('classname')}.{case.get('name')}": [
            child.tag for child in case if child.tag in ("failure", "error", "skipped")
        ]
        for case in cases
    }
    not_passed = {name: tags for name, tags in outcomes.items() if tags}
    assert not not_passed, f"not passed on SQLite: {not_passed}\n{output}"
    ran = {name.split("[")[0] for name in outcomes}
    expected = {f"{module}.{test}" for module in MODULES for test in _test_names(module)}
    assert ran == expected, f"missing on SQLite: {expected - ran}; unexpected: {ran - expected}"
