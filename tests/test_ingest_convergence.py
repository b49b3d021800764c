"""Duplicates and out-of-order delivery converge to the graph that in-order delivery builds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage.ingest.service import ingest
from tests.graph_snapshot import snapshot

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
DATASETS = ["raw.orders", "raw.customers", "stage.orders", "mart.revenue"]
SCHEMAS = [
    [{"name": "id", "type": "INT"}, {"name": "amount", "type": "DECIMAL"}],
    [{"name": "id", "type": "INT"}, {"name": "amount", "type": "DECIMAL"}, {"name": "currency", "type": "STRING"}],
    [{"name": "id", "type": "BIGINT"}, {"name": "amount", "type": "DECIMAL", "description": "in cents"}],
]


def dataset(name: str, schema: int | None = None, lineage_from: str | None = None) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    if schema is not None:
        facets["schema"] = {"_producer": "test", "_schemaURL": "test", "fields": SCHEMAS[schema]}
    if lineage_from:
        facets["columnLineage"] = {
            "_producer": "test",
            "_schemaURL": "test",
            "fields": {
                "amount": {"inputFields": [{"namespace": "warehouse", "name": lineage_from, "field": "amount"}]}
            },
        }
    return {"namespace": "warehouse", "name": name, "facets": facets}


def run_event(
    job: str, run_id: str, event_type: str, minute: int, inputs=(), outputs=(), parent=None, note=None, commit=None
):
    run_facets: dict[str, Any] = {}
    job_facets: dict[str, Any] = {}
    if commit:
        job_facets["sourceCodeLocation"] = {
            "_producer": "test",
            "_schemaURL": "test",
            "type": "git",
            "url": "https://git.example.com/etl",
            "repoUrl": "https://git.example.com/etl.git",
            "version": commit,
        }
    if parent:
        run_facets["parent"] = {"run": {"runId": parent[1]}, "job": {"namespace": "etl", "name": parent[0]}}
    if note is not None:
        run_facets["custom_note"] = {"value": note}
    return {
        "eventType": event_type,
        "eventTime": (T0 + timedelta(minutes=minute)).isoformat(),
        "producer": "https://example.com/test-producer",
        "schemaURL": SCHEMA_URL,
        "run": {"runId": run_id, "facets": run_facets},
        "job": {"namespace": "etl", "name": job, "facets": job_facets},
        "inputs": list(inputs),
        "outputs": list(outputs),
    }


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Several runs of two jobs whose inputs, outputs, schemas and outcomes vary from run to run."""
    events = []
    minute = 0
    runs = draw(st.integers(min_value=2, max_value=4))
    parent = None
    for i in range(runs):
        job = draw(st.sampled_from(["load_orders", "build_mart"]))
        run_id = f"00000000-0000-4000-8000-{i:012d}"
        minute += draw(st.integers(min_value=0, max_value=30))
        inputs = draw(st.lists(st.sampled_from(DATASETS[:2]), unique=True, max_size=2))
        outputs = draw(st.lists(st.sampled_from(DATASETS[2:]), unique=True, min_size=1, max_size=2))
        schema = draw(st.integers(min_value=0, max_value=2))
        start_inputs = [dataset(n, draw(st.sampled_from([None, 0, 1]))) for n in inputs]
        events.append(run_event(job, run_id, "START", minute, inputs=start_inputs, parent=parent, note=i))
        if draw(st.booleans()):
            events.append(run_event(job, run_id, "RUNNING", minute + 1, note=i + 100))
        end = minute + draw(st.integers(min_value=1, max_value=20))
        terminal = draw(st.sampled_from(["COMPLETE", "COMPLETE", "FAIL", "ABORT"]))
        outs = [dataset(n, schema, lineage_from=inputs[0] if inputs else None) for n in outputs]
        end_inputs = [dataset(n) for n in inputs]
        if end_inputs and draw(st.booleans()):
            end_inputs[0]["facets"]["version"] = {"_producer": "t", "_schemaURL": "t", "datasetVersion": f"v{i % 2}"}
        commit = draw(st.sampled_from([None, "c0ffee", "decade"]))
        events.append(run_event(job, run_id, terminal, end, inputs=end_inputs, outputs=outs, commit=commit))
        if i == 0:
            parent = (job, run_id)
    if draw(st.booleans()):
        events.append(
            {
                "eventTime": (T0 + timedelta(minutes=draw(st.integers(0, 90)))).isoformat(),
                "producer": "https://example.com/test-producer",
                "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent",
                "job": {"namespace": "etl", "name": "build_mart", "facets": {}},
                "inputs": [dataset("raw.orders")],
                "outputs": [dataset(draw(st.sampled_from(DATASETS[2:])))],
            }
        )
    events.append(
        {
            "eventTime": (T0 + timedelta(minutes=draw(st.integers(0, 90)))).isoformat(),
            "producer": "https://example.com/test-producer",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
            "dataset": dataset("mart.revenue", draw(st.integers(0, 2))),
        }
    )
    return events


class _Rollback(Exception):
    pass


def graph_after(events: list[dict[str, Any]], one_by_one: bool) -> dict[str, Any]:
    try:
        with transaction.atomic():
            if one_by_one:
                for event in events:
                    (outcome,) = ingest([event])
                    assert outcome.status in {"created", "duplicate"}, outcome.error
            else:
                outcomes = ingest(events)
                assert all(o.status in {"created", "duplicate"} for o in outcomes)
            picture = snapshot()
            raise _Rollback
    except _Rollback:
        return picture


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories(), data=st.data())
def test_shuffled_and_duplicated_delivery_converges(history, data):
    expected = graph_after(history, one_by_one=True)
    duplicates = data.draw(st.lists(st.sampled_from(history), max_size=4))
    shuffled = data.draw(st.permutations(history + duplicates))
    one_by_one = data.draw(st.booleans())
    assert graph_after(shuffled, one_by_one=one_by_one) == expected


def test_a_late_start_never_reopens_a_finished_run():
    complete = run_event("load_orders", "00000000-0000-4000-8000-000000000001", "COMPLETE", 10)
    start = run_event("load_orders", "00000000-0000-4000-8000-000000000001", "START", 0)
    running = run_event("load_orders", "00000000-0000-4000-8000-000000000001", "RUNNING", 5)
    ingest([complete])
    ingest([start, running])
    from lineage.models import Run

    run = Run.objects.get()
    assert run.state == Run.State.COMPLETED
    assert run.started_at == T0 and run.ended_at == T0 + timedelta(minutes=10)


def test_late_runs_of_a_long_history_replay_only_what_follows_them():
    """A job with many runs whose inputs change: runs delivered late (alone, several in one batch,
    or a run whose START arrives after its COMPLETE) give the edge history of in-order delivery,
    although only the part from the late run on is replayed."""
    runs = []
    for i in range(8):
        run_id = f"00000000-0000-4000-8000-{i:012d}"
        inputs = [dataset(name) for name in (["raw.orders"], ["raw.orders", "raw.customers"], ["raw.customers"])[i % 3]]
        start = run_event("build_mart", run_id, "START", i * 10, inputs=inputs)
        done = run_event("build_mart", run_id, "COMPLETE", i * 10 + 5, inputs=inputs, outputs=[dataset("mart.revenue")])
        runs.append((start, done))
    in_order = [event for pair in runs for event in pair]
    expected = graph_after(in_order, one_by_one=True)
    assert expected["edges"], "the history has edges to compare"
    late_one = [e for k, pair in enumerate(runs) if k != 5 for e in pair] + list(runs[5])
    late_batch = [e for k, pair in enumerate(runs) if k not in (2, 6) for e in pair] + [*runs[6], *runs[2]]
    start_last = [pair[1] for pair in runs] + [pair[0] for pair in runs]
    assert graph_after(late_one, one_by_one=True) == expected
    assert graph_after(late_batch, one_by_one=False) == expected
    assert graph_after(start_last, one_by_one=True) == expected
    assert graph_after(list(reversed(in_order)), one_by_one=True) == expected
