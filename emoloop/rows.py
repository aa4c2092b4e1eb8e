"""Model instances from hand-written SQL, for the few queries on the annotator's hot path.

Compiling an ORM query costs Python time on every call: a few tenths of a millisecond for a
join with `select_related`, which on the round trip of a label (authenticate, find the
project and role, close the lease, record, lease the next clip) was about half of the
server's CPU per request (bench/queue.py, `--profile`). The queries that run on every
label are therefore written once as SQL (columns named from model metadata, so a renamed
column changes the SQL with the model) and their rows turned back into ordinary model
instances here: `Model.from_db`, exactly as the ORM itself builds them.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Sequence
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, models

M = TypeVar("M", bound=models.Model)


def _quoted(field: models.Field) -> str:
    if not field.column:
        raise LookupError(f"{field} has no column of its own")
    return connection.ops.quote_name(field.column)


def column(model: type[models.Model], name: str) -> str:
    """The quoted column of a model's field (a foreign key's: its `_id` column)."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field):
        raise LookupError(f"{model.__name__}.{name} has no column of its own")
    return _quoted(field)


@functools.cache
def _concrete(model: type[models.Model]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(attribute names, quoted column names) of a model's concrete fields, in order."""
    fields = model._meta.concrete_fields
    return (
        tuple(field.attname for field in fields),
        tuple(_quoted(field) for field in fields),
    )


@functools.cache
def _converters(model: type[models.Model]) -> tuple[tuple[int, tuple[Any, ...]], ...]:
    """(position, the field's converters) of the fields whose values the ORM converts after
    reading them (`Field.get_db_converters`: a JSON field's `from_db_value`, and a foreign
    key's, which are its target field's)."""
    found = []
    for i, field in enumerate(model._meta.concrete_fields):
        converters = tuple(field.get_db_converters(connection))
        if converters:
            found.append((i, converters))
    return tuple(found)


def enabled() -> bool:
    """Hand-written hot-path SQL runs on PostgreSQL only; elsewhere (SQLite for `make run`,
    whose driver returns text where the ORM's converters make dates) callers use the ORM."""
    return connection.vendor == "postgresql"


def table(model: type[models.Model]) -> str:
    """A model's quoted table name."""
    return connection.ops.quote_name(model._meta.db_table)


def select_list(model: type[models.Model], alias: str) -> str:
    """Every concrete column of `model` under a table alias, in field order: the columns
    `instance` expects, as a slice of a row."""
    return ", ".join(f"{alias}.{column}" for column in _concrete(model)[1])


def width(model: type[models.Model]) -> int:
    """How many columns `select_list` names."""
    return len(_concrete(model)[0])


def instance(model: type[M], values: Sequence[Any]) -> M:
    """A model instance from the values of `select_list`, loaded from the database as the
    ORM loads one (`from_db`, after each field's own `from_db_value`; PostgreSQL's driver
    returns Python values for the other types, so the backend needs no converter)."""
    row = list(values)
    for i, converters in _converters(model):
        for convert in converters:
            row[i] = convert(row[i], None, connection)
    return model.from_db(DEFAULT_DB_ALIAS, list(_concrete(model)[0]), row)


@functools.cache
def _insert_statement(model: type[models.Model]) -> tuple[str, tuple[models.Field, ...]]:
    """INSERT of every concrete field but an automatic primary key, returning the key.

    For plain models only (what the ORM's insert does beyond this is refused here): no
    multi-table inheritance, no generated fields, no database-side defaults."""
    meta = model._meta
    if meta.parents or list(meta.local_concrete_fields) != list(meta.concrete_fields):
        raise TypeError(f"rows.insert does not handle {model.__name__}: it inherits a table")
    for field in meta.concrete_fields:
        if getattr(field, "generated", False) or field.db_default is not models.NOT_PROVIDED:
            raise TypeError(f"rows.insert does not handle {model.__name__}.{field.name}")
    pk = meta.pk
    fields = tuple(field for field in meta.concrete_fields if field is not meta.auto_field)
    # Names from model metadata, values as parameters.
    sql = "INSERT INTO {} ({}) VALUES ({}) RETURNING {}".format(  # noqa: S608
        table(model),
        ", ".join(_quoted(field) for field in fields),
        ", ".join(["%s"] * len(fields)),
        _quoted(pk),
    )
    return sql, fields


def insert(obj: models.Model, *, preceded_by: tuple[str, Sequence[Any]] | None = None) -> None:
    """Insert a new instance as `obj.save(force_insert=True)` would (each field's `pre_save`
    and `get_db_prep_save`, so defaults and `auto_now_add` apply alike), in one round trip
    with the statement `preceded_by` (SQL with %s placeholders, and its parameters) if
    given. Models with save signal receivers take the ORM's path: a hand-written insert
    would skip them."""
    model = type(obj)
    if models.signals.pre_save.has_listeners(model) or models.signals.post_save.has_listeners(
        model
    ):
        if preceded_by is not None:
            with connection.cursor() as cursor:
                cursor.execute(preceded_by[0], list(preceded_by[1]))
        obj.save(force_insert=True)
        return
    sql, fields = _insert_statement(model)
    values = [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]
    params: list[Any] = values
    if preceded_by is not None:
        sql = f"{preceded_by[0]};\n{sql}"
        params = [*preceded_by[1], *values]
    with connection.cursor() as cursor:
        # Several statements in one execute: psycopg2 sends them together and returns the
        # last one's rows.
        cursor.execute(sql, params)
        obj.pk = cursor.fetchone()[0]
    obj._state.adding, obj._state.db = False, DEFAULT_DB_ALIAS


# --- Server-side prepared statements ----------------------------------------------------------

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@functools.cache
def _prepared_form(sql: str) -> tuple[str, str, tuple[str, ...]]:
    """(statement name, PREPARE text, parameter names in $n order) of a statement written
    with named placeholders, `%(name)s`."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    body = _PLACEHOLDER.sub(number, sql)
    name = "emoloop_" + hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:20]
    return name, f"PREPARE {name} AS {body}", tuple(names)


def execute_prepared(cursor: Any, sql: str, params: dict[str, Any]) -> None:
    """Execute a statement (named placeholders) as a server-side prepared statement of this
    database connection: PostgreSQL parses it once per connection and, after a few
    executions, reuses a generic plan instead of planning every call (planning the lease
    statement costs about as much as running it). Prepared statements belong to the
    connection and outlive a rolled-back transaction; a new connection prepares again.

    Plain statements when EMOLOOP_PREPARED_STATEMENTS is false (a transaction-mode pooler
    such as PgBouncer's hands each transaction another server connection) or connections
    are not kept between requests (DATABASE_CONN_MAX_AGE=0: nothing to reuse). When the
    server refuses a prepared statement (it is gone, or a migration changed its result
    type), the error is raised, this connection's record is forgotten and the connection is
    closed at the end of the request: the next request starts afresh.
    """
    if not settings.EMOLOOP_PREPARED_STATEMENTS or connection.settings_dict["CONN_MAX_AGE"] == 0:
        cursor.execute(sql, params)
        return
    name, prepare, names = _prepared_form(sql)
    # The names prepared on this thread's connection, kept on its Django wrapper beside the
    # raw connection they belong to: a reconnect starts with none.
    raw = connection.connection
    known = getattr(connection, "emoloop_prepared", None)
    try:
        if known is None or known[0] is not raw:
            # What this connection holds already (a pooled or reused one may hold some).
            cursor.execute("SELECT name FROM pg_prepared_statements")
            known = (raw, {row[0] for row in cursor.fetchall()})
            setattr(connection, "emoloop_prepared", known)  # noqa: B010 (a wrapper's attribute)
        if name not in known[1]:
            cursor.execute(prepare, ())
            known[1].add(name)
        cursor.execute(f"EXECUTE {name} ({', '.join(f'%({n})s' for n in names)})", params)
    except DatabaseError as exc:
        if getattr(exc.__cause__, "pgcode", None) in _REFUSED_PREPARED:
            setattr(connection, "emoloop_prepared", None)  # noqa: B010
            connection.close_at = time.monotonic()  # closed when the request ends
        raise


# The server refused a prepared statement: it does not exist on this connection (26000), it
# exists already (42P05), or a migration changed its result type (0A000, "cached plan must
# not change result type"). Other errors (a timeout, a lock) leave the record alone.
_REFUSED_PREPARED = frozenset({"26000", "42P05", "0A000"})
