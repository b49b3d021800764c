"""Model fields of the lineage app."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from django.db import models
from django.db.models.fields.json import KeyTransform

# A run of 19 digits: a number orjson would not read exactly (an integer beyond 64 bits becomes a
# float there; the standard library keeps it whole). Found in a string, it only costs the slow path.
_LONG_DIGITS = re.compile(r"[0-9]{19}")


class JSONText(list[str]):
    """A JSON document already serialised (e.g. the canonical form an event was hashed in), as
    pieces whose concatenation is the text (a large document need never be one string).

    Stored as is by :class:`StoredJSONField`, so a large event is not serialised a second time."""

    def text(self) -> str:
        return "".join(self)


def _joined(text: JSONText) -> str:
    return text.text()


def _json_bytes(value: Any) -> bytes:
    """JSON of a value as UTF-8 bytes, for a jsonb parameter. orjson writes bytes directly (no str
    and then bytes copy of a document that can be tens of megabytes) and several times faster;
    what it refuses (an integer beyond 64 bits, a lone surrogate) goes through the standard library.
    PostgreSQL parses either into the same jsonb."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value).encode("utf-8", "surrogatepass")


class DocumentField(models.JSONField):
    """A JSON column that bulk inserts bind one value per placeholder and that is written to
    PostgreSQL as bytes straight from orjson (see :func:`_json_bytes`).

    On PostgreSQL, Django's ``bulk_create`` otherwise sends each column as one array
    (``UNNEST(%s::jsonb[])``), and psycopg's client-side binding escapes every element of a text
    array in Python, character class by character class: a third of the CPU of a batch of
    OpenLineage events went there. Defining ``get_placeholder`` (a documented Field hook) makes
    Django fall back to a plain ``VALUES (...), (...)`` list, whose scalar parameters psycopg
    escapes in C."""

    def get_placeholder(self, value: Any, compiler: Any, connection: Any) -> str:
        return "%s"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        """Read with orjson, several times faster than the standard library (every facet column
        of every row the ingestion reads goes through here), but exactly as the standard library
        reads it: a document orjson might read differently (long digit runs) or refuses goes
        through the standard library."""
        plain = isinstance(value, str) and self.decoder is None and not isinstance(expression, KeyTransform)
        if plain and _LONG_DIGITS.search(value) is None:
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError:
                pass
        return super().from_db_value(value, expression, connection)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if connection.vendor == "postgresql" and self.encoder is None and isinstance(value, dict | list):
            from psycopg.types.json import Jsonb

            return Jsonb(value, dumps=_json_bytes)
        return super().get_db_prep_value(value, connection, prepared)


class StoredJSONField(DocumentField):
    """A JSONField that also accepts :class:`JSONText` and stores it without re-serialising."""

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if isinstance(value, JSONText):
            if connection.vendor == "postgresql":
                from psycopg.types.json import Jsonb

                return Jsonb(value, dumps=_joined)
            return value.text()
        return super().get_db_prep_value(value, connection, prepared)
