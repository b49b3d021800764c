"""Response shapes of the Marquez-compatible read API (Marquez's ``openapi.yml``), plus our extensions.

Functions here take rows already selected by the views and services and return plain JSON-ready
dicts. Bulk renderers (``datasets_json``, ``jobs_json``, ``runs_json``, the graph renderers) fetch
what they need about related rows in a fixed, small number of queries, whatever the number of rows.

Extensions to Marquez's shapes are additive keys (``truncated``, ``symlinks``, ``versionLabel``,
``schemaChange``, ``parentRun``, ``codeCommit``, ``redacted``...), so Marquez clients keep working.

Redaction: an object in a namespace the caller cannot see is never rendered with its name or
facets. In graphs it becomes a placeholder ``{"id": "<kind>:<redacted>:<opaque>", "type": ...,
"data": {"redacted": true}}``; inside visible objects (a job's inputs, a run's versions, facets
that name other datasets) its identifier becomes ``{"namespace": "<redacted>", "name": <opaque>}``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import DateTimeField, Func, Model

from lineage.access import REDACTED, Visibility, opaque_id, redacted_node_id
from lineage.graph import (
    DATASET,
    DECLARED,
    FIELD,
    INFERRED,
    JOB,
    RUN,
    UNKNOWN,
    VERSION,
    JobIO,
    Key,
    ProvidedNode,
    Traversal,
    consumed_inputs,
    job_io,
    latest_runs_at,
    node_kinds,
    produced_outputs,
    versions_at,
)
from lineage.ingest.rows import bound_cursor
from lineage.models import (
    CodeCommit,
    Dataset,
    DatasetSymlink,
    DatasetVersion,
    Job,
    Namespace,
    Run,
    RunInput,
    RunOutput,
    SchemaChange,
)

JSON = dict[str, Any]


def ts(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a ``Z``, as Marquez writes timestamps."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class IsoTime(Func):
    """A datetime column as :func:`ts` writes it, formatted by PostgreSQL (``to_char``, in C)
    instead of parsed into a ``datetime`` and formatted again in Python: the graph renderers
    write thousands of timestamps per answer. Elsewhere (SQLite) it is the column itself, a
    ``datetime``; :func:`iso` takes either."""

    output_field = DateTimeField()
    template = "%(expressions)s"

    def as_postgresql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        sql, params = compiler.compile(self.source_expressions[0])
        return pg_iso(sql), [*params, *params, *params]


_WHOLE_SECONDS = """'YYYY-MM-DD"T"HH24:MI:SS"Z"'"""
_MICROSECONDS = """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""


def pg_iso(column: str) -> str:
    """PostgreSQL expression writing the timestamptz ``column`` as :func:`ts` does (``column``
    appears three times in it)."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    # isoformat() leaves out a zero fraction of a second, and writes six digits otherwise.
    pattern = f"CASE WHEN date_trunc('second', {utc}) = {utc} THEN {_WHOLE_SECONDS} ELSE {_MICROSECONDS} END"
    return f"to_char({utc}, {pattern})"


def iso(value: str | datetime | None) -> str | None:
    """A value of an :class:`IsoTime` column (or any datetime) as :func:`ts` writes it."""
    if value is None or isinstance(value, str):
        return value
    return ts(value)


# --- hot-path statements -------------------------------------------------------------------------------
#
# The graph renderers run a handful of bulk reads per answer. On PostgreSQL they are plain SQL
# with one array parameter (``= ANY(%s::bigint[])``, the array written as text): compiling the
# equivalent ORM query, with its ``IN (%s, ...)`` list, costs several times more than running it.
# Each returns the same rows, in the same column order, as the ORM query used elsewhere.


def _on_postgresql() -> bool:
    return bool(connection.vendor == "postgresql")


def _table(model: type[Model]) -> str:
    return str(model._meta.db_table)


def _pg_fetch(sql: str, ids: Iterable[int]) -> list[tuple[Any, ...]]:
    # Parameters bound server-side: the statement is prepared once per connection and never
    # planned again (planning these joins cost more than running them).
    with bound_cursor(connection) as cursor:
        cursor.execute(sql, ["{" + ",".join(str(int(pk)) for pk in ids) + "}"])
        return cursor.fetchall()


def _pg_fetch_many(*statements: tuple[str, Iterable[int]]) -> list[list[tuple[Any, ...]]]:
    """The rows of several :func:`_pg_statements`, each with its ids: one prepared statement each
    (a multi-statement round trip cannot be prepared, and planning cost more than the trips)."""
    sqls = _pg_statements()
    return [_pg_fetch(sqls[name], ids) for name, ids in statements]


def _json_column(model: type[Model], name: str) -> Any:
    """The model field's own decoding of a JSON column fetched as text by raw SQL (an empty
    object or array, the common case for facets and tags, without the decoder)."""
    field = model._meta.get_field(name)

    def decode(text: Any) -> Any:
        if text == "{}":
            return {}
        if text == "[]":
            return []
        return field.from_db_value(text, None, connection)  # type: ignore[union-attr]

    return decode


@cache
def _pg_statements() -> dict[str, str]:
    dataset, namespace, version = _table(Dataset), _table(Namespace), _table(DatasetVersion)
    job, run = _table(Job), _table(Run)
    run_input, run_output = _table(RunInput), _table(RunOutput)
    return {
        "datasets": f"""
            SELECT d.id, d.namespace_id, n.name, d.name, d.type, d.physical_name, d.source_name,
                   d.description, d.fields, d.tags, d.is_deleted, d.lifecycle_state,
                   v.uuid, v.run_id, {pg_iso("v.created_at")}, {pg_iso("d.created_at")}, {pg_iso("d.updated_at")}
            FROM {dataset} d
            JOIN {namespace} n ON n.id = d.namespace_id
            LEFT JOIN {version} v ON v.id = d.current_version_id
            WHERE d.id = ANY(%s::bigint[])""",
        "jobs": f"""
            SELECT j.id, j.namespace_id, n.name, j.name, j.type, j.description, j.location,
                   j.latest_run_id, j.parent_id, p.name, p.namespace_id,
                   {pg_iso("j.created_at")}, {pg_iso("j.updated_at")}
            FROM {job} j
            JOIN {namespace} n ON n.id = j.namespace_id
            LEFT JOIN {job} p ON p.id = j.parent_id
            WHERE j.id = ANY(%s::bigint[])""",
        "runs": f"""
            SELECT r.id, r.run_id, r.state, n.name, j.name, r.parent_id, r.parent_run_id,
                   r.parent_job_namespace, r.parent_job_name, r.code_commit_id,
                   {pg_iso("r.created_at")}, {pg_iso("r.updated_at")}, {pg_iso("r.nominal_start_time")},
                   {pg_iso("r.nominal_end_time")}, {pg_iso("r.started_at")}, {pg_iso("r.ended_at")}, r.facets
            FROM {run} r
            JOIN {job} j ON j.id = r.job_id
            JOIN {namespace} n ON n.id = j.namespace_id
            WHERE r.id = ANY(%s::bigint[])""",
        # lineage.graph.consumed_inputs: the declared version, else the dataset's newest version
        # when the run started that the run did not write itself.
        "inputs": f"""
            SELECT i.run_id, i.dataset_id, d.namespace_id, n.name, d.name, declared.uuid,
                   CASE WHEN i.version_id IS NULL THEN (
                       SELECT v.uuid FROM {version} v
                       WHERE v.created_at <= r.first_event_time AND v.dataset_id = i.dataset_id
                         AND NOT (v.run_id = i.run_id AND v.run_id IS NOT NULL)
                       ORDER BY v.created_at DESC, v.uuid DESC LIMIT 1
                   ) END,
                   i.facets
            FROM {run_input} i
            JOIN {run} r ON r.id = i.run_id
            JOIN {dataset} d ON d.id = i.dataset_id
            JOIN {namespace} n ON n.id = d.namespace_id
            LEFT JOIN {version} declared ON declared.id = i.version_id
            WHERE i.run_id = ANY(%s::bigint[])
            ORDER BY i.run_id, i.dataset_id""",
        "outputs": f"""
            SELECT o.run_id, o.dataset_id, d.namespace_id, n.name, d.name, v.uuid, o.facets
            FROM {run_output} o
            JOIN {dataset} d ON d.id = o.dataset_id
            JOIN {namespace} n ON n.id = d.namespace_id
            JOIN {version} v ON v.id = o.version_id
            WHERE o.run_id = ANY(%s::bigint[])
            ORDER BY o.run_id, o.dataset_id""",
    }


# --- redaction of identifiers inside visible objects -------------------------------------------------


class Redactor:
    """Hides identifiers of invisible namespaces inside JSON that is otherwise visible."""

    def __init__(self, visibility: Visibility) -> None:
        self.visibility = visibility
        self.active = not visibility.unrestricted
        """Whether anything is hidden from the caller at all."""
        self._names: dict[str, bool] = {}

    def sees_name(self, namespace: str) -> bool:
        if not self.active:
            return True
        if namespace not in self._names:
            pk = Namespace.objects.filter(name=namespace).values_list("pk", flat=True).first()
            self._names[namespace] = self.visibility.sees(pk)
        return self._names[namespace]

    def prime(self, names: Iterable[str]) -> None:
        """Look up many namespace names in one query."""
        if not self.active:
            return
        wanted = sorted(set(names) - self._names.keys())
        if not wanted:
            return
        found = dict(Namespace.objects.filter(name__in=wanted).values_list("name", "pk"))
        for name in wanted:
            self._names[name] = self.visibility.sees(found.get(name))

    def identifier(self, kind: str, pk: int, namespace_id: int, namespace: str, name: str) -> JSON:
        if self.visibility.sees(namespace_id):
            return {"namespace": namespace, "name": name}
        return {"namespace": REDACTED, "name": opaque_id(kind, pk)}

    def scrub(self, value: Any) -> Any:
        """``value`` with every ``{"namespace": ..., "name": ...}`` of a hidden namespace replaced."""
        if not self.active:
            return value
        self.prime(_mentioned_namespaces(value))
        return self._scrub(value)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, dict):
            ns = value.get("namespace")
            if isinstance(ns, str) and "name" in value and not self.sees_name(ns):
                return {"namespace": REDACTED, "name": REDACTED}
            return {key: self._scrub(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._scrub(item) for item in value]
        return value


def _mentioned_namespaces(value: Any) -> set[str]:
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ns = item.get("namespace")
            if isinstance(ns, str):
                found.add(ns)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


# --- namespaces -------------------------------------------------------------------------------------


def namespace_json(ns: Namespace) -> JSON:
    return {
        "name": ns.name,
        "createdAt": ts(ns.created_at),
        "updatedAt": ts(ns.updated_at),
        "ownerName": ns.owner_name or "anonymous",
        "description": ns.description or None,
        "isHidden": False,
    }


# --- runs ------------------------------------------------------------------------------------------


def _duration_ms(run: Run) -> int | None:
    if run.started_at is None or run.ended_at is None:
        return None
    return max(0, int((run.ended_at - run.started_at).total_seconds() * 1000))


def commit_json(commit: CodeCommit | None) -> JSON | None:
    if commit is None:
        return None
    return {
        "repoUrl": commit.repo_url,
        "sha": commit.sha,
        "type": commit.vcs_type,
        "branch": commit.branch or None,
        "tag": commit.tag or None,
        "path": commit.path or None,
        "url": commit.url or None,
        "author": commit.author or None,
        "dirty": commit.is_dirty,
        "diffDigest": commit.diff_digest or None,
        "firstSeenAt": ts(commit.first_seen_at),
    }


@dataclass(slots=True)
class RunRow:
    """What :func:`runs_json` renders of a run: from a ``Run`` (:meth:`of`) or from plain column
    values (:func:`run_rows`), timestamps already written as :func:`ts` writes them."""

    pk: int
    run_id: str
    state: str
    job_namespace: str
    job_name: str
    parent_id: int | None
    parent_run_id: str
    parent_job_namespace: str
    parent_job_name: str
    code_commit: CodeCommit | None
    facets: Any
    created_at: str | None
    updated_at: str | None
    nominal_start_time: str | None
    nominal_end_time: str | None
    started_at: str | None
    ended_at: str | None
    duration_ms: int | None

    @classmethod
    def of(cls, run: Run) -> RunRow:
        """``run`` must have ``job__namespace`` and ``code_commit`` selected."""
        return cls(
            pk=run.pk,
            run_id=run.run_id,
            state=run.state,
            job_namespace=run.job.namespace.name,
            job_name=run.job.name,
            parent_id=run.parent_id,
            parent_run_id=run.parent_run_id,
            parent_job_namespace=run.parent_job_namespace,
            parent_job_name=run.parent_job_name,
            code_commit=run.code_commit,
            facets=run.facets,
            created_at=ts(run.created_at),
            updated_at=ts(run.updated_at),
            nominal_start_time=ts(run.nominal_start_time),
            nominal_end_time=ts(run.nominal_end_time),
            started_at=ts(run.started_at),
            ended_at=ts(run.ended_at),
            duration_ms=_duration_ms(run),
        )


def run_rows(pks: Iterable[int], *, facets: bool = True) -> dict[int, RunRow]:
    """:class:`RunRow` of the runs with these primary keys, read as plain values (no model
    instances, timestamps formatted by the database where it can), by primary key. Two queries
    (one when no run has a code commit)."""
    wanted = sorted(set(pks))
    if not wanted:
        return {}
    columns = [
        "pk",
        "run_id",
        "state",
        "job__namespace__name",
        "job__name",
        "parent_id",
        "parent_run_id",
        "parent_job_namespace",
        "parent_job_name",
        "code_commit_id",
    ]
    if _on_postgresql():
        return _pg_run_rows(_pg_fetch(_pg_statements()["runs"], wanted), facets)
    else:
        rows = list(
            Run.objects.filter(pk__in=wanted)
            .order_by()
            .values_list(
                *columns,
                IsoTime("created_at"),
                IsoTime("updated_at"),
                IsoTime("nominal_start_time"),
                IsoTime("nominal_end_time"),
                IsoTime("started_at"),
                IsoTime("ended_at"),
                *(["facets"] if facets else []),
            )
        )
    return _run_rows_of(rows, facets)


def _pg_run_rows(rows: list[tuple[Any, ...]], facets: bool) -> dict[int, RunRow]:
    """:class:`RunRow` s of rows of the ``runs`` statement."""
    if facets:
        decode = _json_column(Run, "facets")
        rows = [(*row[:16], decode(row[16])) for row in rows]
    return _run_rows_of(rows, facets)


def _pg_runs_with_io(pks: Iterable[int]) -> tuple[dict[int, RunRow], list[RunIO], list[RunOut]]:
    """On PostgreSQL: :func:`run_rows` of the runs with their inputs and outputs
    (:func:`_run_inputs`, :func:`_run_outputs`), in one round trip."""
    wanted = sorted(set(pks))
    if not wanted:
        return {}, [], []
    runs, inputs, outputs = _pg_fetch_many(("runs", wanted), ("inputs", wanted), ("outputs", wanted))
    return _pg_run_rows(runs, True), _pg_inputs(inputs), _pg_outputs(outputs)


def _run_rows_of(rows: Iterable[tuple[Any, ...]], facets: bool) -> dict[int, RunRow]:
    rows = list(rows)
    commit_ids = sorted({row[9] for row in rows if row[9] is not None})
    commits = CodeCommit.objects.in_bulk(commit_ids) if commit_ids else {}
    out = {}
    for row in rows:
        started, ended = iso(row[14]), iso(row[15])
        duration = None
        if started is not None and ended is not None:
            delta = datetime.fromisoformat(ended) - datetime.fromisoformat(started)
            duration = max(0, int(delta.total_seconds() * 1000))
        out[row[0]] = RunRow(
            pk=row[0],
            run_id=row[1],
            state=row[2],
            job_namespace=row[3],
            job_name=row[4],
            parent_id=row[5],
            parent_run_id=row[6],
            parent_job_namespace=row[7],
            parent_job_name=row[8],
            code_commit=commits.get(row[9]) if row[9] is not None else None,
            facets=row[16] if facets else {},
            created_at=iso(row[10]),
            updated_at=iso(row[11]),
            nominal_start_time=iso(row[12]),
            nominal_end_time=iso(row[13]),
            started_at=started,
            ended_at=ended,
            duration_ms=duration,
        )
    return out


RunIO = tuple[int, int, int, str, str, Any, str, Any]
"""``(run_id, dataset_id, namespace_id, namespace, dataset name, version uuid or None,
resolution, facets)`` of a run input."""


def _run_inputs(run_ids: Sequence[int]) -> list[RunIO]:
    """The inputs of the runs (:func:`lineage.graph.consumed_inputs`), with their datasets'
    names and the versions' uuids, ordered by run and dataset."""
    if _on_postgresql():
        return _pg_inputs(_pg_fetch(_pg_statements()["inputs"], run_ids))
    inputs, _ = consumed_inputs(run_ids)
    datasets = _dataset_names({item.dataset_id for item in inputs})
    versions = _version_uuids({item.version_id for item in inputs if item.version_id})
    return [
        (
            item.run_id,
            item.dataset_id,
            *datasets[item.dataset_id],
            versions[item.version_id] if item.version_id else None,
            item.resolution,
            item.facets,
        )
        for item in inputs
    ]


def _pg_inputs(rows: list[tuple[Any, ...]]) -> list[RunIO]:
    """:data:`RunIO` s of rows of the ``inputs`` statement."""
    decode = _json_column(RunInput, "facets")
    out = []
    for run_id, dataset_id, ns_id, ns, name, declared, inferred, facets in rows:
        if declared is not None:
            version, resolution = declared, DECLARED
        elif inferred is not None:
            version, resolution = inferred, INFERRED
        else:
            version, resolution = None, UNKNOWN
        out.append((run_id, dataset_id, ns_id, ns, name, version, resolution, decode(facets)))
    return out


RunOut = tuple[int, int, int, str, str, Any, Any]
"""``(run_id, dataset_id, namespace_id, namespace, dataset name, version uuid, facets)`` of a run
output."""


def _pg_outputs(rows: list[tuple[Any, ...]]) -> list[RunOut]:
    decode = _json_column(RunOutput, "facets")
    return [(*row[:6], decode(row[6])) for row in rows]


def _run_outputs(run_ids: Sequence[int]) -> list[RunOut]:
    """What the runs wrote (:func:`lineage.graph.produced_outputs`), ordered by run and dataset."""
    if _on_postgresql():
        return _pg_outputs(_pg_fetch(_pg_statements()["outputs"], run_ids))
    outputs, _ = produced_outputs(run_ids)
    datasets = _dataset_names({row[1] for row in outputs})
    versions = _version_uuids({row[2] for row in outputs})
    return [(run_id, pk, *datasets[pk], versions[version_id], facets) for run_id, pk, version_id, facets in outputs]


def _dataset_names(pks: Iterable[int]) -> dict[int, tuple[int, str, str]]:
    rows = Dataset.objects.filter(pk__in=sorted(pks)).values_list("pk", "namespace_id", "namespace__name", "name")
    return {pk: (ns_id, ns, name) for pk, ns_id, ns, name in rows}


def _version_uuids(pks: Iterable[int]) -> dict[int, Any]:
    return dict(DatasetVersion.objects.filter(pk__in=sorted(pks)).values_list("pk", "uuid"))


def runs_json(runs: Sequence[Run], redactor: Redactor, *, facets: bool = True) -> list[JSON]:
    """Marquez ``Run`` objects, with the dataset versions each run consumed and produced.

    ``runs`` must have ``job__namespace`` and ``code_commit`` selected. Four queries in all.
    """
    return render_runs([RunRow.of(run) for run in runs], redactor, facets=facets)


def render_runs(
    runs: Sequence[RunRow],
    redactor: Redactor,
    *,
    facets: bool = True,
    io: tuple[list[RunIO], list[RunOut]] | None = None,
) -> list[JSON]:
    """:func:`runs_json` of :class:`RunRow` s, with their inputs and outputs (read here unless
    given, as :func:`_run_inputs` and :func:`_run_outputs` return them, for these runs or more).
    Four queries in all."""
    if not runs:
        return []
    ids = [run.pk for run in runs]
    inputs, outputs = io if io is not None else (_run_inputs(ids), _run_outputs(ids))
    if io is not None:
        wanted = set(ids)
        inputs = [row for row in inputs if row[0] in wanted]
        outputs = [row for row in outputs if row[0] in wanted]
    by_run_in: dict[int, list[JSON]] = defaultdict(list)
    by_run_out: dict[int, list[JSON]] = defaultdict(list)
    sees = redactor.visibility.sees
    for run_id, dataset_id, ns_id, ns, name, version, resolution, io_facets in inputs:
        entry: JSON = {
            "datasetVersionId": {"namespace": ns, "name": name, "version": str(version) if version else None},
            "facets": redactor.scrub(io_facets),
            "resolution": resolution,
        }
        if not sees(ns_id):
            ref = {**redactor.identifier(DATASET, dataset_id, ns_id, ns, name), "version": None}
            entry = {"datasetVersionId": ref, "facets": {}, "redacted": True}
        by_run_in[run_id].append(entry)
    for run_id, dataset_id, ns_id, ns, name, version, io_facets in outputs:
        entry = {
            "datasetVersionId": {"namespace": ns, "name": name, "version": str(version)},
            "facets": redactor.scrub(io_facets),
        }
        if not sees(ns_id):
            ref = {**redactor.identifier(DATASET, dataset_id, ns_id, ns, name), "version": None}
            entry = {"datasetVersionId": ref, "facets": {}, "redacted": True}
        by_run_out[run_id].append(entry)
    parent_ids = sorted({run.parent_id for run in runs if run.parent_id is not None})
    parents: dict[int, tuple[str, int, str, str]] = {}
    if parent_ids:
        for pk, parent_run_id, ns_id, ns, name in Run.objects.filter(pk__in=parent_ids).values_list(
            "pk", "run_id", "job__namespace_id", "job__namespace__name", "job__name"
        ):
            parents[pk] = (parent_run_id, ns_id, ns, name)
    rendered = []
    for run in runs:
        data: JSON = {
            "id": run.run_id,
            "createdAt": run.created_at,
            "updatedAt": run.updated_at,
            "nominalStartTime": run.nominal_start_time,
            "nominalEndTime": run.nominal_end_time,
            "state": run.state,
            "startedAt": run.started_at,
            "endedAt": run.ended_at,
            "durationMs": run.duration_ms,
            "args": {},
            "jobVersion": {"namespace": run.job_namespace, "name": run.job_name},
            "inputDatasetVersions": by_run_in.get(run.pk, []),
            "outputDatasetVersions": by_run_out.get(run.pk, []),
            "context": {},
            "parentRun": _parent_json(run, parents, redactor),
            "codeCommit": commit_json(run.code_commit),
        }
        if facets:
            data["facets"] = redactor.scrub(run.facets)
        rendered.append(data)
    return rendered


def _parent_json(run: RunRow, parents: dict[int, tuple[str, int, str, str]], redactor: Redactor) -> JSON | None:
    if run.parent_id is not None and run.parent_id in parents:
        run_id, ns_id, ns, name = parents[run.parent_id]
        if not redactor.visibility.sees(ns_id):
            return {"id": opaque_id(RUN, run.parent_id), "redacted": True}
        return {"id": run_id, "job": {"namespace": ns, "name": name}}
    if run.parent_run_id:
        if run.parent_job_namespace and not redactor.sees_name(run.parent_job_namespace):
            return {"id": REDACTED, "redacted": True}
        job = {"namespace": run.parent_job_namespace, "name": run.parent_job_name} if run.parent_job_name else None
        return {"id": run.parent_run_id, "job": job}
    return None


RUN_RELATED = ("job__namespace", "code_commit")
"""What run querysets handed to :func:`runs_json` must ``select_related``."""


# --- datasets ----------------------------------------------------------------------------------------


def _fields(fields: Any, *, copy: bool = True) -> list[JSON]:
    """Marquez ``Field`` objects; ``copy=False`` completes the given dicts in place (for values
    decoded for this answer only)."""
    out = []
    for item in fields or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            entry = dict(item) if copy else item
            if "type" not in entry:
                entry["type"] = ""
            if "tags" not in entry:
                entry["tags"] = []
            out.append(entry)
    return out


def datasets_json(
    datasets: Sequence[Dataset],
    redactor: Redactor,
    *,
    as_of: datetime | None = None,
    facets: bool = True,
    symlinks: bool = True,
) -> list[JSON]:
    """Marquez ``Dataset`` objects (``namespace`` and ``current_version`` selected). As of an
    instant: fields from the newest version with a schema then, current version then, that
    version's facets."""
    if not datasets:
        return []
    ids = [ds.pk for ds in datasets]
    at = versions_at(ids, as_of) if as_of is not None else {}
    links: dict[int, list[JSON]] = defaultdict(list)
    if symlinks:
        for dataset_id, ns, name, kind in DatasetSymlink.objects.filter(dataset_id__in=ids).values_list(
            "dataset_id", "namespace", "name", "type"
        ):
            links[dataset_id].append({"namespace": ns, "name": name, "type": kind})
    rendered = []
    for ds in datasets:
        ns = ds.namespace.name
        current = ds.current_version
        fields, updated, lifecycle = ds.fields, ds.updated_at, ds.lifecycle_state
        # Facets may be deferred (graph nodes omit them): touch them only when rendering them.
        ds_facets: Any = ds.facets if facets else {}
        description, deleted = ds.description, ds.is_deleted
        if as_of is not None and ds.updated_at > as_of:
            # Changed since: rebuild what was known at the instant from versions and facet times.
            # (When nothing changed after it, the current state *is* the state then.)
            current, with_schema = at.get(ds.pk, (None, None))
            fields, ds_facets = _dataset_at(ds, as_of, current, with_schema, facets)
            updated = max(current.created_at if current is not None else ds.created_at, ds.created_at)
            lifecycle = current.lifecycle_state if current is not None else ""
            documentation = ds_facets.get("documentation") if isinstance(ds_facets, dict) else None
            description = ""
            if isinstance(documentation, dict) and isinstance(documentation.get("description"), str):
                description = documentation["description"]
            deleted = lifecycle == "DROP"
        data: JSON = {
            "id": {"namespace": ns, "name": ds.name},
            "type": ds.type,
            "name": ds.name,
            "physicalName": ds.physical_name or ds.name,
            "createdAt": ts(ds.created_at),
            "updatedAt": ts(updated),
            "namespace": ns,
            "sourceName": ds.source_name or ns,
            "fields": _fields(fields),
            "tags": list(ds.tags or []),
            "lastModifiedAt": ts(current.created_at) if current is not None and current.run_id else None,
            "lastLifecycleState": lifecycle or None,
            "description": description or None,
            "currentVersion": str(current.uuid) if current is not None else None,
            "deleted": deleted,
        }
        if facets:
            data["facets"] = redactor.scrub(ds_facets)
        if symlinks:
            data["symlinks"] = redactor.scrub(links.get(ds.pk, []))
        rendered.append(data)
    return rendered


def _facet_time(times: Any, key: str) -> datetime | None:
    raw = times.get(key) if isinstance(times, dict) else None
    try:
        return datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def _dataset_at(
    ds: Dataset,
    as_of: datetime,
    current: DatasetVersion | None,
    with_schema: DatasetVersion | None,
    facets: bool,
) -> tuple[list[Any], dict[str, Any]]:
    """Fields and facets of a dataset as known at ``as_of``: the newer of the newest schema version
    then and the dataset's own schema facet if it was reported by then; facets reported by then,
    overlaid with those of the version current then (a facet overwritten since is unknown)."""
    fields: list[Any] = []
    fields_time: datetime | None = None
    if with_schema is not None:
        fields, fields_time = with_schema.fields, with_schema.created_at
    schema_time = _facet_time(ds.facet_times, "schema")
    if schema_time is not None and schema_time <= as_of and (fields_time is None or schema_time > fields_time):
        fields = ds.fields
    known: dict[str, Any] = {}
    if facets:
        known = {
            key: value
            for key, value in (ds.facets or {}).items()
            if (stamp := _facet_time(ds.facet_times, key)) is not None and stamp <= as_of
        }
    if current is not None and isinstance(current.facets, dict):
        known.update(current.facets)
    return fields, known


def dataset_versions_json(
    versions: Sequence[DatasetVersion], redactor: Redactor, *, with_runs: bool = True
) -> list[JSON]:
    """Marquez ``DatasetVersion`` objects (``dataset__namespace`` selected), each with the run that
    created it (``createdByRun``, unless ``with_runs`` is false) and the schema change it brought."""
    if not versions:
        return []
    changes = {
        change.to_version_id: change
        for change in SchemaChange.objects.filter(to_version_id__in=[v.pk for v in versions])
    }
    run_ids = sorted({v.run_id for v in versions if v.run_id})
    runs: dict[int, JSON] = {}
    producers: dict[int, tuple[str, int]] = {}
    if run_ids:
        rows = list(Run.objects.filter(pk__in=run_ids).select_related(*RUN_RELATED))
        producers = {run.pk: (run.run_id, run.job.namespace_id) for run in rows}
        if with_runs:
            visible = [run for run in rows if redactor.visibility.sees(run.job.namespace_id)]
            runs = {run.pk: data for run, data in zip(visible, runs_json(visible, redactor), strict=True)}
    rendered = []
    for version in versions:
        dataset = version.dataset
        ns = dataset.namespace.name
        change = changes.get(version.pk)
        producer = producers.get(version.run_id) if version.run_id else None
        data: JSON = {
            "id": {"namespace": ns, "name": dataset.name, "version": str(version.uuid)},
            "type": dataset.type,
            "name": dataset.name,
            "physicalName": dataset.physical_name or dataset.name,
            "createdAt": ts(version.created_at),
            "version": str(version.uuid),
            "versionLabel": version.version,
            "namespace": ns,
            "sourceName": dataset.source_name or ns,
            "fields": _fields(version.fields),
            "tags": list(dataset.tags or []),
            "lifecycleState": version.lifecycle_state or None,
            "description": dataset.description or "",
            "createdByRunId": None,
            "facets": redactor.scrub(version.facets),
            "schemaChange": (
                {"level": change.level, "explanation": change.explanation, "changes": change.changes}
                if change is not None
                else None
            ),
        }
        if producer is not None:
            run_id, ns_id = producer
            data["createdByRunId"] = run_id if redactor.visibility.sees(ns_id) else opaque_id(RUN, version.run_id or 0)
        if with_runs:
            data["createdByRun"] = runs.get(version.run_id or 0)
        rendered.append(data)
    return rendered


# --- jobs ---------------------------------------------------------------------------------------------


def _simple_name(job: Job) -> str:
    parent = job.parent
    if parent is not None and job.name.startswith(parent.name + ".") and len(job.name) > len(parent.name) + 1:
        return job.name[len(parent.name) + 1 :]
    return job.name


def jobs_json(
    jobs: Sequence[Job],
    redactor: Redactor,
    *,
    as_of: datetime | None = None,
    per_job: int = 100,
    latest_runs: int = 0,
    io: dict[int, JobIO] | None = None,
    facets: bool = True,
) -> list[JSON]:
    """Marquez ``Job`` objects (``namespace`` and ``parent`` selected): inputs and outputs from the
    job's current edges, or the edges valid ``as_of``; ``latestRun`` then. ``latestRuns`` (the
    newest ``latest_runs`` runs) only when asked, for details."""
    if not jobs:
        return []
    ids = [job.pk for job in jobs]
    edges = io if io is not None else job_io(ids, as_of, per_job)
    if as_of is None:
        latest = {job.pk: job.latest_run_id for job in jobs if job.latest_run_id}
    else:
        latest = latest_runs_at(ids, as_of)
    run_rows = {
        run.pk: run for run in Run.objects.filter(pk__in=sorted(set(latest.values()))).select_related(*RUN_RELATED)
    }
    recent: dict[int, list[Run]] = defaultdict(list)
    if latest_runs:
        for job in jobs:
            runs = Run.objects.filter(job=job).select_related(*RUN_RELATED)
            if as_of is not None:
                runs = runs.filter(first_event_time__lte=as_of)
            recent[job.pk] = list(runs.order_by("-first_event_time", "-id")[:latest_runs])
    every_run = list({run.pk: run for run in [*run_rows.values(), *(r for rs in recent.values() for r in rs)]}.values())
    rendered_runs = dict(zip([run.pk for run in every_run], runs_json(every_run, redactor), strict=True))
    rendered = []
    for job in jobs:
        ns = job.namespace.name
        job_edges = edges.get(job.pk, JobIO())
        parent = job.parent
        parent_name = None
        if parent is not None and redactor.visibility.sees(parent.namespace_id):
            parent_name = parent.name
        data: JSON = {
            "id": {"namespace": ns, "name": job.name},
            "type": job.type,
            "name": job.name,
            "simpleName": _simple_name(job),
            "parentJobName": parent_name,
            "createdAt": ts(job.created_at),
            "updatedAt": ts(job.updated_at),
            "namespace": ns,
            "inputs": [redactor.identifier(DATASET, ref[2], ref[0], ref[1], ref[3]) for ref in job_edges.inputs],
            "outputs": [redactor.identifier(DATASET, ref[2], ref[0], ref[1], ref[3]) for ref in job_edges.outputs],
            "location": job.location or None,
            "context": {},
            "description": job.description or None,
            "latestRun": rendered_runs.get(latest.get(job.pk, 0)),
        }
        if job_edges.truncated:
            data["ioTruncated"] = True
        if latest_runs:
            data["latestRuns"] = [rendered_runs[run.pk] for run in recent.get(job.pk, [])]
        if facets:
            job_facets = job.facets
            if as_of is not None and job.updated_at > as_of:  # only what had been reported by then
                job_facets = {
                    key: value
                    for key, value in (job.facets or {}).items()
                    if (stamp := _facet_time(job.facet_times, key)) is not None and stamp <= as_of
                }
            data["facets"] = redactor.scrub(job_facets)
        rendered.append(data)
    return rendered


# --- graphs -------------------------------------------------------------------------------------------

_NODE_TYPES = {DATASET: "DATASET", JOB: "JOB", RUN: "RUN", VERSION: "DATASET_VERSION", FIELD: "DATASET_FIELD"}


def _node_type(kind: str) -> str:
    if kind in _NODE_TYPES:
        return _NODE_TYPES[kind]
    provided = node_kinds().get(kind)
    return provided.type if provided is not None else kind.upper()


def _placeholder(kind: str, node_id: str) -> JSON:
    return {"id": node_id, "type": _node_type(kind), "data": {"redacted": True}, "inEdges": [], "outEdges": []}


def _attach_edges(nodes: dict[Key, JSON], traversal: Traversal, extra: Any = None) -> list[JSON]:
    for (origin, destination), attrs in traversal.edges.items():
        edge: JSON = {"origin": nodes[origin]["id"], "destination": nodes[destination]["id"]}
        if extra is not None:
            edge.update(extra(origin, destination, attrs))
        nodes[origin]["outEdges"].append(edge)
        nodes[destination]["inEdges"].append(edge)
    return [nodes[key] for key in traversal.nodes]


def lineage_graph_json(traversal: Traversal, redactor: Redactor, *, as_of: datetime | None = None) -> JSON:
    """Marquez ``LineageGraph`` of jobs and datasets, plus ``truncated``.

    Job nodes' ``inputs``/``outputs`` list the datasets of the returned graph (for all of a job's
    inputs and outputs, read the job itself).

    The data of a node is what :func:`datasets_json` and :func:`jobs_json` (without facets, with
    ``latestRun``) render, built here from plain column values instead of model instances: this
    is the hot path of the API, and building instances, parsing timestamps and decoding JSON
    columns the answer never shows cost most of its time. Datasets changed after ``as_of`` go
    through :func:`datasets_json` itself."""
    dataset_pks, job_pks = traversal.kinds(DATASET), traversal.kinds(JOB)
    raw: list[list[tuple[Any, ...]]] | list[None] = [None, None]
    if _on_postgresql() and dataset_pks and job_pks:
        raw = _pg_fetch_many(("datasets", dataset_pks), ("jobs", job_pks))
    datasets = _graph_datasets(dataset_pks, redactor, as_of, raw[0])
    jobs = _graph_jobs(traversal, datasets, redactor, as_of, raw[1])
    nodes: dict[Key, JSON] = {}
    for key in traversal.nodes:
        kind, pk = key
        found = datasets.get(pk) if kind == DATASET else jobs.get(pk) if kind == JOB else None
        if found is not None and found[3] is not None:
            node_id = f"{kind}:{found[1]}:{found[2]}"
            node_type = "DATASET" if kind == DATASET else "JOB"
            nodes[key] = {"id": node_id, "type": node_type, "data": found[3], "inEdges": [], "outEdges": []}
        else:
            nodes[key] = _placeholder(kind, redacted_node_id(kind, pk))
    return {"graph": _attach_edges(nodes, traversal), "truncated": traversal.truncated}


GraphRow = tuple[int, str, str, JSON | None]
"""``(namespace_id, namespace name, name, data)`` of a graph node; ``data`` None when hidden."""


def _graph_datasets(
    pks: Sequence[int], redactor: Redactor, as_of: datetime | None, raw: list[tuple[Any, ...]] | None = None
) -> dict[int, GraphRow]:
    """:func:`datasets_json` (no facets, no symlinks) of the datasets, by primary key. One query
    (none when ``raw`` has the rows of the ``datasets`` statement already), plus those of
    :func:`datasets_json` for datasets changed after ``as_of``."""
    if not pks:
        return {}
    visibility = redactor.visibility
    rows: Iterable[tuple[Any, ...]]
    if raw is not None or _on_postgresql():
        decode_fields, decode_tags = _json_column(Dataset, "fields"), _json_column(Dataset, "tags")
        rows = [
            (*row[:8], decode_fields(row[8]), decode_tags(row[9]), *row[10:])
            for row in (raw if raw is not None else _pg_fetch(_pg_statements()["datasets"], pks))
        ]
    else:
        rows = (
            Dataset.objects.filter(pk__in=pks)
            .order_by()
            .values_list(
                "pk",
                "namespace_id",
                "namespace__name",
                "name",
                "type",
                "physical_name",
                "source_name",
                "description",
                "fields",
                "tags",
                "is_deleted",
                "lifecycle_state",
                "current_version__uuid",
                "current_version__run_id",
                IsoTime("current_version__created_at"),
                IsoTime("created_at"),
                IsoTime("updated_at"),
            )
        )
    out: dict[int, GraphRow] = {}
    changed: list[int] = []
    for row in rows:
        pk, ns_id, ns, name = row[0], row[1], row[2], row[3]
        if not visibility.sees(ns_id):
            out[pk] = (ns_id, ns, name, None)
            continue
        updated = iso(row[16])
        if as_of is not None and updated is not None and datetime.fromisoformat(updated) > as_of:
            changed.append(pk)
            out[pk] = (ns_id, ns, name, None)
            continue
        version_uuid = row[12]
        out[pk] = (
            ns_id,
            ns,
            name,
            {
                "id": {"namespace": ns, "name": name},
                "type": row[4],
                "name": name,
                "physicalName": row[5] or name,
                "createdAt": iso(row[15]),
                "updatedAt": updated,
                "namespace": ns,
                "sourceName": row[6] or ns,
                "fields": _fields(row[8], copy=False),
                "tags": list(row[9] or []),
                "lastModifiedAt": iso(row[14]) if version_uuid is not None and row[13] else None,
                "lastLifecycleState": row[11] or None,
                "description": row[7] or None,
                "currentVersion": str(version_uuid) if version_uuid is not None else None,
                "deleted": row[10],
            },
        )
    if changed:
        instances = list(
            Dataset.objects.filter(pk__in=changed)
            .order_by()
            .select_related("namespace", "current_version")
            .defer("facets", "current_version__facets", "current_version__facet_times")
        )
        for ds, data in zip(
            instances, datasets_json(instances, redactor, as_of=as_of, facets=False, symlinks=False), strict=True
        ):
            out[ds.pk] = (ds.namespace_id, ds.namespace.name, ds.name, data)
    return out


def _graph_jobs(
    traversal: Traversal,
    datasets: dict[int, GraphRow],
    redactor: Redactor,
    as_of: datetime | None,
    raw: list[tuple[Any, ...]] | None = None,
) -> dict[int, GraphRow]:
    """:func:`jobs_json` (no facets; ``inputs``/``outputs`` those in the traversal) of the jobs
    of the traversal, by primary key. One query (none when ``raw`` has the rows of the ``jobs``
    statement already), plus those of the latest runs (one round trip on PostgreSQL)."""
    pks = traversal.kinds(JOB)
    if not pks:
        return {}
    visibility = redactor.visibility
    if raw is not None:
        rows = raw
    elif _on_postgresql():
        rows = _pg_fetch(_pg_statements()["jobs"], pks)
    else:
        rows = list(
            Job.objects.filter(pk__in=pks)
            .order_by()
            .values_list(
                "pk",
                "namespace_id",
                "namespace__name",
                "name",
                "type",
                "description",
                "location",
                "latest_run_id",
                "parent_id",
                "parent__name",
                "parent__namespace_id",
                IsoTime("created_at"),
                IsoTime("updated_at"),
            )
        )
    visible = [row[0] for row in rows if visibility.sees(row[1])]
    inputs: dict[int, list[tuple[str, str, int, int]]] = defaultdict(list)
    outputs: dict[int, list[tuple[str, str, int, int]]] = defaultdict(list)
    shown = set(visible)
    for origin, destination in traversal.edges:
        if origin[0] == DATASET and destination[0] == JOB and destination[1] in shown:
            ds = datasets.get(origin[1])
            if ds is not None:
                inputs[destination[1]].append((ds[1], ds[2], ds[0], origin[1]))
        elif origin[0] == JOB and destination[0] == DATASET and origin[1] in shown:
            ds = datasets.get(destination[1])
            if ds is not None:
                outputs[origin[1]].append((ds[1], ds[2], ds[0], destination[1]))
    if as_of is None:
        latest = {row[0]: row[7] for row in rows if row[7] and row[0] in shown}
    else:
        latest = latest_runs_at(visible, as_of)
    if _on_postgresql():
        runs, run_inputs, run_outputs = _pg_runs_with_io(latest.values())
        rendered = render_runs(list(runs.values()), redactor, io=(run_inputs, run_outputs))
    else:
        runs = run_rows(latest.values())
        rendered = render_runs(list(runs.values()), redactor)
    rendered_runs = dict(zip(runs, rendered, strict=True))

    def identifiers(refs: list[tuple[str, str, int, int]]) -> list[JSON]:
        refs.sort(key=lambda ref: (ref[0], ref[1]))
        return [redactor.identifier(DATASET, pk, ns_id, ns, name) for ns, name, ns_id, pk in refs]

    out: dict[int, GraphRow] = {}
    for row in rows:
        pk, ns_id, ns, name = row[0], row[1], row[2], row[3]
        if pk not in shown:
            out[pk] = (ns_id, ns, name, None)
            continue
        parent_name = row[9]
        simple = name
        if parent_name is not None and name.startswith(parent_name + ".") and len(name) > len(parent_name) + 1:
            simple = name[len(parent_name) + 1 :]
        out[pk] = (
            ns_id,
            ns,
            name,
            {
                "id": {"namespace": ns, "name": name},
                "type": row[4],
                "name": name,
                "simpleName": simple,
                "parentJobName": parent_name if row[8] is not None and visibility.sees(row[10]) else None,
                "createdAt": iso(row[11]),
                "updatedAt": iso(row[12]),
                "namespace": ns,
                "inputs": identifiers(inputs.get(pk, [])),
                "outputs": identifiers(outputs.get(pk, [])),
                "location": row[6] or None,
                "context": {},
                "description": row[5] or None,
                "latestRun": rendered_runs.get(latest.get(pk, 0)),
            },
        )
    return out


def column_graph_json(traversal: Traversal, redactor: Redactor) -> JSON:
    """Marquez's column-lineage ``LineageGraph``: ``DATASET_FIELD`` nodes whose ``data`` lists the
    field's ``inputFields`` (those reached by the traversal), plus ``truncated``."""
    visibility = redactor.visibility
    dataset_ids = sorted({key[1] for key in traversal.nodes})
    datasets = {
        ds.pk: ds
        for ds in Dataset.objects.filter(pk__in=dataset_ids)
        .select_related("namespace", "current_version")
        .only("pk", "name", "fields", "namespace__name", "namespace_id", "current_version__uuid")
    }

    def node_id(key: Key) -> str:
        ds = datasets[key[1]]
        if not visibility.sees(ds.namespace_id):
            return f"{FIELD}:{REDACTED}:{opaque_id(FIELD, key[1])}{opaque_id(key[2], key[1])}"
        return f"{FIELD}:{ds.namespace.name}:{ds.name}:{key[2]}"

    def version_of(ds: Dataset) -> str | None:
        return str(ds.current_version.uuid) if ds.current_version is not None else None

    inputs: dict[Key, list[tuple[Key, Any]]] = defaultdict(list)
    for (origin, destination), attrs in traversal.edges.items():
        inputs[destination].append((origin, attrs))
    nodes: dict[Key, JSON] = {}
    for key in traversal.nodes:
        ds = datasets[key[1]]
        if not visibility.sees(ds.namespace_id):
            nodes[key] = _placeholder(FIELD, node_id(key))
            continue
        field_type = next(
            (f.get("type") for f in ds.fields or [] if isinstance(f, dict) and f.get("name") == key[2]), None
        )
        sources = sorted(inputs.get(key, []), key=lambda item: node_id(item[0]))
        first = sources[0][1] if sources else {}
        input_fields = []
        for origin, attrs in sources:
            source = datasets[origin[1]]
            if not visibility.sees(source.namespace_id):
                input_fields.append({"id": node_id(origin), "redacted": True})
                continue
            input_fields.append(
                {
                    "namespace": source.namespace.name,
                    "dataset": source.name,
                    "datasetVersion": version_of(source),
                    "field": origin[2],
                    "transformationDescription": attrs.get("description") or None,
                    "transformationType": attrs.get("type") or None,
                    "transformations": redactor.scrub(attrs.get("transformations") or []),
                }
            )
        data = {
            "namespace": ds.namespace.name,
            "dataset": ds.name,
            "datasetVersion": version_of(ds),
            "field": key[2],
            "fieldType": field_type,
            "transformationDescription": first.get("description") or None,
            "transformationType": first.get("type") or None,
            "inputFields": input_fields,
        }
        nodes[key] = {"id": node_id(key), "type": "DATASET_FIELD", "data": data, "inEdges": [], "outEdges": []}
    return {"graph": _attach_edges(nodes, traversal), "truncated": traversal.truncated}


# --- version-level provenance -----------------------------------------------------------------------------


class ProvenanceRows:
    """The rows behind a version-level traversal, fetched in a handful of queries."""

    def __init__(self, traversal: Traversal, redactor: Redactor) -> None:
        self.traversal = traversal
        self.redactor = redactor
        visibility = redactor.visibility
        self.runs = {
            run.pk: run for run in Run.objects.filter(pk__in=traversal.kinds(RUN)).select_related(*RUN_RELATED)
        }
        self.versions = {
            v.pk: v
            for v in DatasetVersion.objects.filter(pk__in=traversal.kinds(VERSION))
            .select_related("dataset__namespace")
            .defer("facet_times", "dataset__facets", "dataset__facet_times")
        }
        producer_ids = sorted({v.run_id for v in self.versions.values() if v.run_id} - self.runs.keys())
        self.producers = {
            pk: (run_id, ns_id)
            for pk, run_id, ns_id in Run.objects.filter(pk__in=producer_ids).values_list(
                "pk", "run_id", "job__namespace_id"
            )
        }
        self.producers.update({pk: (run.run_id, run.job.namespace_id) for pk, run in self.runs.items()})
        self.datasets = {
            ds.pk: ds
            for ds in Dataset.objects.filter(pk__in=traversal.kinds(DATASET))
            .select_related("namespace", "current_version")
            .defer("facets", "facet_times")
        }
        visible_runs = [run for run in self.runs.values() if visibility.sees(run.job.namespace_id)]
        self.run_data = dict(zip([r.pk for r in visible_runs], runs_json(visible_runs, redactor), strict=True))
        # Nodes of kinds provided by other apps (model versions, deployments), rendered by them.
        self.provided: dict[str, dict[int, ProvidedNode]] = {}
        for kind, provider in node_kinds().items():
            pks = traversal.kinds(kind)
            if pks:
                self.provided[kind] = provider.render(pks)

    def provided_node(self, key: Key) -> ProvidedNode | None:
        rendered = self.provided.get(key[0])
        return rendered.get(key[1]) if rendered is not None else None

    def run_visible(self, pk: int) -> bool:
        run = self.runs.get(pk)
        return run is not None and self.redactor.visibility.sees(run.job.namespace_id)

    def run_id(self, pk: int | None) -> str | None:
        if pk is None or pk not in self.producers:
            return None
        run_id, ns_id = self.producers[pk]
        return run_id if self.redactor.visibility.sees(ns_id) else redacted_node_id(RUN, pk)

    def version_visible(self, pk: int) -> bool:
        version = self.versions.get(pk)
        return version is not None and self.redactor.visibility.sees(version.dataset.namespace_id)

    def visible(self, key: Key) -> bool:
        kind, pk = key
        if kind == RUN:
            return self.run_visible(pk)
        if kind == VERSION:
            return self.version_visible(pk)
        if kind == DATASET:
            return pk in self.datasets and self.redactor.visibility.sees(self.datasets[pk].namespace_id)
        provided = self.provided_node(key)
        return provided is not None and self.redactor.visibility.sees(provided.namespace_id)

    def node_id(self, key: Key) -> str:
        kind, pk = key
        if not self.visible(key):
            return redacted_node_id(kind, pk)
        if kind == RUN:
            return f"run:{self.runs[pk].run_id}"
        if kind == VERSION:
            v = self.versions[pk]
            return f"{VERSION}:{v.dataset.namespace.name}:{v.dataset.name}:{v.uuid}"
        if kind == DATASET:
            ds = self.datasets[pk]
            return f"dataset:{ds.namespace.name}:{ds.name}"
        provided = self.provided_node(key)
        assert provided is not None
        return provided.id

    def version_ref(self, key: Key, attrs: Any) -> JSON:
        """One consumed or produced dataset version, as listed in provenance."""
        kind, pk = key
        if not self.visible(key):
            return {"id": redacted_node_id(kind, pk), "redacted": True}
        provided = self.provided_node(key) if kind not in (VERSION, DATASET) else None
        if provided is not None:
            return {"id": provided.id, "type": _node_type(kind), **provided.data}
        if kind == VERSION:
            v = self.versions[pk]
            ref: JSON = {
                "namespace": v.dataset.namespace.name,
                "name": v.dataset.name,
                "version": str(v.uuid),
                "versionLabel": v.version,
                "createdAt": ts(v.created_at),
                "producedByRunId": self.run_id(v.run_id),
            }
        else:
            ds = self.datasets[pk]
            ref = {"namespace": ds.namespace.name, "name": ds.name, "version": None, "producedByRunId": None}
        if attrs and attrs.get("resolution"):
            ref["resolution"] = attrs["resolution"]
        return ref


def version_graph_json(traversal: Traversal, redactor: Redactor, *, root_run: int | None = None) -> JSON:
    """The graph around a run or a dataset version: ``RUN``, ``DATASET_VERSION`` and (inputs whose
    version is unknown) ``DATASET`` nodes, and nodes of provided kinds (model versions,
    deployments); edges carry ``type`` CONSUMED (with ``resolution``: declared or inferred),
    PRODUCED, or the provided edge's own type. The root run also gets its parent run (edge PARENT) and its
    code commit (a ``CODE_COMMIT`` node, edge EXECUTED)."""
    rows = ProvenanceRows(traversal, redactor)
    visible_versions = [rows.versions[key[1]] for key in traversal.nodes if key[0] == VERSION and rows.visible(key)]
    version_data = dict(
        zip(
            [v.pk for v in visible_versions],
            dataset_versions_json(visible_versions, redactor, with_runs=False),
            strict=True,
        )
    )
    visible_datasets = [rows.datasets[key[1]] for key in traversal.nodes if key[0] == DATASET and rows.visible(key)]
    dataset_data = dict(
        zip(
            [ds.pk for ds in visible_datasets],
            datasets_json(visible_datasets, redactor, facets=False, symlinks=False),
            strict=True,
        )
    )
    nodes: dict[Key, JSON] = {}
    for key in traversal.nodes:
        kind, pk = key
        node_id = rows.node_id(key)
        if not rows.visible(key):
            nodes[key] = _placeholder(kind, node_id)
        elif kind == RUN:
            nodes[key] = {"id": node_id, "type": "RUN", "data": rows.run_data[pk], "inEdges": [], "outEdges": []}
        elif kind == VERSION:
            data = version_data[pk]
            nodes[key] = {"id": node_id, "type": "DATASET_VERSION", "data": data, "inEdges": [], "outEdges": []}
        elif kind == DATASET:
            data = dataset_data[pk]
            nodes[key] = {"id": node_id, "type": "DATASET", "data": data, "inEdges": [], "outEdges": []}
        else:
            provided = rows.provided_node(key)
            assert provided is not None
            data = provided.data
            nodes[key] = {"id": node_id, "type": _node_type(kind), "data": data, "inEdges": [], "outEdges": []}

    def edge_extra(origin: Key, destination: Key, attrs: Any) -> JSON:
        if attrs and isinstance(attrs.get("type"), str):
            return {"type": attrs["type"]}
        if origin[0] == RUN:
            return {"type": "PRODUCED"}
        extra: JSON = {"type": "CONSUMED"}
        if attrs and attrs.get("resolution"):
            extra["resolution"] = attrs["resolution"]
        return extra

    graph = _attach_edges(nodes, traversal, edge_extra)
    if root_run is not None and rows.run_visible(root_run):
        graph += _root_extras(rows.runs[root_run], nodes[(RUN, root_run)], redactor)
    return {"graph": graph, "truncated": traversal.truncated}


def _root_extras(run: Run, root: JSON, redactor: Redactor) -> list[JSON]:
    extras: list[JSON] = []
    parent = run.parent
    if parent is not None:
        visible = redactor.visibility.sees(parent.job.namespace_id)
        parent_id = f"run:{parent.run_id}" if visible else redacted_node_id(RUN, parent.pk)
        data = runs_json([parent], redactor)[0] if visible else {"redacted": True}
        node: JSON = {"id": parent_id, "type": "RUN", "data": data, "inEdges": [], "outEdges": []}
        edge: JSON = {"origin": parent_id, "destination": root["id"], "type": "PARENT"}
        node["outEdges"].append(edge)
        root["inEdges"].append(edge)
        extras.append(node)
    commit = run.code_commit
    if commit is not None:
        commit_id = f"commit:{commit.repo_url}@{commit.sha}"
        node = {"id": commit_id, "type": "CODE_COMMIT", "data": commit_json(commit), "inEdges": [], "outEdges": []}
        edge = {"origin": commit_id, "destination": root["id"], "type": "EXECUTED"}
        node["outEdges"].append(edge)
        root["inEdges"].append(edge)
        extras.append(node)
    return extras


def provenance_runs_json(traversal: Traversal, redactor: Redactor) -> list[JSON]:
    """Marquez ``UpstreamRunLineage.runs`` (the runs in upstream order, each with the dataset
    versions it consumed and which run produced them), with our extensions: ``outputs`` (what
    the run produced, when in the traversal), ``resolution`` of each input, ``parentRun`` and
    ``codeCommit``."""
    rows = ProvenanceRows(traversal, redactor)
    consumed: dict[int, list[JSON]] = defaultdict(list)
    produced: dict[int, list[JSON]] = defaultdict(list)
    for (origin, destination), attrs in traversal.edges.items():
        if destination[0] == RUN:
            consumed[destination[1]].append(rows.version_ref(origin, attrs))
        elif origin[0] == RUN:
            produced[origin[1]].append(rows.version_ref(destination, attrs))
    out = []
    for key in traversal.nodes:
        if key[0] != RUN:
            continue
        pk = key[1]
        if not rows.run_visible(pk):
            out.append({"run": {"id": redacted_node_id(RUN, pk)}, "redacted": True})
            continue
        run = rows.runs[pk]
        data = rows.run_data[pk]
        out.append(
            {
                "job": {"namespace": run.job.namespace.name, "name": run.job.name, "version": None},
                "run": {
                    "id": run.run_id,
                    "start": ts(run.started_at or run.first_event_time),
                    "end": ts(run.ended_at),
                    "status": run.state,
                },
                "inputs": sorted(consumed.get(pk, []), key=_ref_order),
                "outputs": sorted(produced.get(pk, []), key=_ref_order),
                "parentRun": data.get("parentRun"),
                "codeCommit": data.get("codeCommit"),
            }
        )
    return out


def _ref_order(ref: JSON) -> tuple[str, str, str]:
    return (str(ref.get("namespace", "~")), str(ref.get("name", ref.get("id", ""))), str(ref.get("version") or ""))
