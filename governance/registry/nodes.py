"""Model versions as lineage nodes: ``model:<namespace>:<name>:<version>`` (type MODEL_VERSION),
produced by their run (edge PRODUCED). Registered with :func:`lineage.graph.register_node_kind`."""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from operator import or_
from typing import Any

from django.db.models import Q

from governance.registry.models import ModelVersion
from lineage.api.marquez import ts
from lineage.graph import RUN, Key, NodeKind, ProvidedNode
from lineage.models import Namespace

MODEL = "model"


def node_id(version: ModelVersion) -> str:
    model = version.model
    return f"{MODEL}:{model.namespace.name}:{model.name}:{version.version}"


def resolve(rest: str) -> tuple[int, int] | None:
    """``<namespace>:<name>:<version>``, where the namespace and the name may contain ':'."""
    colons = [i for i, ch in enumerate(rest) if ch == ":"]
    prefixes = {rest[:i] for i in colons if i > 0}
    namespaces = dict(Namespace.objects.filter(name__in=sorted(prefixes)).values_list("name", "pk"))
    conditions = []
    for ns, ns_id in namespaces.items():
        tail = rest[len(ns) + 1 :]
        for j, ch in enumerate(tail):
            if ch == ":" and 0 < j < len(tail) - 1:
                conditions.append(Q(model__namespace_id=ns_id, model__name=tail[:j], version=tail[j + 1 :]))
    if not conditions:
        return None
    rows = list(
        ModelVersion.objects.filter(reduce(or_, conditions)).values_list(
            "pk", "model__namespace_id", "model__namespace__name"
        )
    )
    if not rows:
        return None
    pk, ns_id, _ = max(rows, key=lambda row: len(row[2]))
    return pk, ns_id


def expand(up: dict[str, list[Key]], down: dict[str, list[Key]], cap: int) -> tuple[list[tuple[Key, Key, Any]], bool]:
    found: list[tuple[Key, Key, Any]] = []
    capped = False
    down_runs = [key[1] for key in down.get(RUN, [])]
    if down_runs:
        rows = list(ModelVersion.objects.filter(run_id__in=down_runs).values_list("run_id", "pk")[:cap])
        capped |= len(rows) >= cap
        found += [((RUN, run_pk), (MODEL, pk), {"type": "PRODUCED"}) for run_pk, pk in rows]
    up_models = [key[1] for key in up.get(MODEL, [])]
    if up_models:
        rows = list(ModelVersion.objects.filter(pk__in=up_models, run__isnull=False).values_list("run_id", "pk")[:cap])
        found += [((RUN, run_pk), (MODEL, pk), {"type": "PRODUCED"}) for run_pk, pk in rows]
    return found, capped


def version_data(version: ModelVersion) -> dict[str, Any]:
    model = version.model
    return {
        "namespace": model.namespace.name,
        "name": model.name,
        "version": version.version,
        "artifactUri": version.artifact_uri or None,
        "artifactDigest": version.artifact_digest or None,
        "framework": version.framework or None,
        "frameworkVersion": version.framework_version or None,
        "environmentDigest": version.environment_digest or None,
        "metrics": version.metrics,
        "createdAt": ts(version.created_at),
    }


def render(pks: Sequence[int]) -> dict[int, ProvidedNode]:
    versions = ModelVersion.objects.filter(pk__in=list(pks)).select_related("model__namespace")
    return {v.pk: ProvidedNode(node_id(v), v.model.namespace_id, version_data(v)) for v in versions}


NODE_KIND = NodeKind(
    kind=MODEL,
    type="MODEL_VERSION",
    resolve=resolve,
    expand=expand,
    render=render,
    help="model:<namespace>:<name>:<version>",
)
