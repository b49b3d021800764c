"""Projection of validated OpenLineage events onto the lineage graph.

Every derived value is a function of the *set* of events received, never of their order: facets
merge per key by event time, run states rank by (class, time, priority), versions date from their
earliest mention, identities widen their [created, updated] span, and job edges are rebuilt from
the runs whenever a late event lands in the past. A batch is projected in memory on a
:class:`~lineage.ingest.workspace.Workspace` and flushed in bulk.
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Any

from django.db import connection
from django.db.models import Q

from lineage.ingest.errors import InvalidEvent
from lineage.ingest.event import DatasetMention, ParsedEvent, parse_event_time
from lineage.ingest.facets import Merge, merge_facets
from lineage.ingest.rows import Table, pipelined
from lineage.ingest.schema import diff_schemas, normalise_fields, schema_digest
from lineage.ingest.workspace import (
    Workspace,
    _parent_run_id,
    commit_key,
    declared_label,
    run_output_label,
    update_rows,
)
from lineage.models import (
    ColumnLineage,
    Dataset,
    DatasetVersion,
    Job,
    JobDatasetEdge,
    Run,
    RunInput,
    RunOutput,
    SchemaChange,
)

# (state, class, priority): class 2 terminal beats 1 running beats 0 no state; on equal times the
# more pessimistic terminal state wins, so the outcome never depends on arrival order.
_STATE_OF_EVENT: dict[str, tuple[str | None, int, int]] = {
    "START": (Run.State.RUNNING, 1, 0),
    "RUNNING": (Run.State.RUNNING, 1, 1),
    "COMPLETE": (Run.State.COMPLETED, 2, 1),
    "ABORT": (Run.State.ABORTED, 2, 2),
    "FAIL": (Run.State.FAILED, 2, 3),
    "OTHER": (None, 0, 0),
    "": (None, 0, 0),
}
_STREAM_TYPES = {"STREAM", "TOPIC", "STREAMING"}
RUNS = JobDatasetEdge.Source.RUNS
STATIC = JobDatasetEdge.Source.STATIC


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _facet(facets: dict[str, Any], key: str) -> dict[str, Any]:
    value = facets.get(key)
    return value if isinstance(value, dict) else {}


def _lenient_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_event_time(value)
    except InvalidEvent:
        return None


def _author(git: dict[str, Any]) -> str:
    """``Name <email>`` from the SDK's git facet (either part may be missing)."""
    name, email = _str(git.get("author")), _str(git.get("authorEmail"))
    return f"{name} <{email}>".strip() if email else name


def widen(row: Job | Dataset, at: datetime) -> bool:
    """Stretch a row's [created_at, updated_at] to include ``at`` (min/max: order-independent)."""
    changed = False
    if at < row.created_at:
        row.created_at, changed = at, True
    if at > row.updated_at:
        row.updated_at, changed = at, True
    return changed


def project(events: list[ParsedEvent]) -> None:
    """Apply events (already stored as raw events) to the graph, in the given order."""
    if not events:
        return
    workspace = Workspace()
    workspace.load(events)
    projector = Projector(workspace)
    for event in events:
        projector.apply(event)
    with pipelined(Table.of(Run).connection):
        workspace.flush()
    projector.finish()


class Projector:
    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace

    def apply(self, event: ParsedEvent) -> None:
        if event.kind == "DatasetEvent":
            assert event.dataset is not None
            self._apply_dataset_event(event, event.dataset)
        elif event.kind == "JobEvent":
            self._apply_job_event(event)
        else:
            self._apply_run_event(event)

    def finish(self) -> None:
        """Work that needs the flushed rows: edge rebuilds, current versions, schema changes."""
        for job_pk, since in sorted(self.ws.rebuild_jobs.items()):
            rebuild_job_edges(Job.objects.get(pk=job_pk), since)
        datasets = {dataset.pk: dataset for dataset in self.ws.datasets.values()}
        touched = {pk: list(versions.values()) for pk, versions in sorted(self.ws.touched_versions.items())}
        windows = schema_windows(
            {
                pk: sum(1 for v in versions if v.schema_digest) + 1
                for pk, versions in touched.items()
                if any(v.schema_digest for v in versions)
            }
        )
        repointed = [
            datasets[pk] for pk, versions in touched.items() if self._refresh_versions(datasets[pk], versions, windows)
        ]
        if repointed:
            update_rows(Dataset, repointed, ["current_version"])

    # --- jobs and datasets -----------------------------------------------------------------------
    def _job(self, key: tuple[str, str], facets: dict[str, Any], at: datetime) -> Job:
        job = self.ws.jobs[key]
        changed = widen(job, at)
        merged = merge_facets(job.facets, job.facet_times, facets, at)
        changed = changed or bool(merged)
        if merged == Merge.VALUES:
            job_type = _str(_facet(job.facets, "jobType").get("processingType")).upper()
            job.type = "STREAM" if job_type in _STREAM_TYPES else "BATCH"
            job.description = _str(_facet(job.facets, "documentation").get("description"))
            location = _facet(job.facets, "sourceCodeLocation")
            job.location = _str(location.get("url")) or _str(location.get("repoUrl"))
        if changed:
            self.ws.mark(job)
        return job

    def _dataset(self, key: tuple[str, str], facets: dict[str, Any], at: datetime) -> Dataset:
        dataset = self.ws.datasets[key]
        changed = widen(dataset, at)
        merged = merge_facets(dataset.facets, dataset.facet_times, facets, at)
        changed = changed or bool(merged)
        if merged == Merge.VALUES:
            _derive_dataset_fields(dataset)
        if changed:
            self.ws.mark(dataset)
        identifiers = _facet(facets, "symlinks").get("identifiers")
        if isinstance(identifiers, list):
            for ident in identifiers:
                if isinstance(ident, dict) and _str(ident.get("namespace")) and _str(ident.get("name")):
                    self.ws.symlinks.add(
                        (dataset.pk, ident["namespace"][:1024], ident["name"][:1024], _str(ident.get("type"))[:64])
                    )
        return dataset

    def _reference(self, key: tuple[str, str], at: datetime) -> Dataset:
        """A dataset only named (column-lineage input, former name): its span widens, nothing else."""
        dataset = self.ws.datasets[key]
        if widen(dataset, at):
            self.ws.mark(dataset)
        return dataset

    def _mentioned(self, event: ParsedEvent) -> dict[tuple[str, str], Dataset]:
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for mention in event.mentions:
            merged.setdefault(mention.key, {}).update(mention.facets)
        found = {key: self._dataset(key, merged[key], event.event_time) for key in sorted(merged)}
        for mention in event.mentions:
            for key in mention.referenced:
                self._reference(key, event.event_time)
            if mention.previous is not None and mention.previous != mention.key:
                old, new = self.ws.datasets[mention.previous], found[mention.key]
                if old.renamed_to_id != new.pk:
                    old.renamed_to = new
                    self.ws.mark(old)
                self.ws.symlinks.add((new.pk, mention.previous[0], mention.previous[1], "RENAMED_FROM"))
        return found

    # --- versions ----------------------------------------------------------------------------------
    def _version(
        self, dataset: Dataset, label: str, at: datetime, facets: dict[str, Any], run: Run | None
    ) -> DatasetVersion:
        version, changed = self.ws.version(dataset, label, at, run)
        if at < version.created_at:
            version.created_at, changed = at, True
            if version.pk is not None:
                self.ws.moved_versions.add(version.pk)
        if (
            run is not None
            and not _points_at(version, "run", run)
            and (version.run is None or _run_key(run) < _run_key(version.run))
        ):
            version.run, changed = run, True  # several runs claim one declared version: the first
        merged = merge_facets(version.facets, version.facet_times, facets, at)
        if merged == Merge.VALUES:
            changed = True
            if "schema" in version.facets:
                version.fields = normalise_fields(version.facets["schema"])
                version.schema_digest = schema_digest(version.fields)
            version.lifecycle_state = _str(
                _facet(version.facets, "lifecycleStateChange").get("lifecycleStateChange")
            ).upper()
        if changed:
            # Its place among the dataset's versions or its schema may have changed.
            self.ws.touched_versions[dataset.pk][id(version)] = version
        if changed or merged:
            self.ws.mark(version)
        return version

    def _refresh_versions(
        self, dataset: Dataset, touched: list[DatasetVersion], windows: dict[int, list[DatasetVersion]]
    ) -> bool:
        """Point the dataset at its newest version and redo the schema changes the touched versions
        affect; True when ``current_version`` changed (the caller saves it)."""
        current = self.ws.versions_by_pk.get(dataset.current_version_id or -1)
        moved = any(v.pk in self.ws.moved_versions for v in touched)
        if moved or (dataset.current_version_id and current is None):
            newest = dataset.versions.order_by("-created_at", "-uuid").first()
        else:
            newest = max([*touched, *([current] if current else [])], key=lambda v: (v.created_at, v.uuid))
        changed = newest is not None and dataset.current_version_id != newest.pk
        if changed:
            dataset.current_version = newest
        with_schema = [v for v in touched if v.schema_digest]
        if moved:
            rebuild_schema_changes(dataset)
        elif with_schema:
            refresh_schema_tail(dataset, with_schema, windows.get(dataset.pk))
        return changed

    # --- run events --------------------------------------------------------------------------------
    def _apply_run_event(self, event: ParsedEvent) -> None:
        at = event.event_time
        job = self._job((event.job_namespace, event.job_name), event.job_facets, at)
        run, moved = self._run(event, job)
        datasets = self._mentioned(event)
        for mention in event.inputs:
            self._run_input(run, datasets[mention.key], mention, at)
        for mention in event.outputs:
            dataset = datasets[mention.key]
            label = declared_label(mention.facets) or run_output_label(mention.namespace, mention.name, run.run_id)
            version = self._version(dataset, label, at, mention.facets, run)
            self._run_output(run, dataset, version, mention, at)
            self._column_lineage(dataset, mention, run, at)
        self._update_edges(job, run, moved)

    def _run(self, event: ParsedEvent, job: Job) -> tuple[Run, bool]:
        at = event.event_time
        run = self.ws.runs[event.run_id]
        if run.job_id != job.pk:
            owner = run.job
            raise InvalidEvent(
                f"run {event.run_id!r} already belongs to job {owner.namespace.name}:{owner.name}; "
                "a runId identifies one run of one job",
                field="run.runId",
            )
        fresh = event.run_id in self.ws.fresh_runs
        self.ws.fresh_runs.discard(event.run_id)
        moved = fresh or at < run.first_event_time
        run.first_event_time = min(run.first_event_time, at)
        run.last_event_time = max(run.last_event_time, at)
        state, klass, priority = _STATE_OF_EVENT[event.event_type]
        if state is not None:
            rank = [klass, at.isoformat(), priority]
            if not run.state_rank or rank > run.state_rank:
                run.state = state
                run.state_rank = rank
                run.ended_at = at if klass == 2 else None
            if klass == 1 and (run.started_at is None or at < run.started_at):
                run.started_at = at
        if event.parent_job is not None:
            self._reference_parent_job(job, event.parent_job, at)
        if merge_facets(run.facets, run.facet_times, event.run_facets, at) == Merge.VALUES:
            self._derive_run_fields(run)
        commit = self._code_commit(event, at)
        if commit is not None and run.code_commit_id is None and run.code_commit is None:
            run.code_commit = commit  # a run executes one commit: the first one reported is kept
        run.updated_at = self.ws.now
        self.ws.mark(run)
        return run, moved

    def _derive_run_fields(self, run: Run) -> None:
        nominal = _facet(run.facets, "nominalTime")
        run.nominal_start_time = _lenient_time(nominal.get("nominalStartTime"))
        run.nominal_end_time = _lenient_time(nominal.get("nominalEndTime"))
        parent_run_id = _parent_run_id(run.facets)
        if parent_run_id != run.parent_run_id and parent_run_id != run.run_id:
            parent = _facet(run.facets, "parent") or _facet(run.facets, "parentRun")
            parent_job = _facet(parent, "job")
            run.parent_run_id = parent_run_id
            run.parent_job_namespace = _str(parent_job.get("namespace"))[:1024]
            run.parent_job_name = _str(parent_job.get("name"))[:1024]
            run.parent_id = self.ws.parent_pk(parent_run_id) if parent_run_id else None

    def _reference_parent_job(self, job: Job, key: tuple[str, str], at: datetime) -> None:
        """The newest `parent` reference names the job's parent (ties broken by identity)."""
        parent = self.ws.jobs[key]
        if widen(parent, at):
            self.ws.mark(parent)
        rank = f"{at.isoformat()}|{key[0]}\x1f{key[1]}"
        if parent.pk != job.pk and rank > job.parent_rank:
            job.parent, job.parent_rank = parent, rank
            self.ws.mark(job)

    def _code_commit(self, event: ParsedEvent, at: datetime) -> Any:
        key = commit_key(event.job_facets, event.run_facets)
        if key is None:
            return None
        git = _facet(event.run_facets, "custody_git")
        location = _facet(event.job_facets, "sourceCodeLocation")
        commit = self.ws.commit(
            key,
            {
                "vcs_type": (_str(location.get("type")) or "git")[:32],
                "branch": (_str(git.get("branch")) or _str(location.get("branch")))[:512],
                "tag": _str(location.get("tag"))[:512],
                "path": _str(location.get("path"))[:1024],
                "url": _str(location.get("url"))[:2048],
                "author": _author(git)[:512],
                "is_dirty": git.get("dirty") if isinstance(git.get("dirty"), bool) else None,
                "diff_digest": _str(git.get("diffDigest"))[:71],
                "first_seen_at": at,
            },
        )
        if at < commit.first_seen_at:
            commit.first_seen_at = at
            self.ws.mark(commit)
        return commit

    def _run_input(self, run: Run, dataset: Dataset, mention: DatasetMention, at: datetime) -> None:
        row, changed = self.ws.run_input(run, dataset, at)
        if at < row.first_seen_at:
            row.first_seen_at, changed = at, True
        label = declared_label(mention.facets)
        if label and row.version_id is None and row.version is None:
            # The producer says which version it read: what it says of it (schema...) describes it.
            row.version, changed = self._version(dataset, label, at, mention.facets, None), True
        if merge_facets(row.facets, row.facet_times, mention.io_facets, at):
            changed = True
        if changed:
            self.ws.mark(row)

    def _run_output(
        self, run: Run, dataset: Dataset, version: DatasetVersion, mention: DatasetMention, at: datetime
    ) -> None:
        row, changed = self.ws.run_output(run, dataset, version, at)
        if at < row.first_seen_at:
            row.first_seen_at, changed = at, True
        if not _points_at(row, "version", version) and _order(version) > _order(row.version):
            row.version, changed = version, True  # two versions of one dataset from one run: the newest
        if merge_facets(row.facets, row.facet_times, mention.io_facets, at):
            changed = True
        if changed:
            self.ws.mark(row)

    def _column_lineage(self, dataset: Dataset, mention: DatasetMention, run: Run, at: datetime) -> None:
        if not mention.column_inputs:
            return
        existing = self.ws.column_lineage.setdefault(dataset.pk, {})
        for item in mention.column_inputs:
            source = self.ws.datasets[(item.namespace, item.name)]
            key = (item.field, source.pk, item.input_field[:1024])
            values = {
                "transformations": item.transformations,
                "transformation_description": item.description,
                "transformation_type": item.type,
            }
            row = existing.get(key)
            if row is None:
                row = Table.of(ColumnLineage).new(
                    dataset=dataset,
                    field=key[0],
                    input_dataset=source,
                    input_field=key[2],
                    run=run,
                    event_time=at,
                    **values,
                )
                existing[key] = row
                self.ws.add(row)
            elif at > row.event_time or (at == row.event_time and run.run_id > _run_id_of(row)):
                for attr, value in values.items():
                    setattr(row, attr, value)
                row.run, row.event_time = run, at
                self.ws.mark(row)

    # --- job edges ---------------------------------------------------------------------------------
    def _update_edges(self, job: Job, run: Run, moved: bool) -> None:
        """Keep the job's entity-level edges equal to its latest run's inputs and outputs, closing
        (never overwriting) edges that stop applying. A run that lands before the latest one, or
        moves earlier, marks the job for a rebuild of its history from that run's start on."""
        ws = self.ws
        latest = ws.latest_runs.get(job.pk)
        late = latest is not None and latest.pk != run.pk and _run_key(run) < _run_key(latest)
        if job.pk in ws.rebuild_jobs or late or (latest is not None and latest.pk == run.pk and moved):
            since = ws.rebuild_jobs.get(job.pk)
            at = run.first_event_time
            ws.rebuild_jobs[job.pk] = at if since is None else min(since, at)
            return
        at = run.first_event_time
        want = ws.run_io(run)
        edges = ws.edges[job.pk]
        open_edges = {(e.dataset_id, e.direction): e for e in edges if e.source == RUNS and e.valid_to is None}
        if latest is None or latest.pk != run.pk:
            for key, edge in open_edges.items():
                if key in want:
                    continue
                if edge.valid_from >= at:
                    edges.remove(edge)
                    ws.discard(edge)
                else:
                    edge.valid_to = at
                    ws.mark(edge)
            ws.latest_runs[job.pk] = run
            job.latest_run = run
            ws.mark(job)
            open_edges = {k: e for k, e in open_edges.items() if k in want}
        for dataset_id, direction in sorted(want - open_edges.keys()):
            closed = next(
                (
                    e
                    for e in edges
                    if e.source == RUNS and e.dataset_id == dataset_id and e.direction == direction and e.valid_to == at
                ),
                None,
            )
            if closed is not None:
                closed.valid_to = None
                ws.mark(closed)
            else:
                edge = Table.of(JobDatasetEdge).new(
                    job=job, dataset_id=dataset_id, direction=direction, source=RUNS, valid_from=at
                )
                edges.append(edge)
                ws.add(edge)

    # --- dataset and job events --------------------------------------------------------------------
    def _apply_dataset_event(self, event: ParsedEvent, mention: DatasetMention) -> None:
        at = event.event_time
        dataset = self._mentioned(event)[mention.key]
        label = declared_label(mention.facets)
        if not label and "schema" in mention.facets:
            label = f"schema:{schema_digest(normalise_fields(mention.facets['schema']))[:32]}"
        if label:
            self._version(dataset, label, at, mention.facets, None)

    def _apply_job_event(self, event: ParsedEvent) -> None:
        at = event.event_time
        job = self._job((event.job_namespace, event.job_name), event.job_facets, at)
        datasets = self._mentioned(event)
        declared = [(datasets[m.key], JobDatasetEdge.Direction.IN) for m in event.inputs]
        declared += [(datasets[m.key], JobDatasetEdge.Direction.OUT) for m in event.outputs]
        edges = self.ws.edges[job.pk]
        for dataset, direction in declared:
            edge = next(
                (
                    e
                    for e in edges
                    if e.source == STATIC
                    and e.valid_to is None
                    and e.dataset_id == dataset.pk
                    and e.direction == direction
                ),
                None,
            )
            if edge is None:
                edge = Table.of(JobDatasetEdge).new(
                    job=job, dataset=dataset, direction=direction, source=STATIC, valid_from=at
                )
                edges.append(edge)
                self.ws.add(edge)
            elif at < edge.valid_from:
                edge.valid_from = at
                self.ws.mark(edge)


def _run_id_of(row: ColumnLineage) -> str:
    """The runId that last asserted a column edge ('' when none): breaks ties between runs."""
    return row.run.run_id if row.run is not None else ""


def _derive_dataset_fields(dataset: Dataset) -> None:
    facets = dataset.facets
    if "schema" in facets:
        dataset.fields = normalise_fields(facets["schema"])
    dataset.description = _str(_facet(facets, "documentation").get("description"))
    dataset.source_name = _str(_facet(facets, "dataSource").get("name"))
    declared = _str(_facet(facets, "datasetType").get("datasetType")).upper()
    dataset.type = "STREAM" if declared in _STREAM_TYPES else "DB_TABLE"
    tags = _facet(facets, "tags").get("tags")
    if isinstance(tags, list):
        dataset.tags = sorted({_str(t.get("key")) for t in tags if isinstance(t, dict) and _str(t.get("key"))})
    lifecycle = _str(_facet(facets, "lifecycleStateChange").get("lifecycleStateChange")).upper()
    if lifecycle:
        dataset.lifecycle_state = lifecycle
        dataset.is_deleted = lifecycle == "DROP"


# --- schema change bookkeeping ------------------------------------------------------------------------
def _record_schema_change(dataset: Dataset, before: DatasetVersion, after: DatasetVersion) -> None:
    if before.schema_digest == after.schema_digest:
        return
    diff = diff_schemas(before.fields, after.fields)
    if diff is None:
        return
    SchemaChange.objects.create(
        dataset=dataset,
        from_version=before,
        to_version=after,
        level=diff.level,
        changes=diff.changes,
        explanation=diff.explanation,
        created_at=after.created_at,
    )


def _points_at(row: Any, relation: str, target: Any) -> bool:
    """Whether ``row.<relation>`` is ``target``, told without loading the related row: a stored
    row's foreign key names the target's primary key, or the target is the related object itself."""
    if row._state.fields_cache.get(relation) is target:
        return True
    return target.pk is not None and getattr(row, f"{relation}_id") == target.pk


def _order(version: DatasetVersion) -> tuple[datetime, Any]:
    return (version.created_at, version.uuid)


WINDOW_COLUMNS = ("id", "dataset_id", "version", "created_at", "uuid", "schema_digest")


def schema_windows(wanted: dict[int, int]) -> dict[int, list[DatasetVersion]]:
    """For each dataset id, its newest ``k`` versions that carry a schema (newest first).

    One LATERAL query on PostgreSQL; one query per dataset elsewhere. Only what orders and
    compares versions is read: a version's fields (and its facets) can be tens of megabytes and
    are loaded, lazily, only for a predecessor whose schema actually differs."""
    if not wanted:
        return {}
    windows: dict[int, list[DatasetVersion]] = {pk: [] for pk in wanted}
    if connection.vendor == "postgresql":
        table = DatasetVersion._meta.db_table
        rows = DatasetVersion.objects.raw(
            f"""SELECT v.id, v.dataset_id, v.version, v.created_at, v.uuid, v.schema_digest
                FROM unnest(%s::bigint[], %s::int[]) AS t(dataset_id, k)
                CROSS JOIN LATERAL (
                    SELECT * FROM {table} d WHERE d.dataset_id = t.dataset_id AND d.schema_digest <> ''
                    ORDER BY d.created_at DESC, d.uuid DESC LIMIT t.k
                ) v""",
            [list(wanted), list(wanted.values())],
        )
        for version in rows:
            windows[version.dataset_id].append(version)
        for versions in windows.values():
            versions.sort(key=_order, reverse=True)
        return windows
    for pk, k in wanted.items():
        query = DatasetVersion.objects.filter(dataset_id=pk).exclude(schema_digest="").only(*WINDOW_COLUMNS)
        windows[pk] = list(query.order_by("-created_at", "-uuid")[:k])
    return windows


def refresh_schema_tail(
    dataset: Dataset, touched: list[DatasetVersion], window: list[DatasetVersion] | None = None
) -> None:
    """Redo the schema changes into the touched versions when they are the newest of the dataset
    (the usual case: new versions at the end); otherwise rebuild the dataset's whole chain.

    One query reads the newest ``len(touched) + 1`` versions with a schema: if every touched
    version is among them, the one left over (if any) is the predecessor of the chain's new tail.
    """
    touched = sorted(touched, key=_order)
    touched_pks = {v.pk for v in touched}
    if window is None:
        window = schema_windows({dataset.pk: len(touched) + 1})[dataset.pk]
    head = window[: len(touched)]
    if {v.pk for v in head} != touched_pks:
        rebuild_schema_changes(dataset)
        return
    previous = window[len(touched)] if len(window) > len(touched) else None
    if any(not getattr(v, "_custody_created", False) for v in touched):
        stale = Q(to_version__in=touched) | (Q(from_version=previous) if previous is not None else Q(pk__in=[]))
        SchemaChange.objects.filter(stale).delete()
    chain = ([previous] if previous is not None else []) + touched
    for before_version, after_version in pairwise(chain):
        _record_schema_change(dataset, before_version, after_version)


def rebuild_schema_changes(dataset: Dataset) -> None:
    """Recompute every schema change of a dataset from its versions (after a late version)."""
    versions = list(dataset.versions.exclude(schema_digest="").order_by("created_at", "uuid"))
    SchemaChange.objects.filter(dataset=dataset).delete()
    for before, after in pairwise(versions):
        _record_schema_change(dataset, before, after)


# --- job edges, from scratch ---------------------------------------------------------------------------
def _run_key(run: Run) -> tuple[datetime, str]:
    return (run.first_event_time, run.run_id)


def rebuild_job_edges(job: Job, since: datetime | None = None) -> None:
    """Recompute the job's run-derived edges from its runs, in (first event time, runId) order:
    each run's inputs and outputs hold from its start until the next run's start.

    With ``since``, only the history from that instant on is replayed (the runs that start then or
    later), from the edges open just before it: a run that arrives a little late costs the runs
    after it, not the job's whole history. Without it, everything is."""
    runs_query = Run.objects.filter(job=job)
    inputs = RunInput.objects.filter(run__job=job)
    outputs = RunOutput.objects.filter(run__job=job)
    edges = JobDatasetEdge.objects.filter(job=job, source=RUNS)
    opened: dict[tuple[int, int], datetime] = {}
    if since is not None:
        runs_query = runs_query.filter(first_event_time__gte=since)
        inputs = inputs.filter(run__first_event_time__gte=since)
        outputs = outputs.filter(run__first_event_time__gte=since)
        edges = edges.filter(Q(valid_to__isnull=True) | Q(valid_to__gte=since))
        # What held just before ``since`` (and how long it had held) is where the replay starts.
        for dataset_pk, direction, valid_from in edges.filter(valid_from__lt=since).values_list(
            "dataset_id", "direction", "valid_from"
        ):
            opened[(dataset_pk, direction)] = valid_from
    runs = sorted(runs_query.only("id", "run_id", "first_event_time"), key=_run_key)
    io: dict[int, set[tuple[int, int]]] = {run.pk: set() for run in runs}
    for run_pk, dataset_pk in inputs.values_list("run_id", "dataset_id"):
        io[run_pk].add((dataset_pk, JobDatasetEdge.Direction.IN))
    for run_pk, dataset_pk in outputs.values_list("run_id", "dataset_id"):
        io[run_pk].add((dataset_pk, JobDatasetEdge.Direction.OUT))
    rows: list[JobDatasetEdge] = []
    last_closed: dict[tuple[int, int], JobDatasetEdge] = {}
    for run in runs:
        at = run.first_event_time
        want = io[run.pk]
        for key in list(opened):
            if key not in want:
                start = opened.pop(key)
                if start < at:
                    last_closed[key] = _edge(job, key, start, at)
                    rows.append(last_closed[key])
        for key in want:
            if key in opened:
                continue
            previous = last_closed.get(key)
            if previous is not None and previous.valid_to == at:
                # closed and reopened at the same instant: one continuous edge, as incrementally
                rows.remove(previous)
                del last_closed[key]
                opened[key] = previous.valid_from
            else:
                opened[key] = at
    rows.extend(_edge(job, key, start, None) for key, start in opened.items())
    edges.delete()
    JobDatasetEdge.objects.bulk_create(rows)
    if since is None or runs:
        Job.objects.filter(pk=job.pk).update(latest_run=runs[-1] if runs else None)


def _edge(job: Job, key: tuple[int, int], start: datetime, end: datetime | None) -> JobDatasetEdge:
    return JobDatasetEdge(job=job, dataset_id=key[0], direction=key[1], source=RUNS, valid_from=start, valid_to=end)
