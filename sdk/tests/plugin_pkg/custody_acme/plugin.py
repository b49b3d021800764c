"""The plugin module named by the entry point; hook implementations are marked with ``hookimpl``."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from custody.plugins import RunInfo, hookimpl
from custody_acme import AcmeTable

PRODUCER = "https://acme.example/custody-acme-plugin/0.1.0"
CLUSTER_SCHEMA = "https://acme.example/custody/facets/1-0-0/AcmeClusterRunFacet.json#/$defs/AcmeClusterRunFacet"
SCHEMA_FACET = "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
STATS_FACET = "https://openlineage.io/spec/facets/1-0-0/InputStatisticsInputDatasetFacet.json#/$defs/InputStatisticsInputDatasetFacet"


@hookimpl
def custody_run_facets(run: RunInfo, event_type: str) -> Optional[Dict[str, Any]]:
    """Runs on Custody's background thread, for START and for the terminal event."""
    if event_type != "START":
        return None
    return {
        "acme_cluster": {
            "_producer": PRODUCER,
            "_schemaURL": CLUSTER_SCHEMA,
            "cluster": os.environ.get("ACME_CLUSTER", "laptop"),
            "rootRunId": run.root_run_id,
        }
    }


@hookimpl
def custody_dataset_facets(data: Any, role: str) -> Optional[Dict[str, Any]]:
    """Return None for data this plugin does not know; accept only the arguments it needs."""
    if not isinstance(data, AcmeTable):
        return None
    facets: Dict[str, Any] = {
        "schema": {
            "_producer": PRODUCER,
            "_schemaURL": SCHEMA_FACET,
            "fields": [{"name": name, "type": kind} for name, kind in data.columns.items()],
        }
    }
    if role == "input":
        facets["inputStatistics"] = {"_producer": PRODUCER, "_schemaURL": STATS_FACET, "rowCount": data.rows}
    return facets
