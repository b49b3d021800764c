"""A database-id-free picture of the whole lineage graph, for comparing two ingestion histories."""

from __future__ import annotations

from typing import Any

from lineage.models import (
    CodeCommit,
    ColumnLineage,
    Dataset,
    DatasetSymlink,
    DatasetVersion,
    Job,
    JobDatasetEdge,
    RawEvent,
    Run,
    RunInput,
    RunOutput,
    SchemaChange,
)


def _ds(dataset: Dataset | None) -> str | None:
    return None if dataset is None else f"{dataset.namespace.name}:{dataset.name}"


def _ver(version: DatasetVersion | None) -> str | None:
    return None if version is None else f"{_ds(version.dataset)}@{version.version}"


def snapshot() -> dict[str, Any]:
    return {
        "raw_events": sorted(RawEvent.objects.values_list("digest", flat=True)),
        "jobs": sorted(
            (
                str(j),
                j.type,
                j.description,
                j.location,
                j.facets,
                str(j.parent) if j.parent else None,
                j.latest_run.run_id if j.latest_run else None,
                j.created_at,
                j.updated_at,
            )
            for j in Job.objects.select_related("namespace", "parent__namespace", "latest_run")
        ),
        "runs": sorted(
            (
                r.run_id,
                str(r.job),
                r.state,
                r.first_event_time,
                r.last_event_time,
                r.started_at,
                r.ended_at,
                r.nominal_start_time,
                r.parent_run_id,
                r.parent.run_id if r.parent else None,
                r.facets,
                str(r.code_commit) if r.code_commit else None,
            )
            for r in Run.objects.select_related("job__namespace", "parent", "code_commit")
        ),
        "datasets": sorted(
            (
                _ds(d),
                d.type,
                d.fields,
                d.facets,
                d.tags,
                d.description,
                d.source_name,
                _ver(d.current_version),
                d.is_deleted,
                d.lifecycle_state,
                _ds(d.renamed_to),
                d.created_at,
                d.updated_at,
            )
            for d in Dataset.objects.select_related(
                "namespace", "current_version__dataset__namespace", "renamed_to__namespace"
            )
        ),
        "versions": sorted(
            (
                _ver(v),
                str(v.uuid),
                v.created_at,
                v.run.run_id if v.run else None,
                v.fields,
                v.schema_digest,
                v.facets,
                v.lifecycle_state,
            )
            for v in DatasetVersion.objects.select_related("dataset__namespace", "run")
        ),
        "schema_changes": sorted(
            (_ver(c.from_version), _ver(c.to_version), c.level, c.changes, c.explanation, c.created_at)
            for c in SchemaChange.objects.select_related(
                "from_version__dataset__namespace", "to_version__dataset__namespace"
            )
        ),
        "inputs": sorted(
            (i.run.run_id, _ds(i.dataset), _ver(i.version), i.first_seen_at, i.facets)
            for i in RunInput.objects.select_related("run", "dataset__namespace", "version__dataset__namespace")
        ),
        "outputs": sorted(
            (o.run.run_id, _ds(o.dataset), _ver(o.version), o.first_seen_at, o.facets)
            for o in RunOutput.objects.select_related("run", "dataset__namespace", "version__dataset__namespace")
        ),
        "edges": sorted(
            (str(e.job), _ds(e.dataset), e.direction, e.source, e.valid_from, e.valid_to)
            for e in JobDatasetEdge.objects.select_related("job__namespace", "dataset__namespace")
        ),
        "column_lineage": sorted(
            (
                _ds(c.dataset),
                c.field,
                _ds(c.input_dataset),
                c.input_field,
                c.transformations,
                c.run.run_id if c.run else None,
                c.event_time,
            )
            for c in ColumnLineage.objects.select_related("dataset__namespace", "input_dataset__namespace", "run")
        ),
        "symlinks": sorted(
            (_ds(s.dataset), s.namespace, s.name, s.type)
            for s in DatasetSymlink.objects.select_related("dataset__namespace")
        ),
        "commits": sorted((c.repo_url, c.sha, c.branch, c.first_seen_at) for c in CodeCommit.objects.all()),
    }
