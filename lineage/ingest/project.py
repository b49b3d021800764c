"""Projection of validated OpenLineage events onto the lineage graph.

Every derived value is a function of the *set* of events received, never of their order: facets
merge per key by event time, run states rank by (class, time, priority), versions date from their
earliest mention, and job edges are rebuilt from the runs whenever a late event lands in the past.
Rows are locked in one global order (job, run, datasets by identifier) so concurrent ingestion on
PostgreSQL cannot deadlock on the graph.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from itertools import pairwise
from typing import Any, TypeVar

from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from lineage.ingest.errors import InvalidEvent
from lineage.ingest.event import (
    _NAMESPACE_FORBIDDEN,
    DatasetMention,
    ParsedEvent,
    parse_event_time,
)
from lineage.ingest.facets import merge_facets
from lineage.ingest.schema import diff_schemas, normalise_fields, schema_digest
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
    SchemaChange,
)

M = TypeVar("M", bound=models.Model)

# Deterministic ids for versions: uuid5 under this namespace.
VERSION_UUID_NAMESPACE = uuid.UUID("6f2b1c3e-8f0a-5d5e-9c1b-2a7e4d9f0c11")

# (class, priority): class 2 terminal beats 1 running beats 0 no state; on equal times the
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


def lock_or_create(model: type[M], lookup: dict[str, Any], defaults: dict[str, Any]) -> tuple[M, bool]:
    """Fetch the row with a row lock (PostgreSQL), creating it when missing; race-safe."""
    obj = model._default_manager.select_for_update().filter(**lookup).first()
    if obj is not None:
        return obj, False
    try:
        with transaction.atomic():
            return model._default_manager.create(**lookup, **defaults), True
    except IntegrityError:
        return model._default_manager.select_for_update().get(**lookup), False


def widen_lifetime(model: type[models.Model], pk: int, at: datetime) -> None:
    """Stretch a row's [created_at, updated_at] to include ``at`` (min/max: order-independent)."""
    model._default_manager.filter(pk=pk, created_at__gt=at).update(created_at=at)
    model._default_manager.filter(pk=pk, updated_at__lt=at).update(updated_at=at)


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


def _check_identifier(namespace: Any, name: Any, path: str) -> tuple[str, str]:
    if not isinstance(namespace, str) or not namespace.strip() or len(namespace) > 1024:
        raise InvalidEvent("must be a non-empty string of at most 1024 characters", field=f"{path}.namespace")
    if _NAMESPACE_FORBIDDEN.search(namespace):
        raise InvalidEvent("contains a character that namespaces may not contain", field=f"{path}.namespace")
    if not isinstance(name, str) or not name.strip() or len(name) > 1024:
        raise InvalidEvent("must be a non-empty string of at most 1024 characters", field=f"{path}.name")
    return namespace, name


class Projector:
    """Applies events to the graph. One per request or batch; caches namespaces between events.

    Call :meth:`reset` after a rolled-back event: cached rows may have been created inside it.
    """

    def __init__(self) -> None:
        self._namespaces: dict[str, Namespace] = {}

    def reset(self) -> None:
        self._namespaces.clear()

    # --- entry point ----------------------------------------------------------------------------
    def apply(self, event: ParsedEvent) -> None:
        if event.kind == "DatasetEvent":
            assert event.dataset is not None
            self._apply_dataset_event(event, event.dataset)
        elif event.kind == "JobEvent":
            self._apply_job_event(event)
        else:
            self._apply_run_event(event)

    # --- namespaces, jobs, datasets --------------------------------------------------------------
    def namespace(self, name: str, at: datetime) -> Namespace:
        ns = self._namespaces.get(name)
        if ns is None:
            ns, created = Namespace.objects.get_or_create(name=name, defaults={"created_at": at, "updated_at": at})
            if not created and at < ns.created_at:
                Namespace.objects.filter(pk=ns.pk, created_at__gt=at).update(created_at=at)
            self._namespaces[name] = ns
        return ns

    def _job(self, namespace: str, name: str, facets: dict[str, Any], at: datetime) -> Job:
        ns = self.namespace(namespace, at)
        job, changed = lock_or_create(Job, {"namespace": ns, "name": name}, {"created_at": at, "updated_at": at})
        if merge_facets(job.facets, job.facet_times, facets, at):
            changed = True
            job_type = _str(_facet(job.facets, "jobType").get("processingType")).upper()
            job.type = "STREAM" if job_type in _STREAM_TYPES else "BATCH"
            job.description = _str(_facet(job.facets, "documentation").get("description"))
            location = _facet(job.facets, "sourceCodeLocation")
            job.location = _str(location.get("url")) or _str(location.get("repoUrl"))
        if at < job.created_at:
            job.created_at, changed = at, True
        if at > job.updated_at:
            job.updated_at, changed = at, True
        if changed:
            job.save()
        return job

    def _dataset(self, mention: DatasetMention, at: datetime, facets: dict[str, Any] | None = None) -> Dataset:
        ns = self.namespace(mention.namespace, at)
        dataset, changed = lock_or_create(
            Dataset,
            {"namespace": ns, "name": mention.name},
            {"created_at": at, "updated_at": at, "physical_name": mention.name},
        )
        facets = mention.facets if facets is None else facets
        if merge_facets(dataset.facets, dataset.facet_times, facets, at):
            changed = True
            self._derive_dataset_fields(dataset)
        if at < dataset.created_at:
            dataset.created_at, changed = at, True
        if at > dataset.updated_at:
            dataset.updated_at, changed = at, True
        if changed:
            dataset.save()
        self._record_identifiers(dataset, facets, at)
        return dataset

    def _dataset_ref(self, namespace: str, name: str, at: datetime) -> Dataset:
        """A dataset only named (e.g. as a column-lineage input): created if unknown, not locked."""
        ns = self.namespace(namespace, at)
        dataset, created = Dataset.objects.get_or_create(
            namespace=ns, name=name, defaults={"created_at": at, "updated_at": at, "physical_name": name}
        )
        if not created and not dataset.created_at <= at <= dataset.updated_at:
            widen_lifetime(Dataset, dataset.pk, at)
        return dataset

    @staticmethod
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

    def _record_identifiers(self, dataset: Dataset, facets: dict[str, Any], at: datetime) -> None:
        links: list[DatasetSymlink] = []
        identifiers = _facet(facets, "symlinks").get("identifiers")
        if isinstance(identifiers, list):
            for ident in identifiers:
                if isinstance(ident, dict) and _str(ident.get("namespace")) and _str(ident.get("name")):
                    links.append(
                        DatasetSymlink(
                            dataset=dataset,
                            namespace=ident["namespace"][:1024],
                            name=ident["name"][:1024],
                            type=_str(ident.get("type"))[:64],
                        )
                    )
        lifecycle = _facet(facets, "lifecycleStateChange")
        previous = lifecycle.get("previousIdentifier")
        if _str(lifecycle.get("lifecycleStateChange")).upper() == "RENAME" and isinstance(previous, dict):
            prev_ns, prev_name = _check_identifier(
                previous.get("namespace"), previous.get("name"), "facets.lifecycleStateChange.previousIdentifier"
            )
            if (prev_ns, prev_name) != (dataset.namespace.name, dataset.name):
                old = self._dataset_ref(prev_ns, prev_name, at)
                Dataset.objects.filter(pk=old.pk).update(renamed_to=dataset)
                links.append(DatasetSymlink(dataset=dataset, namespace=prev_ns, name=prev_name, type="RENAMED_FROM"))
        if links:
            DatasetSymlink.objects.bulk_create(links, ignore_conflicts=True)

    # --- versions and schema changes ---------------------------------------------------------------
    def _version(
        self, dataset: Dataset, label: str, at: datetime, facets: dict[str, Any], run: Run | None
    ) -> DatasetVersion:
        version_uuid = uuid.uuid5(VERSION_UUID_NAMESPACE, f"{dataset.namespace.name}\x00{dataset.name}\x00{label}")
        version, changed = lock_or_create(
            DatasetVersion,
            {"dataset": dataset, "version": label[:1024]},
            {"uuid": version_uuid, "created_at": at, "run": run},
        )
        if at < version.created_at:
            version.created_at, changed = at, True
        if run is not None and version.run_id is None:
            version.run, changed = run, True
        if merge_facets(version.facets, version.facet_times, facets, at):
            changed = True
            if "schema" in version.facets:
                version.fields = normalise_fields(version.facets["schema"])
                version.schema_digest = schema_digest(version.fields)
            version.lifecycle_state = _str(
                _facet(version.facets, "lifecycleStateChange").get("lifecycleStateChange")
            ).upper()
        if changed:
            version.save()
            self._refresh_dataset_versions(dataset, version)
        return version

    @staticmethod
    def _declared_label(facets: dict[str, Any]) -> str:
        declared = _facet(facets, "version").get("datasetVersion")
        if isinstance(declared, str | int) and str(declared):
            return str(declared)
        return ""

    def _refresh_dataset_versions(self, dataset: Dataset, touched: DatasetVersion) -> None:
        latest = dataset.versions.order_by("-created_at", "-uuid").only("id").first()
        if latest is not None and dataset.current_version_id != latest.id:
            dataset.current_version_id = latest.id
            Dataset.objects.filter(pk=dataset.pk).update(current_version_id=latest.id)
        if not touched.schema_digest:
            return
        with_schema = dataset.versions.exclude(schema_digest="")
        after = Q(created_at__gt=touched.created_at) | Q(created_at=touched.created_at, uuid__gt=touched.uuid)
        if with_schema.filter(after).exists():
            rebuild_schema_changes(dataset)
            return
        before = Q(created_at__lt=touched.created_at) | Q(created_at=touched.created_at, uuid__lt=touched.uuid)
        previous = with_schema.filter(before).order_by("-created_at", "-uuid").first()
        SchemaChange.objects.filter(to_version=touched).delete()
        if previous is not None:
            SchemaChange.objects.filter(from_version=previous).delete()
            _record_schema_change(dataset, previous, touched)

    # --- run events --------------------------------------------------------------------------------
    def _apply_run_event(self, event: ParsedEvent) -> None:
        at = event.event_time
        job = self._job(event.job_namespace, event.job_name, event.job_facets, at)
        run, moved = self._run(event, job)
        datasets = self._mentioned_datasets(event, at)
        for mention in event.inputs:
            self._run_input(run, datasets[mention.key], mention, at)
        for index, mention in enumerate(event.outputs):
            dataset = datasets[mention.key]
            label = self._declared_label(mention.facets) or str(
                uuid.uuid5(VERSION_UUID_NAMESPACE, f"{mention.namespace}\x00{mention.name}\x00run\x00{run.run_id}")
            )
            version = self._version(dataset, label, at, mention.facets, run)
            self._run_output(run, dataset, version, mention, at)
            self._column_lineage(dataset, mention, run, at, f"outputs[{index}]")
        update_job_edges(job, run, moved)

    def _mentioned_datasets(self, event: ParsedEvent, at: datetime) -> dict[tuple[str, str], Dataset]:
        """Upsert every dataset the event names, in identifier order (the global lock order)."""
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        first: dict[tuple[str, str], DatasetMention] = {}
        for mention in [*event.inputs, *event.outputs]:
            merged.setdefault(mention.key, {}).update(mention.facets)
            first.setdefault(mention.key, mention)
        return {key: self._dataset(first[key], at, merged[key]) for key in sorted(merged)}

    def _run(self, event: ParsedEvent, job: Job) -> tuple[Run, bool]:
        at = event.event_time
        now = timezone.now()
        run, created = lock_or_create(
            Run,
            {"run_id": event.run_id},
            {"job": job, "first_event_time": at, "last_event_time": at, "created_at": now, "updated_at": now},
        )
        if run.job_id != job.id:
            raise InvalidEvent(
                f"run {event.run_id!r} already belongs to job {run.job.namespace.name}:{run.job.name}; "
                "a runId identifies one run of one job",
                field="run.runId",
            )
        moved = created or at < run.first_event_time
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
        self._reference_parent_job(job, event.run_facets, at)
        if merge_facets(run.facets, run.facet_times, event.run_facets, at):
            self._derive_run_fields(run)
        if run.code_commit_id is None:
            run.code_commit = self._code_commit(event.job_facets, event.run_facets, at)
        run.updated_at = now
        run.save()
        if created:
            Run.objects.filter(parent_run_id=run.run_id, parent__isnull=True).update(parent=run)
        return run, moved

    @staticmethod
    def _derive_run_fields(run: Run) -> None:
        nominal = _facet(run.facets, "nominalTime")
        run.nominal_start_time = _lenient_time(nominal.get("nominalStartTime"))
        run.nominal_end_time = _lenient_time(nominal.get("nominalEndTime"))
        parent = _facet(run.facets, "parent") or _facet(run.facets, "parentRun")
        parent_run_id = _str(_facet(parent, "run").get("runId"))[:255]
        if parent_run_id != run.parent_run_id and parent_run_id != run.run_id:
            parent_job = _facet(parent, "job")
            run.parent_run_id = parent_run_id
            run.parent_job_namespace = _str(parent_job.get("namespace"))[:1024]
            run.parent_job_name = _str(parent_job.get("name"))[:1024]
            run.parent = Run.objects.filter(run_id=parent_run_id).first() if parent_run_id else None

    def _reference_parent_job(self, job: Job, run_facets: dict[str, Any], at: datetime) -> None:
        """A `parent` facet names the parent job: create it if unknown, and make it this job's parent
        when this is the newest reference (ties broken by identity, so order never matters)."""
        parent_job = _facet(_facet(run_facets, "parent") or _facet(run_facets, "parentRun"), "job")
        if not parent_job:
            return
        ns, name = _check_identifier(parent_job.get("namespace"), parent_job.get("name"), "run.facets.parent.job")
        row, created = Job.objects.get_or_create(
            namespace=self.namespace(ns, at), name=name, defaults={"created_at": at, "updated_at": at}
        )
        if not created and not row.created_at <= at <= row.updated_at:
            widen_lifetime(Job, row.pk, at)
        rank = f"{at.isoformat()}|{ns}\x00{name}"
        if row.pk != job.pk and rank > job.parent_rank:
            Job.objects.filter(pk=job.pk).update(parent=row, parent_rank=rank)
            job.parent, job.parent_rank = row, rank

    @staticmethod
    def _code_commit(job_facets: dict[str, Any], run_facets: dict[str, Any], at: datetime) -> CodeCommit | None:
        """The commit a run executed: the SDK's `custody_git` run facet, else `sourceCodeLocation`."""
        git = _facet(run_facets, "custody_git")
        location = _facet(job_facets, "sourceCodeLocation")
        sha = _str(git.get("commit")) or _str(location.get("version"))
        repo = _str(git.get("repoUrl")) or _str(location.get("repoUrl")) or _str(location.get("url"))
        if not sha or not repo:
            return None
        commit, created = CodeCommit.objects.get_or_create(
            repo_url=repo[:1024],
            sha=sha[:255],
            defaults={
                "vcs_type": (_str(location.get("type")) or "git")[:32],
                "branch": (_str(git.get("branch")) or _str(location.get("branch")))[:512],
                "tag": _str(location.get("tag"))[:512],
                "path": _str(location.get("path"))[:1024],
                "url": _str(location.get("url"))[:2048],
                "author": _str(git.get("author"))[:512],
                "is_dirty": git.get("dirty") if isinstance(git.get("dirty"), bool) else None,
                "diff_digest": _str(git.get("diffDigest"))[:71],
                "first_seen_at": at,
            },
        )
        if not created and at < commit.first_seen_at:
            CodeCommit.objects.filter(pk=commit.pk).update(first_seen_at=at)
        return commit

    def _run_input(self, run: Run, dataset: Dataset, mention: DatasetMention, at: datetime) -> None:
        row, changed = lock_or_create(RunInput, {"run": run, "dataset": dataset}, {"first_seen_at": at})
        if at < row.first_seen_at:
            row.first_seen_at, changed = at, True
        label = self._declared_label(mention.facets)
        if label and row.version_id is None:
            row.version, changed = self._version(dataset, label, at, {}, None), True
        if merge_facets(row.facets, row.facet_times, mention.io_facets, at):
            changed = True
        if changed:
            row.save()

    def _run_output(
        self, run: Run, dataset: Dataset, version: DatasetVersion, mention: DatasetMention, at: datetime
    ) -> None:
        row, changed = lock_or_create(
            RunOutput, {"run": run, "dataset": dataset}, {"first_seen_at": at, "version": version}
        )
        if at < row.first_seen_at:
            row.first_seen_at, changed = at, True
        if row.version_id != version.id and at >= row.first_seen_at:
            row.version, changed = version, True
        if merge_facets(row.facets, row.facet_times, mention.io_facets, at):
            changed = True
        if changed:
            row.save()

    def _column_lineage(self, dataset: Dataset, mention: DatasetMention, run: Run, at: datetime, path: str) -> None:
        facet = _facet(mention.facets, "columnLineage")
        fields = facet.get("fields")
        if not isinstance(fields, dict) or not fields:
            return
        wanted: dict[tuple[str, int, str], dict[str, Any]] = {}
        for out_field, spec in fields.items():
            if not isinstance(spec, dict) or not isinstance(spec.get("inputFields"), list):
                continue
            for j, inp in enumerate(spec["inputFields"]):
                where = f"{path}.facets.columnLineage.fields.{out_field}.inputFields[{j}]"
                if not isinstance(inp, dict):
                    raise InvalidEvent("must be an object", field=where)
                ns, name = _check_identifier(inp.get("namespace"), inp.get("name"), where)
                if not isinstance(inp.get("field"), str) or not inp["field"]:
                    raise InvalidEvent("must be a non-empty string", field=f"{where}.field")
                source = self._dataset_ref(ns, name, at)
                transformations = inp.get("transformations")
                wanted[(out_field[:1024], source.pk, inp["field"][:1024])] = {
                    "transformations": transformations if isinstance(transformations, list) else [],
                    "transformation_description": _str(spec.get("transformationDescription")),
                    "transformation_type": _str(spec.get("transformationType"))[:64],
                }
        existing = {
            (row.field, row.input_dataset_id, row.input_field): row
            for row in ColumnLineage.objects.select_for_update().filter(dataset=dataset)
        }
        to_create, to_update = [], []
        for key, values in wanted.items():
            row = existing.get(key)
            if row is None:
                to_create.append(
                    ColumnLineage(
                        dataset=dataset,
                        field=key[0],
                        input_dataset_id=key[1],
                        input_field=key[2],
                        run=run,
                        event_time=at,
                        **values,
                    )
                )
            elif at >= row.event_time:
                for attr, value in values.items():
                    setattr(row, attr, value)
                row.run, row.event_time = run, at
                to_update.append(row)
        ColumnLineage.objects.bulk_create(to_create)
        if to_update:
            ColumnLineage.objects.bulk_update(
                to_update,
                ["transformations", "transformation_description", "transformation_type", "run", "event_time"],
            )

    # --- dataset and job events --------------------------------------------------------------------
    def _apply_dataset_event(self, event: ParsedEvent, mention: DatasetMention) -> None:
        at = event.event_time
        dataset = self._dataset(mention, at)
        label = self._declared_label(mention.facets)
        if not label and "schema" in mention.facets:
            fields = normalise_fields(mention.facets["schema"])
            label = f"schema:{schema_digest(fields)[:32]}"
        if label:
            self._version(dataset, label, at, mention.facets, None)

    def _apply_job_event(self, event: ParsedEvent) -> None:
        at = event.event_time
        job = self._job(event.job_namespace, event.job_name, event.job_facets, at)
        datasets = self._mentioned_datasets(event, at)
        declared = [(datasets[m.key], JobDatasetEdge.Direction.IN) for m in event.inputs]
        declared += [(datasets[m.key], JobDatasetEdge.Direction.OUT) for m in event.outputs]
        for dataset, direction in declared:
            static = JobDatasetEdge.objects.select_for_update().filter(
                job=job,
                dataset=dataset,
                direction=direction,
                source=JobDatasetEdge.Source.STATIC,
                valid_to__isnull=True,
            )
            edge = static.first()
            if edge is None:
                JobDatasetEdge.objects.create(
                    job=job,
                    dataset=dataset,
                    direction=direction,
                    source=JobDatasetEdge.Source.STATIC,
                    valid_from=at,
                )
            elif at < edge.valid_from:
                static.filter(pk=edge.pk).update(valid_from=at)


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


def rebuild_schema_changes(dataset: Dataset) -> None:
    """Recompute every schema change of a dataset from its versions (after a late version)."""
    versions = list(dataset.versions.exclude(schema_digest="").order_by("created_at", "uuid"))
    SchemaChange.objects.filter(dataset=dataset).delete()
    for before, after in pairwise(versions):
        _record_schema_change(dataset, before, after)


# --- job edges ---------------------------------------------------------------------------------------
def _run_io(run_ids: Iterable[int]) -> dict[int, set[tuple[int, int]]]:
    ids = list(run_ids)
    io: dict[int, set[tuple[int, int]]] = {run_id: set() for run_id in ids}
    for run_id, dataset_id in RunInput.objects.filter(run_id__in=ids).values_list("run_id", "dataset_id"):
        io[run_id].add((dataset_id, JobDatasetEdge.Direction.IN))
    for run_id, dataset_id in RunOutput.objects.filter(run_id__in=ids).values_list("run_id", "dataset_id"):
        io[run_id].add((dataset_id, JobDatasetEdge.Direction.OUT))
    return io


def _run_key(run: Run) -> tuple[datetime, str]:
    return (run.first_event_time, run.run_id)


def update_job_edges(job: Job, run: Run, moved: bool) -> None:
    """Keep the job's entity-level edges equal to its latest run's inputs and outputs, closing
    (never overwriting) edges that stop applying. In-order events take the incremental path; a run
    that lands before the latest one, or moves earlier, rebuilds the job's history from its runs."""
    latest = job.latest_run
    if latest is not None and latest.pk != run.pk and _run_key(run) < _run_key(latest):
        rebuild_job_edges(job)
        return
    if latest is not None and latest.pk == run.pk and moved:
        rebuild_job_edges(job)
        return
    at = run.first_event_time
    want = _run_io([run.pk])[run.pk]
    runs_source = JobDatasetEdge.Source.RUNS
    open_edges = {
        (edge.dataset_id, edge.direction): edge
        for edge in JobDatasetEdge.objects.filter(job=job, source=runs_source, valid_to__isnull=True)
    }
    if latest is None or latest.pk != run.pk:
        for key, edge in open_edges.items():
            if key in want:
                continue
            if edge.valid_from >= at:
                edge.delete()
            else:
                JobDatasetEdge.objects.filter(pk=edge.pk).update(valid_to=at)
        Job.objects.filter(pk=job.pk).update(latest_run=run)
        job.latest_run = run
    for dataset_id, direction in want - open_edges.keys():
        reopened = JobDatasetEdge.objects.filter(
            job=job, dataset_id=dataset_id, direction=direction, source=runs_source, valid_to=at
        ).update(valid_to=None)
        if not reopened:
            JobDatasetEdge.objects.create(
                job=job, dataset_id=dataset_id, direction=direction, source=runs_source, valid_from=at
            )


def rebuild_job_edges(job: Job) -> None:
    """Recompute the job's run-derived edges from all its runs, in (first event time, runId) order:
    each run's inputs and outputs hold from its start until the next run's start."""
    runs = sorted(Run.objects.filter(job=job).only("id", "run_id", "first_event_time"), key=_run_key)
    io = _run_io(run.pk for run in runs)
    rows: list[JobDatasetEdge] = []
    opened: dict[tuple[int, int], datetime] = {}
    for run in runs:
        at = run.first_event_time
        want = io[run.pk]
        for key in list(opened):
            if key not in want:
                start = opened.pop(key)
                if start < at:
                    rows.append(_edge(job, key, start, at))
        for key in want:
            opened.setdefault(key, at)
    rows.extend(_edge(job, key, start, None) for key, start in opened.items())
    JobDatasetEdge.objects.filter(job=job, source=JobDatasetEdge.Source.RUNS).delete()
    JobDatasetEdge.objects.bulk_create(rows)
    latest = runs[-1] if runs else None
    Job.objects.filter(pk=job.pk).update(latest_run=latest)
    job.latest_run = latest


def _edge(job: Job, key: tuple[int, int], start: datetime, end: datetime | None) -> JobDatasetEdge:
    return JobDatasetEdge(
        job=job, dataset_id=key[0], direction=key[1], source=JobDatasetEdge.Source.RUNS, valid_from=start, valid_to=end
    )
