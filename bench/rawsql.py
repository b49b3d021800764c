"""The raw baseline for ingestion: plain psycopg, one transaction per event (or per batch), writing
rows equivalent to what Custody derives from a RunEvent into the same (migrated) schema.

Per event: the raw-event row (with its SHA-256 content digest over canonical JSON), the job, the
run, every mentioned dataset (in identifier order, as Custody locks them), the output's dataset
version, the run's inputs and outputs, and the job's open entity-level edges. Upserts use
``ON CONFLICT`` so START and COMPLETE of the same run converge, as in Custody. There is no
validation, no facet merging by event time and no history rebuilding: this is the floor that
"a raw-event row + run + edges" costs on this PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

RETRIES = 4
VERSION_NS = uuid.UUID("6f2b1c3e-8f0a-5d5e-9c1b-2a7e4d9f0c11")
_STATE = {"START": "RUNNING", "RUNNING": "RUNNING", "COMPLETE": "COMPLETED", "FAIL": "FAILED", "ABORT": "ABORTED"}

SQL_RAW = """
INSERT INTO lineage_rawevent (digest, kind, event_type, event_time, received_at, run_id, job_namespace, job_name,
    producer, schema_url, size_bytes, payload, submitted_by_id)
VALUES (%s, 'RunEvent', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL)
ON CONFLICT (digest) DO NOTHING RETURNING id"""
SQL_NAMESPACE = """
INSERT INTO lineage_namespace (name, owner_name, description, created_at, updated_at) VALUES (%s, '', '', %s, %s)
ON CONFLICT (name) DO NOTHING RETURNING id"""
SQL_NAMESPACE_ID = "SELECT id FROM lineage_namespace WHERE name = %s"
SQL_JOB = """
INSERT INTO lineage_job (namespace_id, name, type, description, location, facets, facet_times, created_at, updated_at)
VALUES (%s, %s, 'BATCH', '', %s, %s, '{}', %s, %s)
ON CONFLICT (namespace_id, name) DO UPDATE SET facets = lineage_job.facets || EXCLUDED.facets,
    updated_at = GREATEST(lineage_job.updated_at, EXCLUDED.updated_at)
RETURNING id"""
SQL_RUN = """
INSERT INTO lineage_run (run_id, job_id, state, state_rank, first_event_time, last_event_time, started_at, ended_at,
    parent_run_id, parent_job_namespace, parent_job_name, facets, facet_times, created_at, updated_at)
VALUES (%s, %s, %s, '[]', %s, %s, %s, %s, %s, %s, %s, %s, '{}', %s, %s)
ON CONFLICT (run_id) DO UPDATE SET
    state = CASE WHEN EXCLUDED.ended_at IS NOT NULL THEN EXCLUDED.state ELSE lineage_run.state END,
    first_event_time = LEAST(lineage_run.first_event_time, EXCLUDED.first_event_time),
    last_event_time = GREATEST(lineage_run.last_event_time, EXCLUDED.last_event_time),
    ended_at = COALESCE(EXCLUDED.ended_at, lineage_run.ended_at),
    facets = lineage_run.facets || EXCLUDED.facets, updated_at = EXCLUDED.updated_at
RETURNING id"""
SQL_DATASET = """
INSERT INTO lineage_dataset (namespace_id, name, type, physical_name, source_name, description, fields, tags, facets,
    facet_times, is_deleted, lifecycle_state, created_at, updated_at)
VALUES (%s, %s, 'DB_TABLE', %s, '', '', %s, '[]', %s, '{}', false, '', %s, %s)
ON CONFLICT (namespace_id, name) DO UPDATE SET facets = lineage_dataset.facets || EXCLUDED.facets,
    fields = EXCLUDED.fields, updated_at = GREATEST(lineage_dataset.updated_at, EXCLUDED.updated_at)
RETURNING id"""
SQL_VERSION = """
INSERT INTO lineage_datasetversion (uuid, version, created_at, fields, schema_digest, facets, facet_times,
    lifecycle_state, dataset_id, run_id)
VALUES (%s, %s, %s, %s, %s, %s, '{}', '', %s, %s)
ON CONFLICT (dataset_id, version) DO UPDATE SET facets = lineage_datasetversion.facets || EXCLUDED.facets
RETURNING id"""
SQL_INPUT = """
INSERT INTO lineage_runinput (run_id, dataset_id, first_seen_at, facets, facet_times) VALUES (%s, %s, %s, %s, '{}')
ON CONFLICT (run_id, dataset_id) DO NOTHING"""
SQL_OUTPUT = """
INSERT INTO lineage_runoutput (run_id, dataset_id, version_id, first_seen_at, facets, facet_times)
VALUES (%s, %s, %s, %s, %s, '{}')
ON CONFLICT (run_id, dataset_id) DO NOTHING"""
SQL_EDGE = """
INSERT INTO lineage_jobdatasetedge (job_id, dataset_id, direction, source, valid_from) VALUES (%s, %s, %s, 0, %s)
ON CONFLICT (job_id, dataset_id, direction, source) WHERE valid_to IS NULL DO NOTHING"""


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class RawWriter:
    """Writes events with plain SQL on one connection (caches namespace ids, as Custody does per batch)."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url)
        self.namespaces: dict[str, int] = {}

    def close(self) -> None:
        self.conn.close()

    def _namespace(self, cur: psycopg.Cursor[Any], name: str, at: datetime) -> int:
        found = self.namespaces.get(name)
        if found is None:
            row = cur.execute(SQL_NAMESPACE, (name, at, at)).fetchone()
            if row is None:
                row = cur.execute(SQL_NAMESPACE_ID, (name,)).fetchone()
            assert row is not None
            found = self.namespaces[name] = int(row[0])
        return found

    def write(self, events: list[dict[str, Any]]) -> int:
        """One transaction for all of ``events`` (pass one event for one transaction per event).

        A deadlock or serialization failure retries the transaction, as Custody does; returns the
        number of retries."""
        for attempt in range(RETRIES):
            try:
                with self.conn.cursor() as cur:
                    for event in events:
                        self._write_one(cur, event)
                self.conn.commit()
                return attempt
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                self.conn.rollback()
                self.namespaces.clear()
                if attempt == RETRIES - 1:
                    raise
                time.sleep(0.02 * 2**attempt)
        return RETRIES

    def _write_one(self, cur: psycopg.Cursor[Any], event: dict[str, Any]) -> None:
        text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(text.encode()).hexdigest()
        at = _time(event["eventTime"])
        now = datetime.now(UTC)
        run, job = event["run"], event["job"]
        inserted = cur.execute(
            SQL_RAW,
            (
                digest,
                event["eventType"],
                at,
                now,
                run["runId"],
                job["namespace"],
                job["name"],
                event["producer"],
                event["schemaURL"],
                len(text),
                Jsonb(event),
            ),
        ).fetchone()
        if inserted is None:
            return  # duplicate
        job_ns = self._namespace(cur, job["namespace"], at)
        location = job["facets"].get("sourceCodeLocation", {}).get("url", "")
        job_row = cur.execute(SQL_JOB, (job_ns, job["name"], location, Jsonb(job["facets"]), at, at)).fetchone()
        assert job_row is not None
        job_id = int(job_row[0])
        state = _STATE.get(event["eventType"], "NEW")
        terminal = state in ("COMPLETED", "FAILED", "ABORTED")
        parent = run["facets"].get("parent", {})
        run_row = cur.execute(
            SQL_RUN,
            (
                run["runId"],
                job_id,
                state,
                at,
                at,
                None if terminal else at,
                at if terminal else None,
                parent.get("run", {}).get("runId", ""),
                parent.get("job", {}).get("namespace", ""),
                parent.get("job", {}).get("name", ""),
                Jsonb(run["facets"]),
                now,
                now,
            ),
        ).fetchone()
        assert run_row is not None
        run_id = int(run_row[0])
        mentions = {(d["namespace"], d["name"]): d for d in [*event["inputs"], *event["outputs"]]}
        dataset_ids: dict[tuple[str, str], int] = {}
        for key in sorted(mentions):
            d = mentions[key]
            ns = self._namespace(cur, d["namespace"], at)
            fields = d["facets"].get("schema", {}).get("fields", [])
            row = cur.execute(SQL_DATASET, (ns, d["name"], d["name"], Jsonb(fields), Jsonb(d["facets"]), at, at))
            fetched = row.fetchone()
            assert fetched is not None
            dataset_ids[key] = int(fetched[0])
        for d in event["inputs"]:
            dataset_id = dataset_ids[(d["namespace"], d["name"])]
            cur.execute(SQL_INPUT, (run_id, dataset_id, at, Jsonb(d.get("inputFacets", {}))))
            cur.execute(SQL_EDGE, (job_id, dataset_id, 0, at))
        for d in event["outputs"]:
            dataset_id = dataset_ids[(d["namespace"], d["name"])]
            label = str(uuid.uuid5(VERSION_NS, f"{d['namespace']}\x00{d['name']}\x00run\x00{run['runId']}"))
            fields = d["facets"].get("schema", {}).get("fields", [])
            schema = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
            version = cur.execute(
                SQL_VERSION,
                (
                    uuid.uuid5(VERSION_NS, f"{d['namespace']}\x00{d['name']}\x00{label}"),
                    label,
                    at,
                    Jsonb(fields),
                    schema,
                    Jsonb(d["facets"]),
                    dataset_id,
                    run_id,
                ),
            ).fetchone()
            assert version is not None
            cur.execute(SQL_OUTPUT, (run_id, dataset_id, int(version[0]), at, Jsonb(d.get("outputFacets", {}))))
            cur.execute(SQL_EDGE, (job_id, dataset_id, 1, at))
