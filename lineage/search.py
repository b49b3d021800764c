"""Search across namespaces, datasets, jobs and dataset fields (Marquez's ``GET /api/v1/search``).

A dataset matches when its name, description or one of its field names matches, or when its
namespace's name does; a job when its name, description or namespace's name does. Results are
Marquez ``SearchResult`` objects (type DATASET or JOB), so a namespace or field hit shows up as the
datasets and jobs it concerns; ``matchedFields`` (our extension) names the fields that matched.

On PostgreSQL this is full-text search: identifiers are split into words at every character
that is not a letter or digit (``public.delivery_7_days`` → public, delivery, 7, days), each
word of the query is a prefix match, and all of them must match. The documents below are the
exact expressions of the GIN indexes created by migration ``0002_search``, so the planner uses
them. Elsewhere (SQLite) the query is a case-insensitive substring match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL

from lineage.access import Visibility
from lineage.models import Dataset, Job, Namespace

# Keep these identical to the index expressions in lineage/migrations/0002_search.py.
DATASET_DOCUMENT = (
    "to_tsvector('simple'::regconfig, regexp_replace("
    # Bounded: a tsvector holds at most 1 MB, and a dataset may have a schema of 100k+ fields.
    'coalesce("lineage_dataset"."name", \'\') || \' \' || left(coalesce("lineage_dataset"."description", \'\'), 20000) '
    "|| ' ' || left(coalesce(jsonb_path_query_array(\"lineage_dataset\".\"fields\", '$[0 to 999].name')::text, ''), "
    "100000), "
    "'[^[:alnum:]]+', ' ', 'g'))"
)
JOB_DOCUMENT = (
    "to_tsvector('simple'::regconfig, regexp_replace("
    'coalesce("lineage_job"."name", \'\') || \' \' || coalesce("lineage_job"."description", \'\'), '
    "'[^[:alnum:]]+', ' ', 'g'))"
)
NAMESPACE_DOCUMENT = (
    "to_tsvector('simple'::regconfig, regexp_replace(coalesce(\"lineage_namespace\".\"name\", ''), "
    "'[^[:alnum:]]+', ' ', 'g'))"
)

SORTS = {"NAME": "name", "UPDATED_AT": "updated_at", "UPDATE_AT": "updated_at"}
FILTERS = ("DATASET", "JOB")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass
class SearchQuery:
    q: str
    kind: str | None = None  # "DATASET" | "JOB" | None for both
    sort: str = "name"  # "name" | "updated_at"
    limit: int = 100
    namespace: str | None = None
    before: date | None = None
    after: date | None = None


@dataclass
class SearchResults:
    total: int
    results: list[dict[str, Any]] = field(default_factory=list)


def words(q: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(q)]


def _tsquery(q: str) -> str:
    # Only letters and digits reach to_tsquery, so nothing in q can inject tsquery syntax.
    return " & ".join(f"{word}:*" for word in words(q))


def _substring(q: str) -> str:
    """The SQLite fallback ignores Marquez's leading/trailing % wildcards."""
    return q.strip().strip("%").strip()


def _like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _matching_namespaces(q: str) -> list[int]:
    if connection.vendor == "postgresql":
        query = _tsquery(q)
        if not query:
            return []
        condition = RawSQL(f"{NAMESPACE_DOCUMENT} @@ to_tsquery('simple'::regconfig, %s)", [query], BooleanField())
        return list(Namespace.objects.filter(condition).values_list("pk", flat=True))
    text = _substring(q)
    return list(Namespace.objects.filter(name__icontains=text).values_list("pk", flat=True)) if text else []


def _dataset_condition(q: str, namespaces: list[int]) -> Q:
    own: Q
    if connection.vendor == "postgresql":
        query = _tsquery(q)
        if not query:
            return Q()
        own = Q(RawSQL(f"{DATASET_DOCUMENT} @@ to_tsquery('simple'::regconfig, %s)", [query], BooleanField()))
    else:
        text = _substring(q)
        if not text:
            return Q()
        in_fields = RawSQL(
            'EXISTS (SELECT 1 FROM json_each("lineage_dataset"."fields") AS f '
            "WHERE lower(json_extract(f.value, '$.name')) LIKE %s ESCAPE '\\')",
            [_like_pattern(text)],
            BooleanField(),
        )
        own = Q(name__icontains=text) | Q(description__icontains=text) | Q(in_fields)
    return own | Q(namespace_id__in=namespaces) if namespaces else own


def _job_condition(q: str, namespaces: list[int]) -> Q:
    own: Q
    if connection.vendor == "postgresql":
        query = _tsquery(q)
        if not query:
            return Q()
        own = Q(RawSQL(f"{JOB_DOCUMENT} @@ to_tsquery('simple'::regconfig, %s)", [query], BooleanField()))
    else:
        text = _substring(q)
        if not text:
            return Q()
        own = Q(name__icontains=text) | Q(description__icontains=text)
    return own | Q(namespace_id__in=namespaces) if namespaces else own


def _restrict(qs: QuerySet[Any], query: SearchQuery, visibility: Visibility) -> QuerySet[Any]:
    qs = visibility.filter(qs)
    if query.namespace:
        qs = qs.filter(namespace__name=query.namespace)
    if query.before:
        qs = qs.filter(updated_at__date__lt=query.before)
    if query.after:
        qs = qs.filter(updated_at__date__gt=query.after)
    return qs


def _ordered(qs: QuerySet[Any], sort: str) -> QuerySet[Any]:
    if sort == "updated_at":
        return qs.order_by("-updated_at", "name", "pk")
    return qs.order_by("name", "namespace__name", "pk")


def _matched_fields(fields: Any, q: str) -> list[str]:
    wanted = words(q)
    text = _substring(q).lower()
    found = []
    for item in fields or []:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        lowered = name.lower()
        field_words = words(name)
        if (text and text in lowered) or (wanted and all(any(fw.startswith(w) for fw in field_words) for w in wanted)):
            found.append(name)
    return found


def search(query: SearchQuery, visibility: Visibility) -> SearchResults:
    """At most ``query.limit`` results, datasets and jobs merged in the requested order, and the
    total number of matches."""
    namespaces = _matching_namespaces(query.q)
    results: list[tuple[Any, dict[str, Any]]] = []
    total = 0
    if query.kind in (None, "DATASET"):
        qs = _restrict(Dataset.objects.filter(_dataset_condition(query.q, namespaces)), query, visibility)
        total += qs.count()
        rows = qs.select_related("namespace").only("name", "updated_at", "fields", "namespace__name")
        for ds in _ordered(rows, query.sort)[: query.limit]:
            item = {
                "type": "DATASET",
                "name": ds.name,
                "updatedAt": _ts(ds.updated_at),
                "namespace": ds.namespace.name,
                "nodeId": f"dataset:{ds.namespace.name}:{ds.name}",
                "matchedFields": _matched_fields(ds.fields, query.q),
            }
            results.append((_sort_key(ds.name, ds.namespace.name, ds.updated_at, query.sort), item))
    if query.kind in (None, "JOB"):
        qs = _restrict(Job.objects.filter(_job_condition(query.q, namespaces)), query, visibility)
        total += qs.count()
        jobs = qs.select_related("namespace").only("name", "updated_at", "namespace__name")
        for job in _ordered(jobs, query.sort)[: query.limit]:
            item = {
                "type": "JOB",
                "name": job.name,
                "updatedAt": _ts(job.updated_at),
                "namespace": job.namespace.name,
                "nodeId": f"job:{job.namespace.name}:{job.name}",
            }
            results.append((_sort_key(job.name, job.namespace.name, job.updated_at, query.sort), item))
    results.sort(key=lambda pair: pair[0])
    return SearchResults(total=total, results=[item for _, item in results[: query.limit]])


def _sort_key(name: str, namespace: str, updated: datetime, sort: str) -> tuple[Any, ...]:
    if sort == "updated_at":
        return (-updated.timestamp(), name, namespace)
    return (name, namespace)


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
