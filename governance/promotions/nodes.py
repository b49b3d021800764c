"""Deployments as lineage nodes: ``deployment:<id>`` (type DEPLOYMENT), reached from the model
version they run (edge DEPLOYED). Registered with :func:`lineage.graph.register_node_kind`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from governance.promotions.models import Deployment
from governance.registry.nodes import MODEL
from lineage.api.marquez import ts
from lineage.graph import Key, NodeKind, ProvidedNode

DEPLOYMENT = "deployment"


def resolve(rest: str) -> tuple[int, int] | None:
    if not rest.isdigit() or len(rest) > 18:
        return None
    row = Deployment.objects.filter(pk=int(rest)).values_list("pk", "model_version__model__namespace_id").first()
    return (row[0], row[1]) if row else None


def expand(up: dict[str, list[Key]], down: dict[str, list[Key]], cap: int) -> tuple[list[tuple[Key, Key, Any]], bool]:
    found: list[tuple[Key, Key, Any]] = []
    capped = False
    down_models = [key[1] for key in down.get(MODEL, [])]
    if down_models:
        rows = list(
            Deployment.objects.filter(model_version_id__in=down_models).values_list("model_version_id", "pk")[:cap]
        )
        capped |= len(rows) >= cap
        found += [((MODEL, mv), (DEPLOYMENT, pk), {"type": "DEPLOYED"}) for mv, pk in rows]
    up_deployments = [key[1] for key in up.get(DEPLOYMENT, [])]
    if up_deployments:
        rows = list(Deployment.objects.filter(pk__in=up_deployments).values_list("model_version_id", "pk")[:cap])
        found += [((MODEL, mv), (DEPLOYMENT, pk), {"type": "DEPLOYED"}) for mv, pk in rows]
    return found, capped


def render(pks: Sequence[int]) -> dict[int, ProvidedNode]:
    rows = Deployment.objects.filter(pk__in=list(pks)).select_related("model_version__model__namespace")
    out = {}
    for d in rows:
        model = d.model_version.model
        out[d.pk] = ProvidedNode(
            f"{DEPLOYMENT}:{d.pk}",
            model.namespace_id,
            {
                "id": d.pk,
                "environment": d.environment,
                "target": d.target or None,
                "deployedAt": ts(d.deployed_at),
                "deployedBy": d.deployed_by_name or None,
                "model": {"namespace": model.namespace.name, "name": model.name, "version": d.model_version.version},
                "replaces": d.replaces_id,
                "rollbackOf": d.rollback_of_id,
                "promotionId": d.promotion_id,
                "breakGlass": d.break_glass,
            },
        )
    return out


NODE_KIND = NodeKind(
    kind=DEPLOYMENT, type="DEPLOYMENT", resolve=resolve, expand=expand, render=render, help="deployment:<id>"
)
