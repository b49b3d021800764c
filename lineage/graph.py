"""Read side of the lineage graph: node ids, traversals, time travel and version-level provenance.

Traversals are level-by-level breadth-first searches (DESIGN §2): each level asks the database
one indexed question about the whole frontier (``col = ANY(%s)`` with an array parameter on
PostgreSQL, ``col IN (...)`` on SQLite, through the same ORM lookup), with

- a depth limit (each level is one edge hop),
- a node limit: when the next level would pass it, the graph is cut and ``truncated`` is set,
  and every level query is itself capped so a hub with 100k neighbours is never loaded whole,
- cycle safety (a node is expanded at most once per direction),
- an optional ``as_of`` instant: entity edges valid then (``valid_from <= T < valid_to``)
  instead of the current ones (``valid_to IS NULL``).

Permission filtering happens in the rendering of the traversal (``lineage/api/marquez.py``):
hidden nodes are walked through and come back as redacted placeholders.

Nothing here imports governance; errors are :class:`ReadError` subclasses that the views turn
into ``{"error", "detail"}`` responses.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, reduce
from operator import or_
from typing import Any
from urllib.parse import unquote

from django.db import connection
from django.db.models import F, Lookup, Model, OuterRef, Q, Subquery, Window
from django.db.models.functions import RowNumber

from lineage.access import Visibility
from lineage.ingest.rows import bound_cursor
from lineage.models import (
    ColumnLineage,
    Dataset,
    DatasetSymlink,
    DatasetVersion,
    Job,
    JobDatasetEdge,
    Namespace,
    Run,
    RunInput,
    RunOutput,
)

# --- errors -----------------------------------------------------------------------------------------


class ReadError(Exception):
    """A read request that cannot be answered; ``status`` is the HTTP status to answer with."""

    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidQuery(ReadError):
    status = 400


class NotFound(ReadError):
    """Unknown, or hidden from the caller: both answer 404 so that existence does not leak."""

    status = 404


# --- the array lookup ---------------------------------------------------------------------------------


class AnyOf(Lookup):
    """``field__any_of=[1, 2, 3]``: ``field = ANY(%s)`` with one array parameter on PostgreSQL
    (one plan whatever the frontier size), ``field IN (%s, ...)`` elsewhere."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        values = [int(v) for v in self.rhs]
        if not values:
            return "1 = 0", []
        if connection.vendor == "postgresql":
            return f"{lhs_sql} = ANY(%s)", [*lhs_params, values]
        return f"{lhs_sql} IN ({', '.join(['%s'] * len(values))})", [*lhs_params, *values]


def _register_any_of(model: type[Model], *names: str) -> None:
    for name in names:
        model._meta.get_field(name).register_lookup(AnyOf)  # type: ignore[union-attr]


_register_any_of(JobDatasetEdge, "job", "dataset")
_register_any_of(RunInput, "run", "version")
_register_any_of(RunOutput, "run")
_register_any_of(ColumnLineage, "dataset", "input_dataset")
_register_any_of(DatasetVersion, "id")

# --- node kinds and keys --------------------------------------------------------------------------------

DATASET = "dataset"
JOB = "job"
RUN = "run"
VERSION = "datasetVersion"
FIELD = "datasetField"

Key = tuple[Any, ...]
"""A graph node: ``(kind, pk)``, or ``(FIELD, dataset_pk, field_name)`` for a column."""
Edge = tuple[Key, Key]
"""``(origin, destination)`` in the direction data flows."""

IN = JobDatasetEdge.Direction.IN
OUT = JobDatasetEdge.Direction.OUT


def valid_at(as_of: datetime | None) -> Q:
    """Entity edges that hold at ``as_of`` (the current ones when None)."""
    if as_of is None:
        return Q(valid_to__isnull=True)
    return Q(valid_from__lte=as_of) & (Q(valid_to__isnull=True) | Q(valid_to__gt=as_of))


# --- node ids -----------------------------------------------------------------------------------------

NODE_ID_HELP = (
    "nodeId must look like dataset:<namespace>:<name>, job:<namespace>:<name>, run:<runId>, "
    "datasetVersion:<namespace>:<name>:<version uuid> or datasetField:<namespace>:<dataset>:<field>"
)
MAX_NODE_ID_COLONS = 64


@dataclass(frozen=True)
class NodeRef:
    kind: str
    pk: int
    namespace_id: int
    field: str = ""

    @property
    def key(self) -> Key:
        if self.kind == FIELD:
            return (FIELD, self.pk, self.field)
        return (self.kind, self.pk)


# --- node kinds provided by other apps ------------------------------------------------------------


@dataclass(frozen=True)
class ProvidedNode:
    """How a provided node renders: its graph id, the namespace that governs who sees it, and the
    ``data`` of the node (only shown to callers who see that namespace)."""

    id: str
    namespace_id: int
    data: dict[str, Any]


@dataclass(frozen=True)
class NodeKind:
    """A kind of node that another app (governance: model versions, deployments) adds to the
    version-level graph, without lineage importing it.

    - ``kind``: the ``nodeId`` prefix and key kind (``model`` for ``model:<ns>:<name>:<version>``);
    - ``type``: the node ``type`` in graphs (``MODEL_VERSION``);
    - ``resolve(rest)``: the part of a ``nodeId`` after ``<kind>:`` to ``(pk, namespace_id)``, or None;
    - ``expand(up, down, cap)``: an :data:`Expander` returning the edges between the frontier (of
      any kind) and nodes of this kind, as ``(origin, destination, attrs)``; ``attrs["type"]``
      names the edge type in graphs (``PRODUCED``, ``DEPLOYED``...);
    - ``render(pks)``: ``{pk: ProvidedNode}`` for the given primary keys (missing: gone).
    """

    kind: str
    type: str
    resolve: Callable[[str], tuple[int, int] | None]
    expand: Callable[[dict[str, list[Key]], dict[str, list[Key]], int], tuple[list[tuple[Key, Key, Any]], bool]]
    render: Callable[[Sequence[int]], dict[int, ProvidedNode]]
    help: str = ""


_node_kinds: dict[str, NodeKind] = {}


def register_node_kind(node_kind: NodeKind) -> None:
    """Add (or replace) a provided node kind; version-level traversals then walk its edges."""
    if node_kind.kind in (DATASET, JOB, RUN, VERSION, FIELD):
        raise ValueError(f"{node_kind.kind!r} is a built-in node kind")
    _node_kinds[node_kind.kind] = node_kind


def unregister_node_kind(kind: str) -> NodeKind | None:
    return _node_kinds.pop(kind, None)


def node_kinds() -> dict[str, NodeKind]:
    """The provided node kinds, by kind."""
    return dict(_node_kinds)


def _splits(text: str) -> list[tuple[str, str]]:
    return [(text[:i], text[i + 1 :]) for i, ch in enumerate(text) if ch == ":" and 0 < i < len(text) - 1]


def _namespace_ids(names: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(names))
    if not wanted:
        return {}
    return dict(Namespace.objects.filter(name__in=wanted).values_list("name", "id"))


def resolve_entity(model: type[Dataset] | type[Job], text: str, *, symlinks: bool = False) -> tuple[int, int] | None:
    """``(pk, namespace_id)`` of the dataset or job named ``<namespace>:<name>``, where both parts
    may contain ':' (``hdfs://host:8020:/path``): every split point is tried against existing rows,
    the longest matching namespace wins. Datasets also match through their symlinks."""
    splits = _splits(text)
    if splits:
        condition = reduce(or_, (Q(namespace__name=ns, name=name) for ns, name in splits))
        rows = list(model._default_manager.filter(condition).values_list("pk", "namespace_id", "namespace__name"))
        if rows:
            pk, ns_id, _ = max(rows, key=lambda row: len(row[2]))
            return pk, ns_id
    if symlinks and splits:
        condition = reduce(or_, (Q(namespace=ns, name=name) for ns, name in splits))
        links = list(
            DatasetSymlink.objects.filter(condition).values_list("dataset_id", "dataset__namespace_id", "namespace")
        )
        if links:
            pk, ns_id, _ = max(links, key=lambda row: len(row[2]))
            return pk, ns_id
    return None


def _resolve_field(text: str) -> NodeRef | None:
    positions = [i for i, ch in enumerate(text) if ch == ":"]
    triples = [
        (text[:i], text[i + 1 : j], text[j + 1 :])
        for a, i in enumerate(positions)
        for j in positions[a + 1 :]
        if i > 0 and j > i + 1 and j < len(text) - 1
    ]
    ns_ids = _namespace_ids(ns for ns, _, _ in triples)
    candidates = [(ns_ids[ns], ns, name, fld) for ns, name, fld in triples if ns in ns_ids]
    if not candidates:
        return None
    condition = reduce(or_, (Q(namespace_id=ns_id, name=name) for ns_id, _, name, _ in candidates))
    datasets = {
        (ns_id, name): (pk, fields)
        for pk, ns_id, name, fields in Dataset.objects.filter(condition).values_list(
            "pk", "namespace_id", "name", "fields"
        )
    }
    found = [
        (pk, ns_id, ns, fld, any(isinstance(f, dict) and f.get("name") == fld for f in fields or []))
        for ns_id, ns, name, fld in candidates
        if (ns_id, name) in datasets
        for pk, fields in [datasets[(ns_id, name)]]
    ]
    if not found:
        return None
    unknown = [row for row in found if not row[4]]
    if unknown:
        lineage = reduce(
            or_,
            (Q(dataset_id=pk, field=fld) | Q(input_dataset_id=pk, input_field=fld) for pk, _, _, fld, _ in unknown),
        )
        known = set(ColumnLineage.objects.filter(lineage).values_list("dataset_id", "field"))
        known |= set(ColumnLineage.objects.filter(lineage).values_list("input_dataset_id", "input_field"))
        found = [(pk, ns_id, ns, fld, seen or (pk, fld) in known) for pk, ns_id, ns, fld, seen in found]
    found = [row for row in found if row[4]]
    if not found:
        return None
    pk, ns_id, _, fld, _ = max(found, key=lambda row: (row[4], len(row[2])))
    return NodeRef(FIELD, pk, ns_id, fld)


def resolve_node_id(node_id: str, visibility: Visibility, kinds: Sequence[str]) -> NodeRef:
    """Parse and resolve a Marquez-style ``nodeId``; 400 when malformed, 404 when unknown or hidden."""
    if not node_id:
        raise InvalidQuery(f"nodeId is required: {NODE_ID_HELP}.")
    kind, sep, rest = node_id.partition(":")
    if not sep or not rest:
        raise InvalidQuery(f"{NODE_ID_HELP}; got {node_id!r}.")
    if kind not in kinds:
        raise InvalidQuery(f"nodeId type {kind!r} is not supported here; expected one of {', '.join(kinds)}.")
    if rest.count(":") > MAX_NODE_ID_COLONS:
        raise InvalidQuery(f"nodeId has more than {MAX_NODE_ID_COLONS} ':' separators.")
    ref: NodeRef | None = None
    if kind in (DATASET, JOB):
        if ":" not in rest.strip(":"):
            raise InvalidQuery(f"{NODE_ID_HELP}; {node_id!r} has no namespace and name.")
        model: type[Dataset] | type[Job] = Dataset if kind == DATASET else Job
        hit = resolve_entity(model, rest, symlinks=kind == DATASET)
        ref = NodeRef(kind, *hit) if hit else None
    elif kind == RUN:
        run = Run.objects.filter(run_id=rest).values_list("pk", "job__namespace_id").first()
        ref = NodeRef(RUN, *run) if run else None
    elif kind == VERSION:
        prefix, _, raw = rest.rpartition(":")
        if not prefix:
            raise InvalidQuery(f"{NODE_ID_HELP}; got {node_id!r}.")
        try:
            version_uuid = uuid.UUID(raw)
        except ValueError:
            raise InvalidQuery(f"the version in {node_id!r} is not a UUID.")
        row = DatasetVersion.objects.filter(uuid=version_uuid).values_list("pk", "dataset__namespace_id").first()
        ref = NodeRef(VERSION, *row) if row else None
    elif kind == FIELD:
        if rest.count(":") < 2:
            raise InvalidQuery(f"{NODE_ID_HELP}; {node_id!r} needs a namespace, a dataset and a field.")
        ref = _resolve_field(rest)
    elif kind in _node_kinds:
        provided = _node_kinds[kind].resolve(rest)
        ref = NodeRef(kind, *provided) if provided else None
    if ref is None or not visibility.sees(ref.namespace_id):
        raise NotFound(f"No node matches nodeId {node_id!r}.")
    return ref


# --- breadth-first search -------------------------------------------------------------------------------

Frontier = dict[str, list[Key]]
Found = tuple[list[tuple[Key, Key, Any]], bool]
Expander = Callable[[Frontier, Frontier, int], Found]
"""``expand(upstream frontier by kind, downstream frontier by kind, row cap)`` returns the edges
touching the frontier as ``(origin, destination, attributes)`` and whether a row cap was hit."""


@dataclass
class Traversal:
    start: Key
    nodes: dict[Key, int] = field(default_factory=dict)  # node -> level, in breadth-first order
    edges: dict[Edge, Any] = field(default_factory=dict)  # edge -> attributes (None when none)
    truncated: bool = False

    def kinds(self, kind: str) -> list[int]:
        return [key[1] for key in self.nodes if key[0] == kind]


def row_cap(limit: int) -> int:
    """Most rows one level query may return: enough for any honest level under the node limit."""
    return limit * 10 + 100


def bfs(
    starts: Sequence[Key], *, depth: int, limit: int, upstream: bool, downstream: bool, expand: Expander
) -> Traversal:
    """Breadth-first search from ``starts``, one ``expand`` call (one query per node kind) per level."""
    result = Traversal(start=starts[0], nodes=dict.fromkeys(starts, 0))
    up: set[Key] = set(starts) if upstream else set()
    down: set[Key] = set(starts) if downstream else set()
    seen_up, seen_down = set(up), set(down)
    cap = row_cap(limit)
    for level in range(1, depth + 1):
        if not up and not down:
            break
        found, capped = expand(_by_kind(up), _by_kind(down), cap)
        result.truncated |= capped
        next_up: set[Key] = set()
        next_down: set[Key] = set()
        for origin, destination, attrs in found:
            result.edges.setdefault((origin, destination), attrs)
            if destination in up and origin not in seen_up:
                next_up.add(origin)
            if origin in down and destination not in seen_down:
                next_down.add(destination)
        new = sorted((next_up | next_down) - result.nodes.keys())
        room = limit - len(result.nodes)
        full = len(new) > room
        if full:
            result.truncated = True
            dropped = set(new[max(room, 0) :])
            new = new[: max(room, 0)]
            next_up -= dropped
            next_down -= dropped
        for key in new:
            result.nodes[key] = level
        seen_up |= next_up
        seen_down |= next_down
        up, down = next_up, next_down
        if full:
            break
    nodes = result.nodes
    result.edges = {edge: attrs for edge, attrs in result.edges.items() if edge[0] in nodes and edge[1] in nodes}
    return result


def _by_kind(keys: Iterable[Key]) -> dict[str, list[Key]]:
    grouped: dict[str, list[Key]] = defaultdict(list)
    for key in keys:
        grouped[key[0]].append(key)
    return grouped


# --- entity lineage (jobs and datasets) ------------------------------------------------------------------


def _edge_column(name: str) -> str:
    return str(JobDatasetEdge._meta.get_field(name).column)  # type: ignore[union-attr]


def edge_level_sql(column: str, vendor: str, counts: list[int], as_of: bool) -> str:
    """The one query of a traversal level over job↔dataset edges of one node kind (raw SQL: this
    is the hot path, and compiling an ORM query costs more than running this one): ``(id, job,
    dataset, direction)`` rows, which the caller puts in edge id order.

    One clause per direction walked, ``(<column> = ANY(%s) AND direction = %s)`` OR-ed together,
    so a frontier node only pulls the edges of the side it is walked on (a hub read by 100k jobs
    costs nothing when walked upstream). ``= ANY(%s)`` with one array parameter on PostgreSQL,
    ``IN (%s, ...)`` elsewhere."""
    table = JobDatasetEdge._meta.db_table
    col = _edge_column(column)
    cols = ", ".join(_edge_column(name) for name in ("id", "job", "dataset", "direction"))
    clauses = []
    for count in counts:
        frontier = f"{col} = ANY(%s)" if vendor == "postgresql" else f"{col} IN ({', '.join(['%s'] * count)})"
        clauses.append(f"({frontier} AND direction = %s)")
    validity = "valid_to IS NULL" if not as_of else "valid_from <= %s AND (valid_to IS NULL OR valid_to > %s)"
    return f"SELECT {cols} FROM {table} WHERE ({' OR '.join(clauses)}) AND {validity} LIMIT %s"


# Which edges a frontier node follows: upstream of a dataset are the jobs that write it (OUT edges),
# upstream of a job the datasets it reads (IN); downstream the other way round.
_DIRECTION_WALKED = {("up", "dataset"): OUT, ("up", "job"): IN, ("down", "dataset"): IN, ("down", "job"): OUT}


def entity_lineage(
    start: NodeRef,
    *,
    depth: int,
    limit: int,
    as_of: datetime | None = None,
    upstream: bool = True,
    downstream: bool = True,
) -> Traversal:
    """Jobs and datasets upstream and/or downstream of a job or dataset, through the job↔dataset
    edges valid at ``as_of`` (current edges when None). One query per level; on PostgreSQL, one
    query in all when the neighbourhood is small (:func:`_prefetched_expander`)."""
    vendor = connection.vendor
    instant = connection.ops.adapt_datetimefield_value(as_of) if as_of is not None else None

    def expand(up: Frontier, down: Frontier, cap: int) -> Found:
        found: list[tuple[Key, Key, Any]] = []
        capped = False
        for kind in (DATASET, JOB):
            column = "dataset" if kind == DATASET else "job"
            sides = []
            for side, frontier in (("up", up), ("down", down)):
                ids = sorted({key[1] for key in frontier.get(kind, [])})
                if ids:
                    sides.append((ids, _DIRECTION_WALKED[(side, column)]))
            if not sides:
                continue
            sql = edge_level_sql(column, vendor, [len(ids) for ids, _ in sides], as_of is not None)
            params: list[Any] = []
            for ids, direction in sides:
                params += [ids] if vendor == "postgresql" else list(ids)
                params.append(int(direction))
            if instant is not None:
                params += [instant, instant]
            with bound_cursor(connection) as cursor:
                cursor.execute(sql, [*params, cap])
                rows = cursor.fetchall()
            capped |= len(rows) >= cap
            rows.sort()  # in the order the edges were recorded, whatever the plan
            for _, job_id, dataset_id, direction in rows:
                job, dataset = (JOB, job_id), (DATASET, dataset_id)
                found.append((dataset, job, None) if direction == IN else (job, dataset, None))
        return found, capped

    def traverse(expander: Expander) -> Traversal:
        return bfs([start.key], depth=depth, limit=limit, upstream=upstream, downstream=downstream, expand=expander)

    if vendor == "postgresql" and depth > 0:
        prefetched = _prefetched_expander(start.key, depth, limit, instant, upstream, downstream)
        if prefetched is not None:
            try:
                return traverse(prefetched)
            except _NotPrefetched:
                pass
    return traverse(expand)


class _NotPrefetched(Exception):
    """The prefetched edges cannot answer a level exactly as its query would: ask the database."""


_KIND_CODES = {DATASET: 0, JOB: 1}


@cache
def _walk_sql(as_of: bool) -> str:
    """All the job↔dataset edges a traversal may ask for, in one statement (PostgreSQL): a
    recursive walk up and down from the start, ``depth - 1`` hops, then the edges each node
    reached would be expanded through, as ``(side, kind, node, edge id, job, dataset,
    direction)`` (edge columns NULL for a node without any; the edges are found through the
    index-only columns first and their ids joined last, so that a hub's many edges of the other
    direction are skipped in the index). Nothing when the walk reaches
    ``%(bound)s`` rows, and at most ``%(bound)s`` rows: a neighbourhood that large (a hub) is
    walked level by level instead, each level with its row cap."""
    table = JobDatasetEdge._meta.db_table
    valid = "e.valid_to IS NULL"
    if as_of:
        valid = "e.valid_from <= %(as_of)s AND (e.valid_to IS NULL OR e.valid_to > %(as_of)s)"

    def walk(name: str, side: str) -> str:
        from_dataset, from_job = int(_DIRECTION_WALKED[(side, "dataset")]), int(_DIRECTION_WALKED[(side, "job")])
        return f"""
        {name}(kind, id, depth) AS (
            SELECT s.kind, s.id, 0 FROM unnest(%({name}_kinds)s::int[], %({name}_ids)s::bigint[]) AS s(kind, id)
            UNION
            SELECT n.kind, n.id, w.depth + 1 FROM {name} w CROSS JOIN LATERAL (
                SELECT 1 AS kind, e.job_id AS id FROM {table} e
                WHERE w.kind = 0 AND e.dataset_id = w.id AND e.direction = {from_dataset} AND {valid}
                UNION ALL
                SELECT 0, e.dataset_id FROM {table} e
                WHERE w.kind = 1 AND e.job_id = w.id AND e.direction = {from_job} AND {valid}
            ) n
            WHERE w.depth < %(depth)s - 1
        )"""

    def edges(side: str) -> str:
        from_dataset, from_job = int(_DIRECTION_WALKED[(side, "dataset")]), int(_DIRECTION_WALKED[(side, "job")])
        return f"""
            SELECT e.job_id, e.dataset_id, e.direction FROM {table} e
            WHERE r.kind = 0 AND e.dataset_id = r.id AND e.direction = {from_dataset} AND {valid}
            UNION
            SELECT e.job_id, e.dataset_id, e.direction FROM {table} e
            WHERE r.kind = 1 AND e.job_id = r.id AND e.direction = {from_job} AND {valid}"""

    return f"""
        WITH RECURSIVE {walk("up", "up")}, {walk("down", "down")},
        reached AS MATERIALIZED (
            (SELECT 0 AS side, kind, id FROM up LIMIT %(bound)s)
            UNION ALL
            (SELECT 1, kind, id FROM down LIMIT %(bound)s)
        ),
        nodes AS (SELECT DISTINCT side, kind, id FROM reached WHERE (SELECT count(*) FROM reached) < %(bound)s),
        touching AS (
            SELECT r.side, r.kind, r.id, t.job_id, t.dataset_id, t.direction
            FROM nodes r
            LEFT JOIN LATERAL (
                SELECT * FROM ({edges("up")}) u WHERE r.side = 0
                UNION ALL
                SELECT * FROM ({edges("down")}) d WHERE r.side = 1
            ) t ON true
        )
        SELECT t.side, t.kind, t.id, e.id, t.job_id, t.dataset_id, t.direction
        FROM touching t
        LEFT JOIN {table} e
            ON e.job_id = t.job_id AND e.dataset_id = t.dataset_id AND e.direction = t.direction AND {valid}
        LIMIT %(bound)s"""


def _prefetched_expander(
    start: Key, depth: int, limit: int, instant: Any, upstream: bool, downstream: bool
) -> Expander | None:
    """An :data:`Expander` answering every level of the traversal from ``start`` from edges
    fetched in one statement (:func:`_walk_sql`), with the rows each level query of
    :func:`entity_lineage` would return (in edge id order); None when the neighbourhood is too
    large to fetch whole (a hub): then the levels are asked one by one, each with its row cap.
    It raises :class:`_NotPrefetched` for a level it cannot answer exactly (a row cap reached, a
    node it did not walk)."""
    bound = 2 * limit + 100
    starts = [_KIND_CODES[start[0]]], [start[1]]
    params = {
        "up_kinds": starts[0] if upstream else [],
        "up_ids": starts[1] if upstream else [],
        "down_kinds": starts[0] if downstream else [],
        "down_ids": starts[1] if downstream else [],
        "depth": depth,
        "bound": bound,
        "as_of": instant,
    }
    with bound_cursor(connection) as cursor:
        cursor.execute(_walk_sql(instant is not None), params)
        rows = cursor.fetchall()
    if not rows or len(rows) >= bound:
        return None
    kinds = (DATASET, JOB)
    sides = ("up", "down")
    walked: set[tuple[str, Key]] = set()
    # (side, node) -> edge rows, each (edge id, origin, destination) in the direction data flows
    touching: dict[tuple[str, Key], list[tuple[int, Key, Key]]] = {}
    for side_code, kind_code, node_id, edge_id, job_id, dataset_id, direction in rows:
        key = (sides[side_code], (kinds[kind_code], node_id))
        walked.add(key)
        found = touching.setdefault(key, [])
        if edge_id is not None:
            job, dataset = (JOB, job_id), (DATASET, dataset_id)
            found.append((edge_id, dataset, job) if direction == IN else (edge_id, job, dataset))

    def expand(up: Frontier, down: Frontier, cap: int) -> Found:
        result: list[tuple[Key, Key, Any]] = []
        capped = False
        for kind in kinds:  # one level query per node kind, as entity_lineage asks them
            level: list[tuple[int, Key, Key]] = []
            for side, frontier in (("up", up), ("down", down)):
                for key in frontier.get(kind, []):
                    if (side, key) not in walked:
                        raise _NotPrefetched
                    level += touching[(side, key)]
            if len(level) >= cap:
                raise _NotPrefetched
            level.sort(key=lambda row: row[0])
            result += [(origin, destination, None) for _, origin, destination in level]
        return result, capped

    return expand


# --- column lineage -----------------------------------------------------------------------------------


def dataset_field_names(dataset_id: int) -> list[str]:
    """The fields of a dataset: its schema, then any other field named in column lineage."""
    fields = Dataset.objects.filter(pk=dataset_id).values_list("fields", flat=True).first() or []
    names = [f["name"] for f in fields if isinstance(f, dict) and isinstance(f.get("name"), str)]
    seen = set(names)
    extra = ColumnLineage.objects.filter(dataset_id=dataset_id).values_list("field", flat=True).distinct()
    for name in sorted(set(extra) - seen):
        names.append(name)
    return names


def column_lineage(starts: Sequence[Key], *, depth: int, limit: int, downstream: bool) -> Traversal:
    """Field-level lineage from ``starts`` (``(FIELD, dataset_pk, field)`` keys): always upstream,
    downstream too when asked (Marquez's ``withDownstream``). One query per level."""

    def expand(up: Frontier, down: Frontier, cap: int) -> Found:
        up_keys, down_keys = set(up.get(FIELD, [])), set(down.get(FIELD, []))
        condition = Q()
        if up_keys:
            condition |= Q(dataset_id__any_of=sorted({key[1] for key in up_keys}))
        if down_keys:
            condition |= Q(input_dataset_id__any_of=sorted({key[1] for key in down_keys}))
        rows = list(
            ColumnLineage.objects.filter(condition).values_list(
                "dataset_id",
                "field",
                "input_dataset_id",
                "input_field",
                "transformation_description",
                "transformation_type",
                "transformations",
            )[:cap]
        )
        found = []
        for dataset_id, name, input_id, input_name, description, kind, transformations in rows:
            origin, destination = (FIELD, input_id, input_name), (FIELD, dataset_id, name)
            if destination in up_keys or origin in down_keys:
                attrs = {"description": description, "type": kind, "transformations": transformations}
                found.append((origin, destination, attrs))
        return found, len(rows) >= cap

    return bfs(starts, depth=depth, limit=limit, upstream=True, downstream=downstream, expand=expand)


# --- version-level provenance -------------------------------------------------------------------------

DECLARED = "declared"
INFERRED = "inferred"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Consumed:
    """One input of a run: the dataset version it read, as declared by the producer or inferred
    (the dataset's newest version at the run's first event, not written by the run itself)."""

    run_id: int
    dataset_id: int
    version_id: int | None
    resolution: str
    facets: dict[str, Any]


def _inferred_version() -> Subquery:
    newest = (
        DatasetVersion.objects.filter(
            dataset_id=OuterRef("dataset_id"), created_at__lte=OuterRef("run__first_event_time")
        )
        .exclude(run_id=OuterRef("run_id"))
        .order_by("-created_at", "-uuid")
        .values("pk")[:1]
    )
    return Subquery(newest)


def consumed_inputs(run_ids: Sequence[int], cap: int | None = None) -> tuple[list[Consumed], bool]:
    """The dataset versions the runs consumed (explicit version when the producer said which, else
    inferred). One query."""
    if not run_ids:
        return [], False
    rows_qs = (
        RunInput.objects.filter(run_id__any_of=list(run_ids))
        .annotate(inferred=_inferred_version())
        .order_by("run_id", "dataset_id")
        .values_list("run_id", "dataset_id", "version_id", "inferred", "facets")
    )
    rows = list(rows_qs[:cap] if cap else rows_qs)
    out = []
    for run_id, dataset_id, version_id, inferred, facets in rows:
        if version_id is not None:
            out.append(Consumed(run_id, dataset_id, version_id, DECLARED, facets))
        elif inferred is not None:
            out.append(Consumed(run_id, dataset_id, inferred, INFERRED, facets))
        else:
            out.append(Consumed(run_id, dataset_id, None, UNKNOWN, facets))
    return out, bool(cap) and len(rows) >= (cap or 0)


def produced_outputs(
    run_ids: Sequence[int], cap: int | None = None
) -> tuple[list[tuple[int, int, int, dict[str, Any]]], bool]:
    """``(run_id, dataset_id, version_id, outputFacets)`` of what the runs wrote."""
    if not run_ids:
        return [], False
    qs = (
        RunOutput.objects.filter(run_id__any_of=list(run_ids))
        .order_by("run_id", "dataset_id")
        .values_list("run_id", "dataset_id", "version_id", "facets")
    )
    rows = list(qs[:cap] if cap else qs)
    return rows, bool(cap) and len(rows) >= (cap or 0)


def consumers_of_versions(version_ids: Sequence[int], cap: int) -> tuple[list[tuple[int, int, str]], bool]:
    """``(version_id, run_id, resolution)`` for every run that consumed one of the versions: those
    that named it, and those that read its dataset while it was the newest version."""
    if not version_ids:
        return [], False
    out: list[tuple[int, int, str]] = [
        (version_id, run_id, DECLARED)
        for run_id, version_id in RunInput.objects.filter(version_id__any_of=list(version_ids)).values_list(
            "run_id", "version_id"
        )[:cap]
    ]
    capped = len(out) >= cap
    later = DatasetVersion.objects.filter(dataset_id=OuterRef("dataset_id")).filter(
        Q(created_at__gt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), uuid__gt=OuterRef("uuid"))
    )
    versions = list(
        DatasetVersion.objects.filter(id__any_of=list(version_ids))
        .annotate(next_at=Subquery(later.order_by("created_at", "uuid").values("created_at")[:1]))
        .values_list("pk", "dataset_id", "created_at", "next_at")
    )
    windows = []
    for _, dataset_id, created_at, next_at in versions:
        window = Q(dataset_id=dataset_id, run__first_event_time__gte=created_at)
        if next_at is not None:
            window &= Q(run__first_event_time__lte=next_at)
        windows.append(window)
    if windows:
        wanted = set(version_ids)
        inferred = list(
            RunInput.objects.filter(version__isnull=True)
            .filter(reduce(or_, windows))
            .annotate(inferred=_inferred_version())
            .values_list("run_id", "inferred")[:cap]
        )
        capped |= len(inferred) >= cap
        out += [(version_id, run_id, INFERRED) for run_id, version_id in inferred if version_id in wanted]
    return out, capped


def version_lineage(
    start: NodeRef, *, depth: int, limit: int, upstream: bool = True, downstream: bool = False
) -> Traversal:
    """Runs and the dataset versions they consumed and produced, around a run or a dataset
    version. Node kinds: RUN, VERSION and DATASET (an input whose version is unknown), plus the
    provided kinds (:func:`register_node_kind`, e.g. model versions and deployments). Edges:
    version → run (consumed; attributes say declared or inferred), run → version (produced), and
    the provided kinds' edges."""

    def expand(up: Frontier, down: Frontier, cap: int) -> Found:
        found: list[tuple[Key, Key, Any]] = []
        capped = False
        up_runs = [key[1] for key in up.get(RUN, [])]
        down_runs = [key[1] for key in down.get(RUN, [])]
        if up_runs:
            inputs, hit = consumed_inputs(up_runs, cap)
            capped |= hit
            for item in inputs:
                origin: Key = (VERSION, item.version_id) if item.version_id else (DATASET, item.dataset_id)
                found.append((origin, (RUN, item.run_id), {"resolution": item.resolution, "facets": item.facets}))
        if down_runs:
            outputs, hit = produced_outputs(down_runs, cap)
            capped |= hit
            for run_id, _, version_id, facets in outputs:
                found.append(((RUN, run_id), (VERSION, version_id), {"facets": facets}))
        up_versions = [key[1] for key in up.get(VERSION, [])]
        if up_versions:
            for pk, run_id in DatasetVersion.objects.filter(id__any_of=up_versions, run__isnull=False).values_list(
                "pk", "run_id"
            ):
                found.append(((RUN, run_id), (VERSION, pk), None))
        down_versions = [key[1] for key in down.get(VERSION, [])]
        if down_versions:
            consumers, hit = consumers_of_versions(down_versions, cap)
            capped |= hit
            for version_id, run_id, resolution in consumers:
                found.append(((VERSION, version_id), (RUN, run_id), {"resolution": resolution}))
        for provider in list(_node_kinds.values()):
            more, hit = provider.expand(up, down, cap)
            found += more
            capped |= hit
        return found, capped

    return bfs([start.key], depth=depth, limit=limit, upstream=upstream, downstream=downstream, expand=expand)


def run_provenance(run: NodeRef, *, depth: int, limit: int) -> Traversal:
    """Upstream provenance of a run, ``depth`` runs deep: the run, what it consumed, the runs that
    produced those versions and what they consumed, and so on; plus what the run itself produced."""
    upstream = version_lineage(run, depth=2 * depth + 1, limit=limit, upstream=True, downstream=False)
    outputs, capped = produced_outputs([run.pk], row_cap(limit))
    upstream.truncated |= capped
    for run_id, _, version_id, facets in outputs:
        key: Key = (VERSION, version_id)
        if key not in upstream.nodes:
            if len(upstream.nodes) >= limit:
                upstream.truncated = True
                continue
            upstream.nodes[key] = 1
        upstream.edges.setdefault(((RUN, run_id), key), {"facets": facets})
    return upstream


# --- time travel -----------------------------------------------------------------------------------------


def versions_at(
    dataset_ids: Sequence[int], as_of: datetime
) -> dict[int, tuple[DatasetVersion | None, DatasetVersion | None]]:
    """For each dataset: (its newest version at ``as_of``, its newest version with a schema then)."""
    if not dataset_ids:
        return {}
    newest = DatasetVersion.objects.filter(dataset_id=OuterRef("pk"), created_at__lte=as_of).order_by(
        "-created_at", "-uuid"
    )
    rows = list(
        Dataset.objects.filter(pk__in=list(dataset_ids))
        .annotate(
            current_at=Subquery(newest.values("pk")[:1]),
            schema_at=Subquery(newest.exclude(schema_digest="").values("pk")[:1]),
        )
        .values_list("pk", "current_at", "schema_at")
    )
    wanted = {pk for _, a, b in rows for pk in (a, b) if pk is not None}
    versions = DatasetVersion.objects.in_bulk(sorted(wanted)) if wanted else {}
    return {pk: (versions.get(a) if a else None, versions.get(b) if b else None) for pk, a, b in rows}


def latest_runs_at(job_ids: Sequence[int], as_of: datetime) -> dict[int, int]:
    """For each job, its newest run that had started by ``as_of`` (by first event time)."""
    if not job_ids:
        return {}
    newest = Run.objects.filter(job_id=OuterRef("pk"), first_event_time__lte=as_of).order_by("-first_event_time", "-id")
    rows = Job.objects.filter(pk__in=list(job_ids)).annotate(run_at=Subquery(newest.values("pk")[:1]))
    return {pk: run_pk for pk, run_pk in rows.values_list("pk", "run_at") if run_pk is not None}


DatasetRef = tuple[int, str, int, str]
"""``(namespace_id, namespace name, dataset_id, dataset name)``."""


@dataclass
class JobIO:
    inputs: list[DatasetRef] = field(default_factory=list)
    outputs: list[DatasetRef] = field(default_factory=list)
    truncated: bool = False


def job_io(job_ids: Sequence[int], as_of: datetime | None, per_job: int) -> dict[int, JobIO]:
    """Inputs and outputs of each job from its entity edges (current or valid at ``as_of``), at most
    ``per_job`` of each direction per job (``truncated`` says more exist). One query."""
    result = {pk: JobIO() for pk in job_ids}
    if not job_ids:
        return result
    rows = (
        JobDatasetEdge.objects.filter(valid_at(as_of), job_id__any_of=list(job_ids))
        .annotate(
            position=Window(
                RowNumber(),
                partition_by=[F("job_id"), F("direction")],
                order_by=[F("dataset__namespace__name").asc(), F("dataset__name").asc(), F("id").asc()],
            )
        )
        .filter(position__lte=per_job + 1)
        .values_list(
            "job_id",
            "direction",
            "dataset__namespace_id",
            "dataset__namespace__name",
            "dataset_id",
            "dataset__name",
            "position",
        )
    )
    for job_id, direction, ns_id, ns, dataset_id, name, position in rows:
        io = result[job_id]
        if position > per_job:
            io.truncated = True
            continue
        target = io.inputs if direction == IN else io.outputs
        ref = (ns_id, ns, dataset_id, name)
        if ref not in target:
            target.append(ref)
    for io in result.values():
        io.inputs.sort(key=lambda ref: (ref[1], ref[3]))
        io.outputs.sort(key=lambda ref: (ref[1], ref[3]))
    return result


# --- paths under /namespaces/ -------------------------------------------------------------------------


@dataclass
class PathMatch:
    """A parsed ``/namespaces/...`` path. ``route`` is one of namespace, datasets, dataset,
    dataset_versions, dataset_version, dataset_version_provenance, jobs, job, job_runs."""

    route: str
    namespace: Namespace
    obj: Dataset | Job | None = None
    version: str = ""


def _dataset_parses(tail: str) -> list[tuple[str, str, str]]:
    """``(route, dataset name, version)`` readings of what follows ``<ns>/datasets/``."""
    parses = [("dataset", tail, "")]
    if tail.endswith("/versions"):
        parses.append(("dataset_versions", tail[: -len("/versions")], ""))
    marker = "/versions/"
    start = tail.find(marker)
    while start > 0:
        name, version = tail[:start], tail[start + len(marker) :]
        if version.endswith("/provenance") and len(version) > len("/provenance"):
            parses.append(("dataset_version_provenance", name, version[: -len("/provenance")]))
        if version:
            parses.append(("dataset_version", name, version))
        start = tail.find(marker, start + 1)
    return [p for p in parses if p[1]]


def _job_parses(tail: str) -> list[tuple[str, str, str]]:
    parses = [("job", tail, "")]
    if tail.endswith("/runs"):
        parses.append(("job_runs", tail[: -len("/runs")], ""))
    return [p for p in parses if p[1]]


def resolve_namespace_path(rest: str, visibility: Visibility) -> PathMatch:
    """Parse the part of a URL after ``/namespaces/``. Namespaces and names may contain '/' (and
    clients' ``%2F`` arrives decoded), so every reading is tried against existing rows; among the
    readings that exist, the longest object name wins, then the longest namespace."""
    texts = [rest]
    decoded = unquote(rest)  # behind a proxy that does not decode %2F
    if decoded != rest:
        texts.append(decoded)
    texts += [text[:-1] for text in list(texts) if text.endswith("/") and len(text) > 1]  # a trailing slash
    readings: list[tuple[str, str, str, str, str]] = []  # (route, ns, kind, name, version)
    for text in texts:
        readings.append(("namespace", text, "", "", ""))
        for segment, kind in (("/datasets", DATASET), ("/jobs", JOB)):
            index = text.find(segment)
            while index > 0:
                ns, after = text[:index], text[index + len(segment) :]
                if after == "":
                    readings.append(("datasets" if kind == DATASET else "jobs", ns, "", "", ""))
                elif after.startswith("/") and len(after) > 1:
                    parses = _dataset_parses(after[1:]) if kind == DATASET else _job_parses(after[1:])
                    readings += [(route, ns, kind, name, version) for route, name, version in parses]
                index = text.find(segment, index + 1)
    namespaces = {
        ns.name: ns
        for ns in Namespace.objects.filter(name__in=sorted({r[1] for r in readings}))
        if visibility.sees(ns.pk)
    }
    readings = [r for r in readings if r[1] in namespaces]
    if not readings:
        raise NotFound(f"No namespace matches {rest!r}.")
    objects: dict[tuple[str, str, str], Dataset | Job] = {}
    for kind, model in ((DATASET, Dataset), (JOB, Job)):
        pairs = {(r[1], r[3]) for r in readings if r[2] == kind}
        if pairs:
            condition = reduce(or_, (Q(namespace_id=namespaces[ns].pk, name=name) for ns, name in pairs))
            for obj in model._default_manager.filter(condition).select_related("namespace"):  # type: ignore[attr-defined]
                objects[(kind, obj.namespace.name, obj.name)] = obj
    usable = [r for r in readings if not r[2] or (r[2], r[1], r[3]) in objects]
    if not usable:
        kinds = {r[2] for r in readings if r[2]}
        what = "dataset" if kinds == {DATASET} else "job" if kinds == {JOB} else "object"
        raise NotFound(f"No {what} matches {rest!r}.")
    route, ns, kind, name, version = max(usable, key=lambda r: (bool(r[2]), len(r[3]), len(r[1]), -len(r[4])))
    return PathMatch(route=route, namespace=namespaces[ns], obj=objects.get((kind, ns, name)), version=version)


def find_dataset_version(dataset: Dataset, version: str) -> DatasetVersion:
    """A version of ``dataset`` by its UUID (Marquez's version id) or by the producer's version label."""
    qs = DatasetVersion.objects.filter(dataset=dataset).select_related("dataset__namespace")
    try:
        found = qs.filter(uuid=uuid.UUID(version)).first()
    except ValueError:
        found = None
    if found is None:
        found = qs.filter(version=version).first()
    if found is None:
        raise NotFound(f"Dataset {dataset.name!r} has no version {version!r}.")
    return found
