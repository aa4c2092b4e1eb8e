"""A bench's own PostgreSQL database and scratch folders, made for one run and dropped after.

Shared by bench/export.py and bench/console.py: the bench never touches a database it did not
create (unless asked to reuse its own with --reuse-db) and leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def database_urls(name: str) -> tuple[str, str]:
    """(the bench database's URL, the server's maintenance database URL)."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        base = "postgres://postgres@127.0.0.1:5432/postgres"
    parts = urlsplit(base)
    return (
        urlunsplit(parts._replace(path=f"/{name}")),
        urlunsplit(parts._replace(path="/postgres")),
    )


def admin(url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE)."""
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close()


@contextmanager
def scratch_database(name: str, *, reuse_db: bool, prefix: str) -> Iterator[tuple[Path, bool]]:
    """Point this process (DATABASE_URL, MEDIA_ROOT, EMOLOOP_DATA_DIR) at database `name` and
    a temporary folder; yield (the folder, whether the database was created now).

    Without `reuse_db` the database is dropped first and again at the end; with it, an
    existing one is kept (populated by an earlier run) and left in place.
    """
    url, maintenance = database_urls(name)
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update({
        "DATABASE_URL": url, "MEDIA_ROOT": str(scratch / "media"),
        "EMOLOOP_DATA_DIR": str(scratch / "data"), "DATABASE_CONN_MAX_AGE": "0",
    })  # fmt: skip
    created = False
    try:
        if not reuse_db:
            admin(maintenance, f'DROP DATABASE IF EXISTS "{name}"')
        try:
            admin(maintenance, f'CREATE DATABASE "{name}"')
            created = True
        except Exception as exc:  # psycopg2.errors.DuplicateDatabase with --reuse-db
            if not reuse_db:
                raise
            print(f"reusing database {name} ({type(exc).__name__})", file=sys.stderr)
        yield scratch, created
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not reuse_db:
            from django.apps import apps

            if apps.ready:
                from django.db import connections

                connections.close_all()
            admin(maintenance, f'DROP DATABASE IF EXISTS "{name}"')


def server_databases() -> list[str]:
    """The names of the databases on the server (its tests check a bench left none behind)."""
    import psycopg2

    conn = psycopg2.connect(database_urls("postgres")[1])
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database")
            return [name for (name,) in cursor.fetchall()]
    finally:
        conn.close()
