"""Large JSON documents reach PostgreSQL a slice at a time instead of as one bind parameter.

A parameter goes to the server whole: psycopg holds its serialisation and libpq copies it into the
connection's output buffer, which keeps the size it grew to. For a 32 MB schema facet that is
twice its size again in the web worker, and an event writes such a document several times (the
raw event, the dataset's facets and fields, its version's). A large document is instead copied
(``COPY FROM STDIN``, slice by slice) into a temporary table that PostgreSQL empties at commit,
and the statement reads it from there. A document of many values is serialised a piece at a time
on its way (:mod:`lineage.ingest.json_pieces`), so it is never whole in the worker; one of few,
long values is serialised whole and sent in slices.

Only inside a transaction (the rows would be gone before the statement otherwise) and only on
PostgreSQL; elsewhere parameters are left as they are. Pre-serialised documents
(:class:`~lineage.models.fields.JSONText`) are checked always, their size is known; others only
while :func:`expecting_large` is on (the ingestion of an event of a MiB or more), since telling a
small document from a large one costs a walk over it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from psycopg.types.json import Jsonb

from lineage.ingest.json_pieces import PIECE_VALUES, json_pieces, size
from lineage.models.fields import JSONText

STAGE_AT = 1 << 20  # bytes (or characters) of JSON from which a document is staged
SLICE = 1 << 20
NAME = "custody_staged_document"
TABLE = f"pg_temp.{NAME}"
_ids = itertools.count(1)
_expecting = ContextVar("custody_expecting_large_documents", default=False)


@contextmanager
def expecting_large(on: bool = True) -> Iterator[None]:
    """While on, any JSON parameter may be a large document: check each (see the module's text)."""
    token = _expecting.set(on)
    try:
        yield
    finally:
        _expecting.reset(token)


def large_expected() -> bool:
    """Whether :func:`expecting_large` is on (documents may be staged: COPY, which a pipeline refuses)."""
    return _expecting.get()


class Staged(int):
    """A parameter standing for a staged document: its id in the staging table (bound as an int)."""


def placeholder(number: str, value: Any) -> str:
    """The SQL for parameter ``number`` (``$3`` or ``%s``) holding ``value``."""
    if isinstance(value, Staged):
        return f"(SELECT doc FROM {TABLE} WHERE id = {number})::jsonb"
    return number


def can_stage(connection: Any) -> bool:
    return connection.vendor == "postgresql" and connection.in_atomic_block


def stage_large(connection: Any, params: list[Any], positions: Iterable[int]) -> bool:
    """Stage the large JSON documents among ``params[i]`` for ``i`` in ``positions``, replacing
    them by :class:`Staged` (while expecting large ones, the small ones are serialised here, once,
    to tell). Whether any was staged.

    Call only where :func:`can_stage` holds."""
    staged = False
    for i in positions:
        value = params[i]
        if not isinstance(value, Jsonb):
            continue
        document = value.obj
        if isinstance(document, JSONText):
            if sum(map(len, document)) >= STAGE_AT:
                params[i] = _stage(connection, document)
                staged = True
            continue
        dumps: Callable[[Any], Any] | None = value.dumps
        if dumps is None or not _expecting.get():
            continue
        if size(document) > PIECE_VALUES:  # serialised a piece at a time, never whole
            params[i] = _stage(connection, json_pieces(document, dumps, sort_keys=False))
            staged = True
            continue
        data = dumps(document)
        if len(data) >= STAGE_AT:  # few values, but long ones
            params[i] = _stage(connection, [data])
            staged = True
        else:
            params[i] = Jsonb(data, dumps=_same)
        del data
    return staged


def _same(data: Any) -> Any:
    return data


def _slices(data: str | bytes) -> Iterator[str | bytes]:
    if len(data) <= SLICE:
        yield data
        return
    for start in range(0, len(data), SLICE):
        yield data[start : start + SLICE]


def _stage(connection: Any, chunks: Iterable[str | bytes]) -> Staged:
    """COPY the document made of ``chunks`` (its JSON text, or UTF-8 bytes of it) into the staging table."""
    ident = next(_ids)
    with connection.wrap_database_errors, connection.connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {NAME} (id bigint, doc text) ON COMMIT DELETE ROWS")
        with cursor.copy(f"COPY {TABLE} (id, doc) FROM STDIN") as copy:
            copy.write(f"{ident}\t".encode())
            for chunk in chunks:
                for part in _slices(chunk):
                    # COPY's text format: a backslash starts an escape. JSON text has no raw tab,
                    # newline or carriage return (they are escaped inside strings).
                    data = part.encode("utf-8") if isinstance(part, str) else part
                    copy.write(data.replace(b"\\", b"\\\\"))
            copy.write(b"\n")
    return Staged(ident)
