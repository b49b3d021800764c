"""The rows one ingestion batch touches, loaded and locked up front, changed in memory, flushed in bulk.

A batch of events costs a fixed number of set-based queries plus a few per touched dataset, instead
of dozens per event. Rows are created if missing and then locked in one global order (jobs, runs,
datasets, each sorted by identifier), so concurrent batches on PostgreSQL serialise on the rows they
share and never deadlock on the graph; SQLite serialises writers anyway.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from django.db import models
from django.utils import timezone

from lineage.ingest.event import ParsedEvent
from lineage.ingest.rows import Table, bound_cursor, pipelined, prepared_values
from lineage.ingest.staging import can_stage, placeholder, stage_large
from lineage.models import (
    CodeCommit,
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

M = TypeVar("M", bound=models.Model)
Key = tuple[str, str]
Finish = Callable[[], None]  # reads a statement's answer into the workspace


def _nothing() -> None:
    pass


# Deterministic ids for versions: uuid5 under this namespace.
VERSION_UUID_NAMESPACE = uuid.UUID("6f2b1c3e-8f0a-5d5e-9c1b-2a7e4d9f0c11")


def version_uuid(namespace: str, name: str, label: str) -> uuid.UUID:
    return uuid.uuid5(VERSION_UUID_NAMESPACE, f"{namespace}\x00{name}\x00{label}")


def run_output_label(namespace: str, name: str, run_id: str) -> str:
    """The content-derived version id of what a run wrote to a dataset (when it declared none)."""
    return str(uuid.uuid5(VERSION_UUID_NAMESPACE, f"{namespace}\x00{name}\x00run\x00{run_id}"))


def declared_label(facets: dict[str, Any]) -> str:
    facet = facets.get("version")
    declared = facet.get("datasetVersion") if isinstance(facet, dict) else None
    if isinstance(declared, str | int) and not isinstance(declared, bool) and str(declared):
        return str(declared)[:1024]
    return ""


class RunJobConflict(Exception):
    """A concurrent writer created a run for another job after our check: retry the batch."""


class Workspace:
    """Identity map of the graph rows a batch reads and writes, with dirty tracking."""

    def __init__(self) -> None:
        self.now = timezone.now()
        self.namespaces: dict[str, Namespace] = {}
        self.jobs: dict[Key, Job] = {}
        self.runs: dict[str, Run] = {}
        self.fresh_runs: set[str] = set()  # created by this batch, no event applied yet
        self.new_run_ids: set[str] = set()
        self.parent_run_pks: dict[str, int] = {}
        self.other_runs: dict[int, Run] = {}  # latest runs of the batch's jobs, when not among its runs
        self.datasets: dict[Key, Dataset] = {}
        self.versions: dict[tuple[int, str], DatasetVersion] = {}
        self.versions_by_pk: dict[int, DatasetVersion] = {}
        self.run_inputs: dict[tuple[int, int], RunInput] = {}
        self.run_outputs: dict[tuple[int, int], RunOutput] = {}
        self.io_by_run: dict[int, set[tuple[int, int]]] = defaultdict(set)  # run pk -> (dataset pk, direction)
        self.column_lineage: dict[int, dict[tuple[str, int, str], ColumnLineage]] = {}
        self.commits: dict[tuple[str, str], CodeCommit] = {}
        self.edges: dict[int, list[JobDatasetEdge]] = defaultdict(list)
        self.latest_runs: dict[int, Run] = {}
        self.rebuild_jobs: dict[int, datetime] = {}  # job pk -> replay its edge history from then on
        self.symlinks: set[tuple[int, str, str, str]] = set()
        # dataset pk -> {id(version): version} for versions created or changed by this batch
        self.touched_versions: dict[int, dict[int, DatasetVersion]] = defaultdict(dict)
        self.moved_versions: set[int] = set()  # existing versions whose created_at moved earlier
        self.dirty: dict[type[models.Model], dict[int, models.Model]] = defaultdict(dict)
        self.new: dict[type[models.Model], list[models.Model]] = defaultdict(list)
        self.deleted: dict[type[models.Model], list[models.Model]] = defaultdict(list)

    # --- dirty tracking --------------------------------------------------------------------------
    def mark(self, obj: models.Model) -> None:
        if obj.pk is not None:
            self.dirty[type(obj)][obj.pk] = obj

    def add(self, obj: models.Model) -> None:
        self.new[type(obj)].append(obj)

    def discard(self, obj: models.Model) -> None:
        """Forget a row: delete it at flush if stored, or never create it if it is new."""
        if obj.pk is None:
            self.new[type(obj)] = [row for row in self.new[type(obj)] if row is not obj]
        else:
            self.dirty[type(obj)].pop(obj.pk, None)
            self.deleted[type(obj)].append(obj)

    # --- loading ---------------------------------------------------------------------------------
    def load(self, events: list[ParsedEvent]) -> None:
        first_seen: dict[str, dict[Any, datetime]] = defaultdict(dict)

        def see(kind: str, key: Any, at: datetime) -> None:
            table = first_seen[kind]
            if key not in table or at < table[key]:
                table[key] = at

        run_jobs: dict[str, tuple[Key, datetime]] = {}
        parent_run_ids: set[str] = set()
        commit_keys: set[tuple[str, str]] = set()
        for event in events:
            at = event.event_time
            if event.kind != "DatasetEvent":
                see("job", (event.job_namespace, event.job_name), at)
            if event.parent_job:
                see("job", event.parent_job, at)
            if event.kind == "RunEvent":
                run_jobs.setdefault(event.run_id, ((event.job_namespace, event.job_name), at))
                parent = _parent_run_id(event.run_facets)
                if parent:
                    parent_run_ids.add(parent)
                commit = commit_key(event.job_facets, event.run_facets)
                if commit:
                    commit_keys.add(commit)
            for mention in event.mentions:
                see("dataset", mention.key, at)
                for key in mention.referenced:
                    see("dataset", key, at)
        names = {k[0] for k in first_seen["job"]} | {k[0] for k in first_seen["dataset"]}
        self._load_namespaces(names, events)
        self.jobs = self._create_and_lock(Job, first_seen["job"], {})
        self._load_runs(run_jobs)
        self.datasets = self._create_and_lock(Dataset, first_seen["dataset"], {"physical_name": None})
        # The rest are independent reads: sent together, they share one round trip on PostgreSQL.
        with pipelined(Table.of(Run).connection):
            pending = [
                self._load_other_runs(parent_run_ids, events),
                self._load_versions(events),
                *self._load_run_io(),
                self._load_column_lineage(events),
                self._load_commits(commit_keys),
                self._load_edges(events),
            ]
            for finish in pending:
                finish()

    def _load_namespaces(self, names: set[str], events: list[ParsedEvent]) -> None:
        table = Table.of(Namespace)
        found = {ns.name: ns for ns in table.select(*table.any_of("name", names))}
        missing = sorted(names - found.keys())
        if missing:
            earliest = min((e.event_time for e in events), default=self.now)
            table.insert(
                [table.new(name=n, created_at=earliest, updated_at=earliest) for n in missing], conflicts="ignore"
            )
            found.update({ns.name: ns for ns in table.select(*table.any_of("name", missing))})
        self.namespaces = found

    def _create_and_lock(self, model: type[M], first_seen: dict[Key, datetime], extra: dict[str, Any]) -> dict[Key, M]:
        """Lock the rows in identifier order; if some do not exist yet, insert them in the same
        order and read them back from the insert (rows of our own insert are ours until commit).
        Any a concurrent request created meanwhile are skipped by the insert and locked."""
        if not first_seen:
            return {}
        result = self._lock_named(model, first_seen)
        missing = sorted(set(first_seen) - result.keys())
        if missing:
            table = Table.of(model)
            rows = []
            for ns, name in missing:
                at = first_seen[(ns, name)]
                values = {k: (name if v is None else v) for k, v in extra.items()}
                rows.append(table.new(namespace=self.namespaces[ns], name=name, created_at=at, updated_at=at, **values))
            created = table.insert(rows, conflicts="ignore", returning="*")
            result.update(self._keyed(created, first_seen))
            raced = {key: first_seen[key] for key in missing if key not in result}
            if raced:
                result.update(self._lock_named(model, raced))
        return result

    def _lock_named(self, model: type[M], wanted: dict[Key, datetime]) -> dict[Key, M]:
        table = Table.of(model)
        ns_sql, ns_params = table.any_of("namespace_id", {self.namespaces[ns].pk for ns, _ in wanted})
        name_sql, name_params = table.any_of("name", {name for _, name in wanted})
        rows = table.select(
            f"{ns_sql} AND {name_sql}",
            ns_params + name_params,
            lock=True,
            order_by=f"{table.column('namespace_id')}, {table.column('name')}",
        )
        return self._keyed(rows, wanted)

    def _keyed(self, rows: list[M], wanted: dict[Key, datetime]) -> dict[Key, M]:
        """The rows among ``wanted`` by (namespace name, name), each pointing at its namespace."""
        by_ns = {ns.pk: ns for ns in self.namespaces.values()}
        result: dict[Key, M] = {}
        for row in rows:
            row.namespace = by_ns[row.namespace_id]  # type: ignore[attr-defined]
            key = (row.namespace.name, row.name)  # type: ignore[attr-defined]
            if key in wanted:
                result[key] = row
        return result

    def _lock_runs(self, run_ids: Iterable[str]) -> list[Run]:
        table = Table.of(Run)
        return table.select(*table.any_of("run_id", run_ids), lock=True, order_by=table.column("run_id"))

    def _load_runs(self, run_jobs: dict[str, tuple[Key, datetime]]) -> None:
        if not run_jobs:
            return
        runs = self._lock_runs(run_jobs)
        missing = sorted(set(run_jobs) - {run.run_id for run in runs})
        if missing:
            rows = []
            for run_id in missing:
                job_key, at = run_jobs[run_id]
                rows.append(
                    Table.of(Run).new(
                        run_id=run_id,
                        job=self.jobs[job_key],
                        first_event_time=at,
                        last_event_time=at,
                        created_at=self.now,
                        updated_at=self.now,
                    )
                )
            ours = Table.of(Run).insert(rows, conflicts="ignore", returning="*")
            inserted = {run.run_id for run in ours}
            raced = [run_id for run_id in missing if run_id not in inserted]
            runs = sorted([*runs, *ours, *(self._lock_runs(raced) if raced else [])], key=lambda run: run.run_id)
        jobs_by_pk = {job.pk: job for job in self.jobs.values()}
        for run in runs:
            expected = self.jobs[run_jobs[run.run_id][0]]
            if run.job_id != expected.pk and run.run_id in missing:
                raise RunJobConflict(run.run_id)
            run.job = jobs_by_pk.get(run.job_id) or run.job
            self.runs[run.run_id] = run
        created = {r for r in missing if r in self.runs and self.runs[r].created_at == self.now}
        self.fresh_runs = set(created)
        self.new_run_ids = set(created)

    # Each of the reads below sends its statement and returns what reads its answer (see load).
    def _load_other_runs(self, parent_run_ids: set[str], events: list[ParsedEvent]) -> Finish:
        """In one statement: the ids of the parent runs named, and the latest run of each job whose
        runs this batch touches (to tell whether a run arrived late)."""
        parents = parent_run_ids - set(self.runs)
        run_jobs = {run.job_id for run in self.runs.values()}
        jobs = {self.jobs[(e.job_namespace, e.job_name)] for e in events if e.kind != "DatasetEvent"}
        known = {run.pk for run in self.runs.values()}
        latest = {j.latest_run_id for j in jobs if j.latest_run_id and j.pk in run_jobs} - known
        if not parents and not latest:
            return _nothing
        table = Table.of(Run)
        parent_sql, parent_params = table.any_of("run_id", parents)
        latest_sql, latest_params = table.any_of("id", latest)
        read = table.select_later(f"{parent_sql} OR {latest_sql}", parent_params + latest_params)

        def finish() -> None:
            for run in read():
                if run.run_id in parents:
                    self.parent_run_pks[run.run_id] = run.pk
                if run.pk in latest:
                    self.other_runs[run.pk] = run

        return finish

    def _load_versions(self, events: list[ParsedEvent]) -> Finish:
        wanted: set[tuple[int, str]] = set()
        for event in events:
            for mention in event.mentions:
                dataset = self.datasets[mention.key]
                label = declared_label(mention.facets)
                if label:
                    wanted.add((dataset.pk, label))
            if event.kind == "RunEvent":
                for mention in event.outputs:
                    if not declared_label(mention.facets):
                        label = run_output_label(mention.namespace, mention.name, event.run_id)
                        wanted.add((self.datasets[mention.key].pk, label))
        current = {d.current_version_id for d in self.datasets.values() if d.current_version_id}
        if not current and not wanted:
            return _nothing
        table = Table.of(DatasetVersion)
        where, params = table.any_of("id", current)
        if wanted:
            ds_sql, ds_params = table.any_of("dataset_id", {d for d, _ in wanted})
            v_sql, v_params = table.any_of("version", {v for _, v in wanted})
            where, params = f"{where} OR ({ds_sql} AND {v_sql})", params + ds_params + v_params
        read = table.select_later(where, params)

        def finish() -> None:
            for version in read():
                self.versions[(version.dataset_id, version.version)] = version
                self.versions_by_pk[version.pk] = version

        return finish

    def _load_run_io(self) -> list[Finish]:
        run_pks = [run.pk for run in self.runs.values()]
        if not run_pks:
            return []
        inputs, outputs = Table.of(RunInput), Table.of(RunOutput)
        read_inputs = inputs.select_later(*inputs.any_of("run_id", run_pks))
        read_outputs = outputs.select_later(*outputs.any_of("run_id", run_pks))

        def finish_inputs() -> None:
            for read in read_inputs():
                self.run_inputs[(read.run_id, read.dataset_id)] = read
                self.io_by_run[read.run_id].add((read.dataset_id, JobDatasetEdge.Direction.IN))

        def finish_outputs() -> None:
            for wrote in read_outputs():
                self.run_outputs[(wrote.run_id, wrote.dataset_id)] = wrote
                self.io_by_run[wrote.run_id].add((wrote.dataset_id, JobDatasetEdge.Direction.OUT))

        return [finish_inputs, finish_outputs]

    def _load_column_lineage(self, events: list[ParsedEvent]) -> Finish:
        targets = {self.datasets[m.key].pk for e in events for m in e.outputs if m.column_inputs}
        for dataset_pk in targets:
            self.column_lineage[dataset_pk] = {}
        if not targets:
            return _nothing
        table = Table.of(ColumnLineage)
        read = table.select_later(*table.any_of("dataset_id", targets))

        def finish() -> None:
            for row in read():
                self.column_lineage[row.dataset_id][(row.field, row.input_dataset_id, row.input_field)] = row

        return finish

    def _load_commits(self, keys: set[tuple[str, str]]) -> Finish:
        if not keys:
            return _nothing
        read = self._select_commits(keys)

        def finish() -> None:
            self.commits = {(c.repo_url, c.sha): c for c in read()}

        return finish

    @staticmethod
    def _select_commits(keys: Iterable[tuple[str, str]]) -> Callable[[], list[CodeCommit]]:
        table = Table.of(CodeCommit)
        keys = list(keys)
        repo_sql, repo_params = table.any_of("repo_url", {k[0] for k in keys})
        sha_sql, sha_params = table.any_of("sha", {k[1] for k in keys})
        return table.select_later(f"{repo_sql} AND {sha_sql}", repo_params + sha_params)

    def _load_edges(self, events: list[ParsedEvent]) -> Finish:
        jobs = {self.jobs[(e.job_namespace, e.job_name)] for e in events if e.kind != "DatasetEvent"}
        if not jobs:
            return _nothing
        earliest = min([e.event_time for e in events] + [r.first_event_time for r in self.runs.values()])
        table = Table.of(JobDatasetEdge)
        job_sql, job_params = table.any_of("job_id", sorted(j.pk for j in jobs))
        valid_to = table.column("valid_to")
        read = table.select_later(
            f"{job_sql} AND ({valid_to} IS NULL OR {valid_to} >= %s)",
            [*job_params, table.prep("valid_to", earliest)],
        )

        def finish() -> None:
            for edge in read():
                self.edges[edge.job_id].append(edge)
            known = {run.pk: run for run in self.runs.values()} | self.other_runs
            for job in jobs:
                if job.latest_run_id in known:
                    self.latest_runs[job.pk] = known[job.latest_run_id]

        return finish

    # --- in-memory get-or-create -------------------------------------------------------------------
    def version(self, dataset: Dataset, label: str, at: datetime, run: Run | None) -> tuple[DatasetVersion, bool]:
        key = (dataset.pk, label[:1024])
        version = self.versions.get(key)
        if version is not None:
            return version, False
        version = Table.of(DatasetVersion).new(
            dataset=dataset,
            version=key[1],
            uuid=version_uuid(dataset.namespace.name, dataset.name, key[1]),
            created_at=at,
            run=run,
        )
        version._custody_created = True  # type: ignore[attr-defined]  # no schema change can point at it yet
        self.versions[key] = version
        self.add(version)
        return version, True

    def run_input(self, run: Run, dataset: Dataset, at: datetime) -> tuple[RunInput, bool]:
        row = self.run_inputs.get((run.pk, dataset.pk))
        if row is not None:
            return row, False
        row = Table.of(RunInput).new(run=run, dataset=dataset, first_seen_at=at)
        self.run_inputs[(run.pk, dataset.pk)] = row
        self.io_by_run[run.pk].add((dataset.pk, JobDatasetEdge.Direction.IN))
        self.add(row)
        return row, True

    def run_output(self, run: Run, dataset: Dataset, version: DatasetVersion, at: datetime) -> tuple[RunOutput, bool]:
        row = self.run_outputs.get((run.pk, dataset.pk))
        if row is not None:
            return row, False
        row = Table.of(RunOutput).new(run=run, dataset=dataset, version=version, first_seen_at=at)
        self.run_outputs[(run.pk, dataset.pk)] = row
        self.io_by_run[run.pk].add((dataset.pk, JobDatasetEdge.Direction.OUT))
        self.add(row)
        return row, True

    def commit(self, key: tuple[str, str], defaults: dict[str, Any]) -> CodeCommit:
        commit = self.commits.get(key)
        if commit is None:
            commit = Table.of(CodeCommit).new(repo_url=key[0], sha=key[1], **defaults)
            self.commits[key] = commit
            self.add(commit)
        return commit

    def run_io(self, run: Run) -> set[tuple[int, int]]:
        """(dataset pk, edge direction) of everything the run is known to have read or written."""
        return set(self.io_by_run.get(run.pk, ()))

    def parent_pk(self, run_id: str) -> int | None:
        run = self.runs.get(run_id)
        return run.pk if run is not None else self.parent_run_pks.get(run_id)

    # --- flushing ----------------------------------------------------------------------------------
    def flush(self) -> None:
        self._create(CodeCommit, ignore_conflicts=True)
        self._refetch_commits()
        self._update(CodeCommit, ["first_seen_at"])
        self._update(
            Job,
            [
                "facets",
                "facet_times",
                "type",
                "description",
                "location",
                "created_at",
                "updated_at",
                "parent",
                "parent_rank",
                "latest_run",
            ],
        )
        self._update(
            Dataset,
            [
                "facets",
                "facet_times",
                "fields",
                "description",
                "source_name",
                "type",
                "tags",
                "lifecycle_state",
                "is_deleted",
                "renamed_to",
                "created_at",
                "updated_at",
            ],
        )
        self._update(
            Run,
            [
                "state",
                "state_rank",
                "first_event_time",
                "last_event_time",
                "started_at",
                "ended_at",
                "nominal_start_time",
                "nominal_end_time",
                "parent",
                "parent_run_id",
                "parent_job_namespace",
                "parent_job_name",
                "code_commit",
                "facets",
                "facet_times",
                "updated_at",
            ],
        )
        self._create(DatasetVersion)
        for version in self.new[DatasetVersion]:
            self.versions_by_pk[version.pk] = version  # type: ignore[assignment]
        self._update(
            DatasetVersion, ["created_at", "run", "fields", "schema_digest", "facets", "facet_times", "lifecycle_state"]
        )
        self._create(RunInput, keys=False)
        self._update(RunInput, ["first_seen_at", "version", "facets", "facet_times"])
        self._create(RunOutput, keys=False)
        self._update(RunOutput, ["first_seen_at", "version", "facets", "facet_times"])
        self._create(ColumnLineage, keys=False)
        self._update(
            ColumnLineage, ["transformations", "transformation_description", "transformation_type", "run", "event_time"]
        )
        if self.symlinks:
            Table.of(DatasetSymlink).insert(
                [DatasetSymlink(dataset_id=d, namespace=ns, name=n, type=t) for d, ns, n, t in sorted(self.symlinks)],
                conflicts="ignore",
            )
        self._flush_edges()
        if self.new_run_ids:
            self._adopt_children()

    def _adopt_children(self) -> None:
        """Runs that named one of the new runs as their parent before it existed now point at it."""
        table = Table.of(Run)
        parent_id, parent_run_id = table.quoted["parent_id"], table.quoted["parent_run_id"]
        where, params = table.any_of("parent_run_id", sorted(self.new_run_ids))
        with bound_cursor(table.connection) as cursor:
            cursor.execute(
                f"UPDATE {table.name} SET {parent_id} = (SELECT p.{table.quoted['id']} FROM {table.name} p "
                f"WHERE p.{table.quoted['run_id']} = {table.name}.{parent_run_id} LIMIT 1) "
                f"WHERE {table.name}.{parent_id} IS NULL AND {where}",
                params,
            )

    def _create(self, model: type[models.Model], ignore_conflicts: bool = False, keys: bool = True) -> None:
        """INSERT the new rows of ``model``. ``keys``: read their primary keys back (what later
        statements of this flush refer to needs them). Rows nothing refers to are sent without
        RETURNING, so inside the flush's pipeline they wait for no answer; they are not used after
        the flush (the next request starts a new workspace)."""
        rows = self.new.get(model)
        if rows:
            table = Table.of(model)
            if ignore_conflicts:
                table.insert(rows, conflicts="ignore")
            else:
                table.insert(rows, returning="pk" if keys else "")

    def _update(self, model: type[models.Model], fields: list[str]) -> None:
        rows = [row for row in self.dirty.get(model, {}).values() if row.pk is not None]
        if rows:
            update_rows(model, rows, fields)

    def _refetch_commits(self) -> None:
        missing: list[Any] = [c for c in self.new.get(CodeCommit, []) if c.pk is None]
        if not missing:
            return
        stored = {(c.repo_url, c.sha): c for c in self._select_commits((c.repo_url, c.sha) for c in missing)()}
        for commit in missing:
            commit.pk = stored[(commit.repo_url, commit.sha)].pk

    def _flush_edges(self) -> None:
        deleted = [edge.pk for edge in self.deleted[JobDatasetEdge]]
        if deleted:
            table = Table.of(JobDatasetEdge)
            where, params = table.any_of("id", deleted)
            with bound_cursor(table.connection) as cursor:
                cursor.execute(f"DELETE FROM {table.name} WHERE {where}", params)
        self._update(JobDatasetEdge, ["valid_from", "valid_to"])
        self._create(JobDatasetEdge, keys=False)


def update_rows(model: type[models.Model], rows: list[Any], fields: list[str]) -> None:
    """UPDATE the rows' ``fields`` by primary key, writing only the columns that changed since the
    row was read (see :meth:`Table.changed`), one prepared statement per set of changed columns,
    run for all its rows at once.

    Django's ``bulk_update`` builds a CASE expression per field over every row, which costs far
    more than the update itself; an ``executemany`` of a plain UPDATE is pipelined by psycopg and
    runs in-process on SQLite. Leaving unchanged columns out matters: a dataset's facets are
    rewritten (re-serialised, re-compressed, re-TOASTed) otherwise on every event that mentions it.
    """
    table = Table.of(model)
    connection = table.connection
    meta = model._meta
    attnames = [meta.get_field(name).attname for name in fields]  # type: ignore[union-attr]
    groups: dict[tuple[str, ...], list[Any]] = defaultdict(list)
    for row in rows:
        table.link_related(row)
        changed = table.changed(row, attnames)
        if changed:
            groups[changed].append(row)
    pk = table.quoted[meta.pk.attname]  # type: ignore[union-attr]
    staging = can_stage(connection)
    for changed, members in groups.items():
        columns = [table.by_attname[name] for name in changed]
        preps = table.preps(changed)
        documents = [i for i, field in enumerate(columns) if isinstance(field, models.JSONField)] if staging else []
        assignments = ", ".join(f"{table.quoted[name]} = %s" for name in changed)
        sql = f"UPDATE {table.name} SET {assignments} WHERE {pk} = %s"
        params = []
        with bound_cursor(connection) as cursor:
            for row in members:
                values: list[Any] = []
                prepared_values(row, preps, connection, values, add=False)
                values.append(row.pk)
                if documents and stage_large(connection, values, documents):
                    # A row with a staged document has statement text of its own.
                    pairs = zip(changed, values[:-1], strict=True)
                    assigned = ", ".join(f"{table.quoted[name]} = {placeholder('%s', value)}" for name, value in pairs)
                    cursor.execute(f"UPDATE {table.name} SET {assigned} WHERE {pk} = %s", values)
                else:
                    params.append(values)
            if params:
                cursor.executemany(sql, params)
        for row in members:
            table.remember(row)


def _parent_run_id(run_facets: dict[str, Any]) -> str:
    for alias in ("parent", "parentRun"):
        parent = run_facets.get(alias)
        run = parent.get("run") if isinstance(parent, dict) else None
        if isinstance(run, dict) and isinstance(run.get("runId"), str):
            return run["runId"][:255]
    return ""


def commit_key(job_facets: dict[str, Any], run_facets: dict[str, Any]) -> tuple[str, str] | None:
    """(repository, sha) of the code a run executed: the SDK's `custody_git` run facet, else the
    `sourceCodeLocation` job facet; None when neither names both."""
    git_facet, location_facet = run_facets.get("custody_git"), job_facets.get("sourceCodeLocation")
    git: dict[str, Any] = git_facet if isinstance(git_facet, dict) else {}
    location: dict[str, Any] = location_facet if isinstance(location_facet, dict) else {}
    sha = _s(git.get("commit")) or _s(location.get("version"))
    repo = _s(git.get("repoUrl")) or _s(location.get("repoUrl")) or _s(location.get("url"))
    if not sha or not repo:
        return None
    return repo[:1024], sha[:255]


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ""
