"""A paginator that never counts a whole big table.

Django's admin asks the paginator for ``count`` on every list page; on a table of ten million raw events
a plain ``COUNT(*)`` takes seconds. This paginator instead:

- on PostgreSQL, for an unfiltered list, reads the planner's estimate (``pg_class.reltuples``): one
  catalogue lookup, whatever the table's size;
- otherwise (filtered lists, SQLite, or a table whose estimate is small or missing) counts at most
  ``cap + 1`` rows with ``SELECT COUNT(*) FROM (SELECT ... LIMIT cap + 1)``, and reports "more than cap".

The estimate is only trusted when it is above the cap, so "show all" (offered when the count is at most
``list_max_show_all``) is only ever offered on an exact count.
"""

from __future__ import annotations

from enum import Enum
from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet

DEFAULT_COUNT_CAP = 10_000


class CountKind(Enum):
    EXACT = "exact"
    ESTIMATE = "estimate"  # PostgreSQL planner statistics of the whole table
    CAPPED = "capped"  # at least ``cap`` rows; the real number was not counted


class EstimatedCountPaginator(Paginator):
    """``count`` is exact up to ``cap`` rows, else a lower bound or a planner estimate (see module doc)."""

    @property
    def cap(self) -> int:
        return int(getattr(settings, "CUSTODY_ADMIN_COUNT_CAP", DEFAULT_COUNT_CAP))

    @cached_property
    def _counted(self) -> tuple[int, CountKind]:
        queryset: QuerySet[Any] = self.object_list  # type: ignore[assignment]
        cap = self.cap
        if _is_unfiltered(queryset):
            estimate = _planner_estimate(queryset)
            if estimate is not None and estimate > cap:
                return estimate, CountKind.ESTIMATE
        bounded = queryset.order_by()[: cap + 1].count()
        if bounded > cap:
            return cap, CountKind.CAPPED
        return bounded, CountKind.EXACT

    @cached_property
    def count(self) -> int:
        return self._counted[0]

    @property
    def count_kind(self) -> CountKind:
        return self._counted[1]

    @property
    def count_is_exact(self) -> bool:
        return self.count_kind is CountKind.EXACT

    @property
    def count_qualifier(self) -> str:
        """Empty for an exact count, else "about" or "more than": the templates put it before the number."""
        return {CountKind.EXACT: "", CountKind.ESTIMATE: "about", CountKind.CAPPED: "more than"}[self.count_kind]


def _is_unfiltered(queryset: QuerySet[Any]) -> bool:
    query = queryset.query
    return not query.where and not query.distinct and query.combinator is None and not query.is_sliced


def _planner_estimate(queryset: QuerySet[Any]) -> int | None:
    """The planner's row estimate of the queryset's table on PostgreSQL; None elsewhere or if never analysed."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    table = connection.ops.quote_name(queryset.model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:  # -1: never vacuumed or analysed (PostgreSQL 14+)
        return None
    return int(row[0])
