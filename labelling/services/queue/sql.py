"""The queue's hand-written SQL, named from model metadata.

Two statements are written by hand because the ORM cannot say them in one query: the
PostgreSQL lease (`lease.py`) and the bulk priority swap (`pool.apply_priorities`). Their
templates name tables as `{Lease}` and columns as `{Lease.annotator}`; `render` fills those
names from the models, so a renamed table or column changes the SQL with the model.
"""

from __future__ import annotations

from django.db import connection, models

from emoloop.rows import column
from labelling.models import Annotation, Clip, Lease, QueueEntry


class _Names:
    """A model's quoted table name (`{Lease}` in a SQL template) and column names
    (`{Lease.annotator}`), read from the model's metadata."""

    def __init__(self, model: type[models.Model]) -> None:
        self._model = model

    def __format__(self, spec: str) -> str:
        return connection.ops.quote_name(self._model._meta.db_table)

    def __getattr__(self, field: str) -> str:
        return column(self._model, field)


def render(template: str, **parts: str) -> str:
    """Fill a SQL template's `{Model}` and `{Model.field}` names (and any `parts`)."""
    names = {model.__name__: _Names(model) for model in (Annotation, Clip, Lease, QueueEntry)}
    return template.format_map({**names, **parts})
