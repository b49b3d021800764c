"""Model versions from ingested lineage: the ``custody_model`` dataset facet.

The SDK's ``run.log_model`` puts the facet (``sdk/custody/schemas/custody_model.json``) on an
output dataset named ``models/<name>`` in the job's namespace, whose ``version`` facet is the
version label; the terminal event repeats it with the final metrics. Each such output creates or
updates the registered model (that namespace, the facet's ``name``) and the model version, linked
to the producing run, inside the ingestion transaction (``lineage.signals.events_ingested``).
"""

from __future__ import annotations

from typing import Any

from governance.registry.services import upsert_from_facet


def model_facets(events: list[Any]) -> list[tuple[Any, dict[str, Any], dict[str, Any]]]:
    """``(raw event, output dataset, custody_model facet)`` of every model output, oldest first."""
    found = []
    for raw in events:
        if raw.kind != "RunEvent" or not isinstance(raw.payload, dict):
            continue
        for output in raw.payload.get("outputs") or []:
            if not isinstance(output, dict):
                continue
            facets = output.get("facets")
            facet = facets.get("custody_model") if isinstance(facets, dict) else None
            if isinstance(facet, dict) and isinstance(output.get("namespace"), str):
                found.append((raw, output, facet))
    found.sort(key=lambda item: (item[0].event_time, item[0].pk or 0))
    return found


def on_events_ingested(sender: Any, events: list[Any], user: Any = None, **kwargs: Any) -> None:
    for raw, output, facet in model_facets(events):
        upsert_from_facet(
            namespace=output["namespace"],
            dataset_name=str(output.get("name") or ""),
            facet=facet,
            run_id=raw.run_id,
            event_time=raw.event_time,
            user=user,
        )
