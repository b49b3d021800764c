"""What production depends on: current and past production deployments and the upstream lineage
closure of model versions (model version → producing run → its inputs' versions → their producing
runs, transitively)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from lineage.models import DatasetVersion, Run, RunInput

CHUNK = 2000


def production_environments() -> tuple[str, ...]:
    return tuple(getattr(settings, "CUSTODY_PRODUCTION_ENVIRONMENTS", ("production", "prod")))


def current_production_deployments() -> list[Any]:
    """The deployment in force at each production (environment, target): the newest one."""
    from governance.promotions.models import Deployment

    current: dict[tuple[str, str], Any] = {}
    rows = (
        Deployment.objects.filter(environment__in=production_environments())
        .select_related("model_version__model", "promotion")
        .order_by("environment", "target", "-deployed_at", "-id")
    )
    for dep in rows.iterator(chunk_size=CHUNK):
        current.setdefault((dep.environment, dep.target), dep)
    return list(current.values())


def ever_deployed_model_version_ids() -> set[int]:
    from governance.promotions.models import Deployment

    return set(
        Deployment.objects.filter(environment__in=production_environments()).values_list("model_version_id", flat=True)
    )


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    items = sorted(ids)
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


@dataclass
class Closure:
    run_ids: set[int] = field(default_factory=set)
    version_ids: set[int] = field(default_factory=set)
    dataset_ids: set[int] = field(default_factory=set)
    run_uuids: set[str] = field(default_factory=set)


def lineage_closure(model_version_ids: Iterable[int]) -> Closure:
    from governance.registry.models import ModelVersion

    result = Closure()
    frontier: set[int] = set()
    for chunk in _chunks(set(model_version_ids)):
        for run_id, dv_id in ModelVersion.objects.filter(pk__in=chunk).values_list("run_id", "dataset_version_id"):
            if run_id:
                frontier.add(run_id)
            if dv_id:
                result.version_ids.add(dv_id)
    while frontier:
        result.run_ids |= frontier
        unresolved: dict[int, Any] = {}  # dataset id -> latest run time that read it without a version
        new_versions: set[int] = set()
        for chunk in _chunks(frontier):
            times = dict(Run.objects.filter(pk__in=chunk).values_list("pk", "first_event_time"))
            for run_id, dataset_id, version_id in RunInput.objects.filter(run_id__in=chunk).values_list(
                "run_id", "dataset_id", "version_id"
            ):
                result.dataset_ids.add(dataset_id)
                if version_id:
                    new_versions.add(version_id)
                else:
                    at = times.get(run_id)
                    if at is not None and (dataset_id not in unresolved or unresolved[dataset_id] < at):
                        unresolved[dataset_id] = at
        # An input without a version: protect every version of that dataset up to the read.
        for dataset_id, at in unresolved.items():
            new_versions |= set(
                DatasetVersion.objects.filter(dataset_id=dataset_id, created_at__lte=at).values_list("pk", flat=True)
            )
        new_versions -= result.version_ids
        result.version_ids |= new_versions
        frontier = set()
        for chunk in _chunks(new_versions):
            for dataset_id, run_id in DatasetVersion.objects.filter(pk__in=chunk).values_list("dataset_id", "run_id"):
                result.dataset_ids.add(dataset_id)
                if run_id and run_id not in result.run_ids:
                    frontier.add(run_id)
    for chunk in _chunks(result.run_ids):
        result.run_uuids |= set(Run.objects.filter(pk__in=chunk).values_list("run_id", flat=True))
    return result
