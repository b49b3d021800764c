"""Model fields of the lineage app."""

from __future__ import annotations

from typing import Any

from django.db import models


class JSONText(str):
    """A JSON document already serialised (e.g. the canonical form an event was hashed in).

    Stored as is by :class:`StoredJSONField`, so a large event is not serialised a second time."""


def _as_is(text: Any) -> str:
    return str(text)


class StoredJSONField(models.JSONField):
    """A JSONField that also accepts :class:`JSONText` and stores it without re-serialising."""

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if isinstance(value, JSONText):
            if connection.vendor == "postgresql":
                from psycopg.types.json import Jsonb

                return Jsonb(value, dumps=_as_is)
            return str(value)
        return super().get_db_prep_value(value, connection, prepared)
