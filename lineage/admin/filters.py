"""List filters whose choices never need a scan of the filtered table.

Django's ``AllValuesFieldListFilter`` and ``RelatedOnlyFieldListFilter`` build their choices with
``SELECT DISTINCT`` over the listed table; on millions of rows that is seconds per page view. The
filters here take their choices from a fixed list or from the (small) namespace table, of which they
list only the namespaces the user may see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Field, QuerySet
from django.http import HttpRequest

from lineage.admin.base import request_visibility
from lineage.models import Namespace

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise

#: OpenLineage ``eventType`` values (RunEvent).
EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
#: OpenLineage ``lifecycleStateChange`` values.
LIFECYCLE_STATES = ("CREATE", "ALTER", "OVERWRITE", "RENAME", "TRUNCATE", "DROP")


class StaticChoicesFilter(admin.SimpleListFilter):
    """Filters ``field`` on one of a fixed list of values. Subclass with :func:`static_choices_filter`."""

    field: str = ""
    values: Sequence[str] = ()

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, value) for value in self.values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


def static_choices_filter(field: str, title: str, values: Sequence[str]) -> type[StaticChoicesFilter]:
    return type(
        f"{field.title().replace('_', '')}Filter",
        (StaticChoicesFilter,),
        {"field": field, "values": tuple(values), "title": title, "parameter_name": field},
    )


def visible_namespaces(request: HttpRequest) -> QuerySet[Namespace]:
    return request_visibility(request).filter(Namespace.objects.order_by("name"), field="pk")


class NamespaceFilter(admin.RelatedFieldListFilter):
    """A foreign key to Namespace (also across relations, e.g. ``job__namespace``): visible namespaces only."""

    def field_choices(
        self, field: Field[Any, Any], request: HttpRequest, model_admin: Any
    ) -> list[tuple[str, _StrOrPromise]]:
        return [(str(pk), name) for pk, name in visible_namespaces(request).values_list("pk", "name")]


class NamespaceNameFilter(admin.SimpleListFilter):
    """For tables that store a namespace by name (raw events): the choices are the namespace table's rows."""

    title = "job namespace"
    parameter_name = "job_namespace"
    field = "job_namespace"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = visible_namespaces(request).values_list("name", flat=True)
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


class OpenEdgeFilter(admin.SimpleListFilter):
    """Whether an entity-level edge is still valid (``valid_to`` is null) or was closed."""

    title = "validity"
    parameter_name = "open"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "current (open)"), ("no", "closed (history)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(valid_to__isnull=True)
        if self.value() == "no":
            return queryset.filter(valid_to__isnull=False)
        return queryset
