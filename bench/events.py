"""Realistic OpenLineage RunEvents for the ingestion benchmarks.

Each run is a START + COMPLETE pair of a job that reads two datasets and writes one, with schema
facets of ~10 fields on every dataset, a ``parent`` run facet (the orchestrator's DAG run),
``nominalTime``, ``sourceCodeLocation`` and ``jobType`` job facets, and output statistics on
COMPLETE. Jobs sit in layers: a job of layer L reads two datasets of layer L and writes one of
layer L+1, so the graph grows deep as well as wide. Names vary with the job index, so a run of the
benchmark keeps adding new jobs, datasets, versions and edges.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.30.0/integration/airflow"
RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
FACET_BASE = "https://openlineage.io/spec/facets/1-0-1"
NAMESPACES = ("postgres://warehouse.bank.internal:5432", "s3://bank-lake", "bigquery", "snowflake://bank")
JOB_NAMESPACES = ("airflow-prod", "airflow-ml", "dbt-finance")
LAYERS = 24
TYPES = ("BIGINT", "VARCHAR", "DOUBLE", "TIMESTAMP", "BOOLEAN", "DECIMAL(18,2)", "DATE", "INTEGER")
WORDS = (
    "account",
    "amount",
    "balance",
    "branch",
    "card",
    "currency",
    "customer",
    "merchant",
    "region",
    "score",
    "segment",
    "status",
    "ts",
    "txn",
    "risk",
    "label",
    "country",
    "channel",
    "device",
    "limit",
)


def _facet(facet_type: str, **body: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": f"{FACET_BASE}/{facet_type}.json#/$defs/{facet_type}", **body}


def _schema(rng: random.Random, key: int, n: int = 10) -> dict[str, Any]:
    local = random.Random(key)  # the same dataset always has the same schema
    fields = []
    for i in range(n):
        word = WORDS[local.randrange(len(WORDS))]
        fields.append(
            {
                "name": f"{word}_{i}",
                "type": TYPES[local.randrange(len(TYPES))],
                "description": f"The {word} of the record (column {i}).",
            }
        )
    return _facet("SchemaDatasetFacet", fields=fields)


def dataset_ref(layer: int, index: int) -> tuple[str, str]:
    namespace = NAMESPACES[(layer + index) % len(NAMESPACES)]
    return namespace, f"analytics.layer_{layer:02d}.table_{index:06d}"


def _dataset(layer: int, index: int, rng: random.Random, io: str, stats: bool) -> dict[str, Any]:
    namespace, name = dataset_ref(layer, index)
    facets: dict[str, Any] = {
        "schema": _schema(rng, layer * 1_000_003 + index),
        "dataSource": _facet("DatasourceDatasetFacet", name=namespace, uri=f"{namespace}/{name}"),
    }
    body: dict[str, Any] = {"namespace": namespace, "name": name, "facets": facets}
    if io == "out" and stats:
        body["outputFacets"] = {
            "outputStatistics": _facet(
                "OutputStatisticsOutputDatasetFacet", rowCount=rng.randrange(10**3, 10**7), size=rng.randrange(10**9)
            )
        }
    if io == "in" and stats:
        body["inputFacets"] = {
            "dataQualityMetrics": _facet(
                "DataQualityMetricsInputDatasetFacet", rowCount=rng.randrange(10**3, 10**7), columnMetrics={}
            )
        }
    return body


class EventFactory:
    """Deterministic stream of START/COMPLETE pairs for one client (``stream``) of one benchmark run."""

    def __init__(self, stream: int, seed: int = 0, jobs_per_stream: int = 400, datasets_per_layer: int = 5000) -> None:
        self.stream = stream
        self.rng = random.Random(seed * 1_000_003 + stream)
        self.jobs_per_stream = jobs_per_stream
        self.datasets_per_layer = datasets_per_layer
        self.clock = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=seed % 300, seconds=stream * 7)
        self.counter = 0

    def pair(self) -> tuple[dict[str, Any], dict[str, Any]]:
        rng = self.rng
        job_index = self.stream * self.jobs_per_stream + rng.randrange(self.jobs_per_stream)
        layer = job_index % (LAYERS - 1)
        job_namespace = JOB_NAMESPACES[job_index % len(JOB_NAMESPACES)]
        job_name = f"etl_{layer:02d}.dag_{job_index // 50:04d}.task_{job_index:06d}"
        # Inputs: the job's usual two datasets, occasionally a different one (inputs change over time).
        base = (job_index * 7919) % self.datasets_per_layer
        inputs = [base, (base + 1 + (job_index % 13)) % self.datasets_per_layer]
        if rng.random() < 0.1:
            inputs[1] = rng.randrange(self.datasets_per_layer)
        output = (job_index * 104_729) % self.datasets_per_layer
        run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        dag_run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.clock += timedelta(seconds=rng.randrange(1, 30), microseconds=rng.randrange(10**6))
        start = self.clock
        end = start + timedelta(seconds=rng.randrange(5, 900))
        sha = f"{(job_index * 2654435761) % 2**32:08x}{self.counter % 7:02x}" + "0" * 30
        self.counter += 1
        job = {
            "namespace": job_namespace,
            "name": job_name,
            "facets": {
                "jobType": _facet("JobTypeJobFacet", processingType="BATCH", integration="AIRFLOW", jobType="TASK"),
                "sourceCodeLocation": _facet(
                    "SourceCodeLocationJobFacet",
                    type="git",
                    url=f"https://github.com/bank/pipelines/blob/{sha}/dags/etl_{layer:02d}.py",
                    repoUrl="https://github.com/bank/pipelines.git",
                    path=f"dags/etl_{layer:02d}.py",
                    version=sha,
                    branch="main",
                ),
                "documentation": _facet("DocumentationJobFacet", description=f"Builds layer {layer + 1} table."),
            },
        }
        run_facets = {
            "parent": _facet(
                "ParentRunFacet",
                run={"runId": dag_run_id},
                job={"namespace": job_namespace, "name": f"etl_{layer:02d}.dag_{job_index // 50:04d}"},
            ),
            "nominalTime": _facet(
                "NominalTimeRunFacet",
                nominalStartTime=start.replace(minute=0, second=0, microsecond=0).isoformat().replace("+00:00", "Z"),
            ),
        }

        def event(event_type: str, at: datetime, final: bool) -> dict[str, Any]:
            return {
                "eventType": event_type,
                "eventTime": at.isoformat().replace("+00:00", "Z"),
                "producer": PRODUCER,
                "schemaURL": RUN_EVENT_SCHEMA,
                "run": {"runId": run_id, "facets": run_facets},
                "job": job,
                "inputs": [_dataset(layer, i, rng, "in", final) for i in inputs],
                "outputs": [_dataset(layer + 1, output, rng, "out", final)],
            }

        return event("START", start, False), event("COMPLETE", end, True)

    def events(self, count: int) -> list[dict[str, Any]]:
        """``count`` events rounded up to whole START/COMPLETE pairs, in sending order."""
        out: list[dict[str, Any]] = []
        while len(out) < count:
            out.extend(self.pair())
        return out
