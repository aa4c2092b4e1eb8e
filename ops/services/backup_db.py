"""The database half of a backup: a consistent dump, its row counts and migration state, and
putting it back (PostgreSQL through pg_dump/pg_restore, SQLite through its backup API).

Consistency on PostgreSQL: one REPEATABLE READ transaction exports its snapshot
(`pg_export_snapshot()`), counts every table and reads `django_migrations` in it, and
`pg_dump --snapshot` dumps that same snapshot while the transaction stays open; so the row
counts in the manifest are exactly the rows in the dump, whatever commits meanwhile. On
SQLite the backup API copies a consistent database and the counts are read from the copy.

The client tools get the connection settings through the environment (PGHOST, PGPASSWORD, …),
never on the command line, and must have the server's major version: an older pg_dump
refuses a newer server, and a newer one writes dumps an older pg_restore cannot read.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connections

# Tables that `migrate` fills by itself: a database holding rows only there counts as empty.
MIGRATE_FILLS = frozenset({"django_migrations", "django_content_type", "auth_permission"})

_ENV_OF_OPTION = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
}


class BackupError(Exception):
    """A backup or restore refused or failed; the message says why and what to do."""


@dataclass
class DatabaseState:
    """What the manifest records about the database at the moment of the dump."""

    vendor: str
    file: str
    tables: dict[str, int] = field(default_factory=dict)
    migrations: dict[str, str] = field(default_factory=dict)
    server_version: str = ""
    tool: str = ""


def vendor(alias: str = "default") -> str:
    return str(connections[alias].vendor)


def dump_name(db_vendor: str) -> str:
    """The dump's file name inside a backup."""
    if db_vendor == "postgresql":
        return "database.dump"
    if db_vendor == "sqlite":
        return "database.sqlite3"
    raise BackupError(f"backups support PostgreSQL and SQLite, not {db_vendor}")


# --- Counting and migration state -------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _counts(cursor: Any, tables: list[str]) -> dict[str, int]:
    counts = {}
    for table in sorted(tables):
        cursor.execute(f"SELECT count(*) FROM {_quote(table)}")  # noqa: S608 - quoted name
        counts[table] = int(cursor.fetchone()[0])
    return counts


def _latest_migrations(cursor: Any, tables: list[str]) -> dict[str, str]:
    """The latest applied migration of each app (by the order they were applied)."""
    if "django_migrations" not in tables:
        return {}
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY id")
    latest: dict[str, str] = {}
    for app, name in cursor.fetchall():
        latest[app] = name
    return dict(sorted(latest.items()))


def table_counts(alias: str = "default") -> dict[str, int]:
    """Rows in every table of the configured database, now."""
    conn = connections[alias]
    with conn.cursor() as cursor:
        return _counts(cursor, conn.introspection.table_names(cursor))


def table_names(alias: str = "default") -> list[str]:
    """The tables of the configured database, now."""
    conn = connections[alias]
    with conn.cursor() as cursor:
        return sorted(conn.introspection.table_names(cursor))


def non_empty_tables(alias: str = "default") -> list[str]:
    """Tables holding rows, leaving out those `migrate` fills by itself."""
    conn = connections[alias]
    full = []
    with conn.cursor() as cursor:
        for table in sorted(conn.introspection.table_names(cursor)):
            if table in MIGRATE_FILLS:
                continue
            cursor.execute(f"SELECT 1 FROM {_quote(table)} LIMIT 1")  # noqa: S608 - quoted
            if cursor.fetchone() is not None:
                full.append(table)
    return full


# --- PostgreSQL -------------------------------------------------------------------------


def _pg_env(settings_dict: dict[str, Any]) -> dict[str, str]:
    """The libpq environment naming the configured database (no password on argv)."""
    env = dict(os.environ)
    for key, var in (
        ("HOST", "PGHOST"),
        ("PORT", "PGPORT"),
        ("USER", "PGUSER"),
        ("PASSWORD", "PGPASSWORD"),
        ("NAME", "PGDATABASE"),
    ):
        value = settings_dict.get(key)
        if value:
            env[var] = str(value)
    for option, var in _ENV_OF_OPTION.items():
        value = (settings_dict.get("OPTIONS") or {}).get(option)
        if value:
            env[var] = str(value)
    return env


def _server_major(cursor: Any) -> tuple[int, str]:
    cursor.execute("SHOW server_version_num")
    num = int(cursor.fetchone()[0])
    cursor.execute("SHOW server_version")
    return num // 10000, str(cursor.fetchone()[0])


def _tool(name: str, server_major: int) -> tuple[str, str]:
    """The path and version line of a PostgreSQL client tool of the server's major version."""
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} was not found on PATH: install the PostgreSQL {server_major} client "
            f"tools (Debian: apt-get install postgresql-client-{server_major})"
        )
    line = subprocess.run(  # noqa: S603 - a path found by which, fixed arguments
        [path, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    match = re.search(r"(\d+)(?:\.\d+)*", line)
    major = int(match.group(1)) if match else -1
    if major != server_major:
        raise BackupError(
            f"{path} is {line!r} but the server is PostgreSQL {server_major}: use the "
            f"client tools of the server's major version (put them first on PATH)"
        )
    return path, line


def _run_tool(args: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise BackupError(f"{what} failed (exit status {done.returncode}):\n{tail}")


def _dump_postgresql(alias: str, target: Path) -> DatabaseState:
    conn = connections[alias]
    if conn.in_atomic_block:
        raise BackupError("a backup cannot run inside a database transaction")
    conn.ensure_connection()
    with conn.cursor() as cursor:
        major, server_version = _server_major(cursor)
    path, line = _tool("pg_dump", major)
    state = DatabaseState("postgresql", target.name, server_version=server_version, tool=line)
    conn.set_autocommit(False)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SELECT pg_export_snapshot()")
            snapshot = str(cursor.fetchone()[0])
            tables = conn.introspection.table_names(cursor)
            state.tables = _counts(cursor, tables)
            state.migrations = _latest_migrations(cursor, tables)
            # The transaction stays open until pg_dump has taken the snapshot and finished.
            _run_tool(
                [path, "--format=custom", f"--snapshot={snapshot}", f"--file={target}"],
                _pg_env(conn.settings_dict),
                "pg_dump",
            )
    finally:
        conn.rollback()
        conn.set_autocommit(True)
    return state


def _restore_postgresql(alias: str, dump: Path) -> None:
    conn = connections[alias]
    conn.ensure_connection()
    with conn.cursor() as cursor:
        major, _ = _server_major(cursor)
    path, _ = _tool("pg_restore", major)
    # Our own connection must not hold locks (or an idle transaction) on what is dropped.
    conn.close()
    _run_tool(
        [
            path,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={conn.settings_dict['NAME']}",
            str(dump),
        ],
        _pg_env(conn.settings_dict),
        "pg_restore",
    )


# --- SQLite -----------------------------------------------------------------------------


@contextmanager
def _sqlite(path: Path | str) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(str(path))
    try:
        yield db
    finally:
        db.close()


def _sqlite_tables(db: sqlite3.Connection) -> list[str]:
    rows = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return [str(row[0]) for row in rows]


def _dump_sqlite(alias: str, target: Path) -> DatabaseState:
    name = connections[alias].settings_dict["NAME"]
    with _sqlite(name) as source, _sqlite(target) as copy:
        source.backup(copy)  # a consistent copy, whoever writes meanwhile
        tables = _sqlite_tables(copy)
        cursor = copy.cursor()
        return DatabaseState(
            "sqlite",
            target.name,
            tables=_counts(cursor, tables),
            migrations=_latest_migrations(cursor, tables),
            server_version=sqlite3.sqlite_version,
            tool="sqlite3 backup API",
        )


def _restore_sqlite(alias: str, dump: Path) -> None:
    name = connections[alias].settings_dict["NAME"]
    connections[alias].close()
    Path(name).parent.mkdir(parents=True, exist_ok=True)
    # The backup API replaces every page of the target in one step: a reader sees the old
    # database or the new one.
    with _sqlite(dump) as source, _sqlite(name) as target:
        source.backup(target)


# --- The two entry points ---------------------------------------------------------------


def dump(target_dir: Path, alias: str = "default") -> DatabaseState:
    """Dump the configured database into `target_dir` (its file named by `dump_name`)."""
    db_vendor = vendor(alias)
    target = target_dir / dump_name(db_vendor)
    if db_vendor == "postgresql":
        return _dump_postgresql(alias, target)
    return _dump_sqlite(alias, target)


def restore(dump_file: Path, db_vendor: str, alias: str = "default") -> None:
    """Replace the configured database's tables with the dump's."""
    if db_vendor != vendor(alias):
        raise BackupError(
            f"the backup holds a {db_vendor} database but this instance is configured "
            f"for {vendor(alias)}"
        )
    if db_vendor == "postgresql":
        _restore_postgresql(alias, dump_file)
    else:
        _restore_sqlite(alias, dump_file)
