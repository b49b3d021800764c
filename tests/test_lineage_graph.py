"""GET /api/v1/lineage, /column-lineage and version-level provenance, through the real API.

Real example events from ../shared/openlineage-examples and small hand-made events with explicit
event times; every fact is asserted through HTTP on the real database (SQLite or PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from lineage.access import REDACTED, visibility_policy
from lineage.models import Namespace
from tests.conftest import load_example

pytestmark = pytest.mark.django_db

PRODUCER = "https://github.com/custody/tests"
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"

AIRFLOW = [f"compatibility-tests/airflow/line_{n}.json" for n in ("01", "02", "03", "08", "10", "11")]
CLL = [f"compatibility-tests/CLL/{n}.json" for n in (1, 3, 5, 7, 8, 9)]

BQ_RUN = "01936893-9751-7a91-a2a0-a51101a3970c"
UPLOAD_RUN = "01936893-9751-7b3c-8f76-8ac6d0e5f8a3"


# --- helpers -----------------------------------------------------------------------------------------


def ds(namespace: str, name: str, **facets: Any) -> dict[str, Any]:
    return {"namespace": namespace, "name": name, "facets": facets}


def schema(*names: str) -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
        "fields": [{"name": n, "type": "STRING"} for n in names],
    }


def version_facet(label: str) -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json",
        "datasetVersion": label,
    }


def run_event(
    job: str,
    run_id: str,
    at: str,
    inputs: Iterable[dict[str, Any]] = (),
    outputs: Iterable[dict[str, Any]] = (),
    *,
    namespace: str = "tests",
    event_type: str = "COMPLETE",
) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": at,
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT,
        "run": {"runId": run_id, "facets": {}},
        "job": {"namespace": namespace, "name": job, "facets": {}},
        "inputs": list(inputs),
        "outputs": list(outputs),
    }


def post_all(post_event: Callable[[Any], Any], events: Iterable[dict[str, Any]]) -> None:
    for event in events:
        response = post_event(event)
        assert response.status_code == 201, response.content


def post_examples(post_event: Callable[[Any], Any], paths: Iterable[str]) -> None:
    post_all(post_event, (load_example(p) for p in paths))


def lineage(api: APIClient, node_id: str, **params: Any) -> dict[str, Any]:
    response = api.get("/api/v1/lineage", {"nodeId": node_id, **params})
    assert response.status_code == 200, response.content
    return response.json()


def nodes(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["id"]: node for node in graph["graph"]}


def edges(graph: dict[str, Any]) -> set[tuple[str, str]]:
    found = set()
    for node in graph["graph"]:
        for edge in node["inEdges"] + node["outEdges"]:
            found.add((edge["origin"], edge["destination"]))
    return found


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


# --- entity lineage from real events ----------------------------------------------------------------------


def test_airflow_job_lineage_has_the_edges_the_events_describe(api, post_event):
    post_examples(post_event, AIRFLOW)
    graph = lineage(api, "job:airflow:BQ.upload")
    found = nodes(graph)
    job = "job:airflow:BQ.upload"
    copied, test_csv = "dataset:gs://mock-bucket:copied.csv", "dataset:gs://mock-bucket:test.csv"
    upload = "dataset:bigquery:mock-project.test.upload"
    assert set(found) == {job, copied, test_csv, upload}
    assert edges(graph) == {(copied, job), (test_csv, job), (job, upload)}
    assert graph["truncated"] is False
    assert found[job]["type"] == "JOB"
    assert found[job]["data"]["inputs"] == [
        {"namespace": "gs://mock-bucket", "name": "copied.csv"},
        {"namespace": "gs://mock-bucket", "name": "test.csv"},
    ]
    assert found[job]["data"]["outputs"] == [{"namespace": "bigquery", "name": "mock-project.test.upload"}]
    assert found[job]["data"]["parentJobName"] == "BQ"
    assert found[job]["data"]["simpleName"] == "upload"
    assert found[job]["data"]["latestRun"]["id"] == UPLOAD_RUN
    assert found[job]["data"]["latestRun"]["state"] == "COMPLETED"
    assert found[upload]["type"] == "DATASET"
    assert [f["name"] for f in found[upload]["data"]["fields"]] == ["a", "b", "c", "d"]
    assert found[upload]["inEdges"] == [{"origin": job, "destination": upload}]
    assert found[copied]["outEdges"] == [{"origin": copied, "destination": job}]


def test_dataset_node_with_colons_and_slashes_and_directions(api, post_event):
    post_examples(post_event, AIRFLOW)
    # The namespace gs://mock-bucket contains ':' and '/': the split is found against existing rows.
    both = lineage(api, "dataset:gs://mock-bucket:test.csv")
    assert set(nodes(both)) == {
        "dataset:gs://mock-bucket:test.csv",
        "job:airflow:BQ.upload",
        "dataset:bigquery:mock-project.test.upload",
    }
    # Directed: the sibling input copied.csv is neither upstream nor downstream of test.csv.
    assert "dataset:gs://mock-bucket:copied.csv" not in nodes(both)
    upstream_only = lineage(api, "dataset:gs://mock-bucket:test.csv", withDownstream="false")
    assert set(nodes(upstream_only)) == {"dataset:gs://mock-bucket:test.csv"}
    from_output = lineage(api, "dataset:bigquery:mock-project.test.upload", withDownstream="false")
    assert len(from_output["graph"]) == 4
    assert lineage(api, "dataset:bigquery:mock-project.test.upload", depth=1)["graph"][1]["id"] == (
        "job:airflow:BQ.upload"
    )
    assert len(lineage(api, "dataset:bigquery:mock-project.test.upload", depth=0)["graph"]) == 1


def test_namespace_and_name_both_containing_colons(api, post_event):
    event = run_event(
        "copy",
        uid(1),
        "2024-01-01T00:00:00Z",
        [ds("hdfs://namenode:8020", "/data/raw:2024")],
        [ds("hdfs://namenode:8020", "/data/clean:2024")],
    )
    post_all(post_event, [event])
    graph = lineage(api, "dataset:hdfs://namenode:8020:/data/raw:2024")
    assert edges(graph) == {
        ("dataset:hdfs://namenode:8020:/data/raw:2024", "job:tests:copy"),
        ("job:tests:copy", "dataset:hdfs://namenode:8020:/data/clean:2024"),
    }
    node = nodes(graph)["dataset:hdfs://namenode:8020:/data/raw:2024"]
    assert node["data"]["namespace"] == "hdfs://namenode:8020"
    assert node["data"]["name"] == "/data/raw:2024"


def test_cycles_terminate(api, post_event):
    post_all(
        post_event,
        [
            run_event("a_to_b", uid(1), "2024-01-01T00:00:00Z", [ds("c", "a")], [ds("c", "b")]),
            run_event("b_to_a", uid(2), "2024-01-01T01:00:00Z", [ds("c", "b")], [ds("c", "a")]),
        ],
    )
    graph = lineage(api, "dataset:c:a", depth=50)
    assert set(nodes(graph)) == {"dataset:c:a", "dataset:c:b", "job:tests:a_to_b", "job:tests:b_to_a"}
    assert ("job:tests:b_to_a", "dataset:c:a") in edges(graph)
    assert ("dataset:c:a", "job:tests:a_to_b") in edges(graph)
    assert graph["truncated"] is False


def test_one_query_per_level(api, post_event):
    chain = [
        run_event(f"step{i}", uid(i), f"2024-01-01T00:0{i}:00Z", [ds("chain", f"d{i}")], [ds("chain", f"d{i + 1}")])
        for i in range(6)
    ]
    post_all(post_event, chain)
    from lineage.access import visibility_for
    from lineage.graph import DATASET, entity_lineage, resolve_node_id

    start = resolve_node_id("dataset:chain:d6", visibility_for(api.user), (DATASET,))
    with CaptureQueriesContext(connection) as queries:
        traversal = entity_lineage(start, depth=12, limit=100)
    assert len(traversal.nodes) == 13
    edge_queries = [q["sql"] for q in queries.captured_queries if "lineage_jobdatasetedge" in q["sql"]]
    if connection.vendor == "postgresql":
        assert len(edge_queries) == 1  # a small neighbourhood: fetched whole in one statement
        assert "WITH RECURSIVE" in edge_queries[0]
        from unittest import mock

        with (
            mock.patch("lineage.graph._prefetched_expander", return_value=None),
            CaptureQueriesContext(connection) as queries,
        ):
            assert entity_lineage(start, depth=12, limit=100) == traversal
        edge_queries = [q["sql"] for q in queries.captured_queries if "lineage_jobdatasetedge" in q["sql"]]
        assert all("= ANY(" in sql for sql in edge_queries)
    assert len(edge_queries) == 12  # one per level, whatever the frontier size


def test_prefetched_traversals_are_the_level_by_level_ones(api, post_event):
    """On PostgreSQL a small neighbourhood is fetched in one statement and walked in memory; the
    traversal (nodes, levels, edges and their order, truncation) is the one the level queries
    give, also as of an instant, and a neighbourhood too large to fetch whole (or a level that
    reaches its row cap) is walked level by level."""
    from datetime import UTC, datetime
    from unittest import mock

    from lineage.graph import NodeRef, entity_lineage
    from lineage.models import Dataset, Job

    post_examples(post_event, AIRFLOW)
    _secret_chain(post_event)
    hub = [run_event(f"reader{i:03d}", uid(500 + i), "2024-01-01T00:00:00Z", [ds("hub", "big")]) for i in range(120)]
    later = run_event("publish", uid(7), "2024-02-01T00:00:00Z", [ds("public", "src")], [ds("public", "dst")])
    post_all(post_event, [*hub, later, run_event("feed", uid(8), "2024-01-01T00:00:00Z", [], [ds("hub", "big")])])
    starts = [NodeRef("dataset", pk, 0) for pk in Dataset.objects.values_list("pk", flat=True)]
    starts += [NodeRef("job", pk, 0) for pk in Job.objects.values_list("pk", flat=True)[:40]]
    for start in starts:
        for as_of in (None, datetime(2024, 1, 15, tzinfo=UTC)):
            for depth, limit, upstream, downstream in ((20, 5000, True, True), (3, 1, True, True), (6, 5, False, True)):
                args = dict(depth=depth, limit=limit, as_of=as_of, upstream=upstream, downstream=downstream)
                got = entity_lineage(start, **args)
                with mock.patch("lineage.graph._prefetched_expander", return_value=None):
                    expected = entity_lineage(start, **args)
                assert list(got.nodes.items()) == list(expected.nodes.items()), (start, args)
                assert list(got.edges) == list(expected.edges), (start, args)
                assert got.truncated == expected.truncated, (start, args)


def test_hub_is_truncated_at_the_node_limit(api, post_event):
    consumers = [run_event(f"reader{i:02d}", uid(i), "2024-01-01T00:00:00Z", [ds("hub", "big")]) for i in range(30)]
    post_all(post_event, consumers)
    cut = lineage(api, "dataset:hub:big", limit=10)
    assert cut["truncated"] is True
    assert len(cut["graph"]) <= 10
    assert cut["graph"][0]["id"] == "dataset:hub:big"
    ids = set(nodes(cut))
    for node in cut["graph"]:  # no dangling edges
        for edge in node["inEdges"] + node["outEdges"]:
            assert edge["origin"] in ids and edge["destination"] in ids
    whole = lineage(api, "dataset:hub:big")
    assert whole["truncated"] is False
    assert len(whole["graph"]) == 31
    # A limit above the configured node limit is capped by it.
    with pytest.MonkeyPatch.context() as mp:
        from django.conf import settings

        mp.setattr(settings, "CUSTODY_LINEAGE_NODE_LIMIT", 5)
        capped = lineage(api, "dataset:hub:big", limit=1000)
        assert capped["truncated"] is True and len(capped["graph"]) == 5


def test_walking_upstream_through_a_hub_is_not_cut_by_its_consumers(api, post_event):
    """A hub read by many jobs adds nothing to an upstream walk: only producer edges are pulled."""
    consumers = [run_event(f"reader{i:02d}", uid(i), "2024-01-01T00:00:00Z", [ds("hub", "big")]) for i in range(30)]
    producer = run_event("loader", uid(99), "2024-01-01T00:00:00Z", [ds("raw", "src")], [ds("hub", "big")])
    post_all(post_event, [*consumers, producer])
    upstream = lineage(api, "job:tests:reader00", limit=10, withDownstream="false")
    assert upstream["truncated"] is False
    assert {"job:tests:reader00", "dataset:hub:big", "job:tests:loader", "dataset:raw:src"} <= set(nodes(upstream))


# --- as of --------------------------------------------------------------------------------------------


def _changing_job(post_event: Callable[[Any], Any]) -> None:
    """Job 'report' reads 'old_source' (runs on Jan 1), then 'new_source' (from Mar 1)."""
    post_all(
        post_event,
        [
            run_event(
                "report",
                uid(1),
                "2024-01-01T00:00:00Z",
                [ds("asof", "old_source")],
                [ds("asof", "out", schema=schema("a"))],
                namespace="asof",
            ),
            run_event(
                "report",
                uid(2),
                "2024-03-01T00:00:00Z",
                [ds("asof", "new_source")],
                [ds("asof", "out", schema=schema("a", "b"))],
                namespace="asof",
            ),
        ],
    )


def test_as_of_before_an_input_change_shows_the_old_input(api, post_event):
    _changing_job(post_event)
    current = lineage(api, "job:asof:report")
    assert ("dataset:asof:new_source", "job:asof:report") in edges(current)
    assert "dataset:asof:old_source" not in nodes(current)

    before = lineage(api, "job:asof:report", asOf="2024-02-01T00:00:00Z")
    assert ("dataset:asof:old_source", "job:asof:report") in edges(before)
    assert "dataset:asof:new_source" not in nodes(before)
    # Node data as of then: the output's fields from the version current on Feb 1.
    out = nodes(before)["dataset:asof:out"]["data"]
    assert [f["name"] for f in out["fields"]] == ["a"]
    assert [f["name"] for f in nodes(current)["dataset:asof:out"]["data"]["fields"]] == ["a", "b"]
    # Before anything happened, the job stands alone.
    assert set(nodes(lineage(api, "job:asof:report", asOf="2023-06-01"))) == {"job:asof:report"}
    # The old edge is closed at the instant of the change (valid_to is exclusive).
    at_change = lineage(api, "job:asof:report", asOf="2024-03-01T00:00:00+00:00")
    assert "dataset:asof:new_source" in nodes(at_change) and "dataset:asof:old_source" not in nodes(at_change)


def test_as_of_on_job_and_dataset_reads(api, post_event):
    _changing_job(post_event)
    job_then = api.get("/api/v1/namespaces/asof/jobs/report", {"asOf": "2024-02-01T00:00:00Z"}).json()
    assert job_then["inputs"] == [{"namespace": "asof", "name": "old_source"}]
    assert job_then["latestRun"]["id"] == uid(1)
    job_now = api.get("/api/v1/namespaces/asof/jobs/report").json()
    assert job_now["inputs"] == [{"namespace": "asof", "name": "new_source"}]
    assert job_now["latestRun"]["id"] == uid(2)
    assert [r["id"] for r in job_now["latestRuns"]] == [uid(2), uid(1)]

    ds_then = api.get("/api/v1/namespaces/asof/datasets/out", {"asOf": "2024-02-01T00:00:00Z"}).json()
    ds_now = api.get("/api/v1/namespaces/asof/datasets/out").json()
    assert [f["name"] for f in ds_then["fields"]] == ["a"]
    assert [f["name"] for f in ds_now["fields"]] == ["a", "b"]
    assert ds_then["currentVersion"] != ds_now["currentVersion"]
    listed = api.get("/api/v1/namespaces/asof/jobs", {"asOf": "2024-02-01T00:00:00Z"}).json()
    assert listed["jobs"][0]["inputs"] == [{"namespace": "asof", "name": "old_source"}]
    # The new source did not exist on Feb 1.
    missing = api.get("/api/v1/namespaces/asof/datasets/new_source", {"asOf": "2024-02-01T00:00:00Z"})
    assert missing.status_code == 404
    assert "did not exist" in missing.json()["detail"]
    listed_ds = api.get("/api/v1/namespaces/asof/datasets", {"asOf": "2024-02-01T00:00:00Z"}).json()
    assert {d["name"] for d in listed_ds["datasets"]} == {"old_source", "out"}


# --- redaction --------------------------------------------------------------------------------------------


def _secret_chain(post_event: Callable[[Any], Any]) -> None:
    """public:src → public:extract → secret:staging → public:publish → public:dst."""
    post_all(
        post_event,
        [
            run_event(
                "extract",
                uid(1),
                "2024-01-01T00:00:00Z",
                [ds("public", "src")],
                [ds("secret", "staging", schema=schema("ssn"))],
                namespace="public",
            ),
            run_event(
                "publish",
                uid(2),
                "2024-01-01T01:00:00Z",
                [ds("secret", "staging")],
                [ds("public", "dst")],
                namespace="public",
            ),
            run_event("hidden_job", uid(3), "2024-01-01T02:00:00Z", [ds("secret", "staging")], namespace="secret"),
        ],
    )


def hide_secret(user: Any) -> set[int]:
    return set(Namespace.objects.exclude(name="secret").values_list("pk", flat=True))


def test_hidden_nodes_are_placeholders_and_traversal_continues(api, post_event):
    _secret_chain(post_event)
    with visibility_policy(hide_secret):
        graph = lineage(api, "dataset:public:dst", withDownstream="false")
        text = json.dumps(graph)
        assert "staging" not in text and "secret" not in text and "ssn" not in text
        found = nodes(graph)
        placeholders = [n for n in graph["graph"] if n["data"] == {"redacted": True}]
        assert len(placeholders) == 1
        hidden = placeholders[0]
        assert hidden["type"] == "DATASET"
        assert hidden["id"].startswith(f"dataset:{REDACTED}:")
        # The traversal went through the hidden node: the shape is intact up to the source.
        assert "dataset:public:src" in found
        assert (hidden["id"], "job:public:publish") in edges(graph)
        assert ("job:public:extract", hidden["id"]) in edges(graph)
        assert found["job:public:publish"]["data"]["inputs"] == [
            {"namespace": REDACTED, "name": hidden["id"].split(":")[-1]}
        ]
        # The same hidden node gets the same opaque id on every request.
        again = lineage(api, "dataset:public:src")
        assert hidden["id"] in nodes(again)
        # A hidden start node does not exist, as far as this caller can tell.
        response = api.get("/api/v1/lineage", {"nodeId": "dataset:secret:staging"})
        assert response.status_code == 404
        missing = api.get("/api/v1/lineage", {"nodeId": "dataset:secret:nothing-here"})
        assert missing.json()["detail"].replace("nothing-here", "staging") == response.json()["detail"]
    # Without the policy, everything is visible again.
    assert "dataset:secret:staging" in nodes(lineage(api, "dataset:public:dst"))


def test_hidden_namespace_is_hidden_from_lists_details_search_and_events(api, post_event):
    _secret_chain(post_event)
    with visibility_policy(hide_secret):
        names = [ns["name"] for ns in api.get("/api/v1/namespaces").json()["namespaces"]]
        assert "secret" not in names and "public" in names
        assert api.get("/api/v1/namespaces").json()["totalCount"] == len(names)
        for path in (
            "/api/v1/namespaces/secret",
            "/api/v1/namespaces/secret/datasets",
            "/api/v1/namespaces/secret/datasets/staging",
            "/api/v1/namespaces/secret/datasets/staging/versions",
            "/api/v1/namespaces/secret/jobs/hidden_job",
            f"/api/v1/jobs/runs/{uid(3)}",
            f"/api/v1/jobs/runs/{uid(3)}/facets",
            f"/api/v1/runs/{uid(3)}/provenance",
        ):
            response = api.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"] == "not_found"
        job = api.get("/api/v1/namespaces/public/jobs/extract").json()
        assert job["outputs"][0]["namespace"] == REDACTED
        assert "staging" not in json.dumps(job)
        search = api.get("/api/v1/search", {"q": "staging"}).json()
        assert search == {"totalCount": 0, "results": []}
        events = api.get("/api/v1/events/lineage").json()
        assert events["totalCount"] == 2
        assert "staging" not in json.dumps(events) and "secret" not in json.dumps(events)
        run = api.get(f"/api/v1/jobs/runs/{uid(1)}").json()
        assert run["outputDatasetVersions"][0]["redacted"] is True
        assert "staging" not in json.dumps(run)
    assert api.get("/api/v1/namespaces/secret").status_code == 200


# --- run nodes and version-level provenance ----------------------------------------------------------------


def test_run_node_graph_has_versions_parent_and_commit(api, post_event):
    post_examples(post_event, AIRFLOW)
    graph = lineage(api, f"run:{UPLOAD_RUN}")
    found = nodes(graph)
    root = found[f"run:{UPLOAD_RUN}"]
    assert root["type"] == "RUN"
    assert root["data"]["jobVersion"] == {"namespace": "airflow", "name": "BQ.upload"}
    # Inputs never written by a tracked run have no known version: they appear as datasets.
    assert found["dataset:gs://mock-bucket:copied.csv"]["type"] == "DATASET"
    consumed = [e for e in root["inEdges"] if e["type"] == "CONSUMED"]
    assert {e["origin"] for e in consumed} == {
        "dataset:gs://mock-bucket:copied.csv",
        "dataset:gs://mock-bucket:test.csv",
    }
    produced = [e for e in root["outEdges"] if e["type"] == "PRODUCED"]
    assert len(produced) == 1
    assert produced[0]["destination"].startswith("datasetVersion:bigquery:mock-project.test.upload:")
    parent = [e for e in root["inEdges"] if e["type"] == "PARENT"]
    assert parent == [{"origin": f"run:{BQ_RUN}", "destination": f"run:{UPLOAD_RUN}", "type": "PARENT"}]
    assert found[f"run:{BQ_RUN}"]["data"]["jobVersion"]["name"] == "BQ"


def test_code_commit_from_source_code_location(api, post_event):
    event = run_event("build", uid(9), "2024-01-01T00:00:00Z", [], [ds("code", "artifact")])
    event["job"]["facets"]["sourceCodeLocation"] = {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/SourceCodeLocationJobFacet.json",
        "type": "git",
        "url": "https://github.com/acme/etl/blob/abc123/build.py",
        "repoUrl": "https://github.com/acme/etl.git",
        "version": "abc123",
        "branch": "main",
    }
    post_all(post_event, [event])
    graph = lineage(api, f"run:{uid(9)}")
    commit = nodes(graph)["commit:https://github.com/acme/etl.git@abc123"]
    assert commit["type"] == "CODE_COMMIT"
    assert commit["data"]["sha"] == "abc123" and commit["data"]["branch"] == "main"
    assert commit["outEdges"] == [{"origin": commit["id"], "destination": f"run:{uid(9)}", "type": "EXECUTED"}]
    provenance = api.get(f"/api/v1/runs/{uid(9)}/provenance").json()
    assert provenance["runs"][0]["codeCommit"]["repoUrl"] == "https://github.com/acme/etl.git"


def _versioned_pipeline(post_event: Callable[[Any], Any]) -> None:
    """'ingest' writes raw (v1 on Jan 1, v2 on Mar 1); 'train' reads raw on Feb 1 (→ v1, inferred)
    and Apr 1 (→ v2, inferred); 'audit' names raw version "v1" explicitly on May 1."""
    post_all(
        post_event,
        [
            run_event(
                "ingest",
                uid(1),
                "2024-01-01T00:00:00Z",
                [ds("ext", "feed")],
                [ds("prov", "raw", version=version_facet("v1"), schema=schema("x"))],
            ),
            run_event("train", uid(2), "2024-02-01T00:00:00Z", [ds("prov", "raw")], [ds("prov", "model")]),
            run_event(
                "ingest",
                uid(3),
                "2024-03-01T00:00:00Z",
                [ds("ext", "feed")],
                [ds("prov", "raw", version=version_facet("v2"), schema=schema("x", "y"))],
            ),
            run_event("train", uid(4), "2024-04-01T00:00:00Z", [ds("prov", "raw")], [ds("prov", "model")]),
            run_event("audit", uid(5), "2024-05-01T00:00:00Z", [ds("prov", "raw", version=version_facet("v1"))]),
        ],
    )


def _versions(api: APIClient) -> dict[str, str]:
    listed = api.get("/api/v1/namespaces/prov/datasets/raw/versions").json()["versions"]
    return {v["versionLabel"]: v["version"] for v in listed}


def test_run_provenance_names_exact_versions(api, post_event):
    _versioned_pipeline(post_event)
    versions = _versions(api)
    assert set(versions) == {"v1", "v2"}

    first = api.get(f"/api/v1/runs/{uid(2)}/provenance").json()
    assert first["run"]["id"] == uid(2)
    assert [r["run"]["id"] for r in first["runs"]] == [uid(2), uid(1)]
    raw_in = first["runs"][0]["inputs"]
    assert raw_in == [
        {
            "namespace": "prov",
            "name": "raw",
            "version": versions["v1"],
            "versionLabel": "v1",
            "createdAt": "2024-01-01T00:00:00Z",
            "producedByRunId": uid(1),
            "resolution": "inferred",
        }
    ]
    assert [o["name"] for o in first["runs"][0]["outputs"]] == ["model"]
    assert first["runs"][1]["inputs"][0]["name"] == "feed" and first["runs"][1]["inputs"][0]["version"] is None

    second = api.get(f"/api/v1/runs/{uid(4)}/provenance").json()
    assert second["runs"][0]["inputs"][0]["version"] == versions["v2"]
    assert second["runs"][1]["run"]["id"] == uid(3)

    declared = api.get(f"/api/v1/runs/{uid(5)}/provenance").json()
    assert declared["runs"][0]["inputs"][0]["resolution"] == "declared"
    assert declared["runs"][0]["inputs"][0]["version"] == versions["v1"]

    shallow = api.get(f"/api/v1/runs/{uid(2)}/provenance", {"depth": 0}).json()
    assert [r["run"]["id"] for r in shallow["runs"]] == [uid(2)]
    assert shallow["runs"][0]["inputs"][0]["producedByRunId"] == uid(1)

    marquez = api.get("/api/v1/runlineage/upstream", {"runId": uid(4)}).json()
    assert [r["run"]["id"] for r in marquez["runs"]] == [uid(4), uid(3)]
    assert marquez["runs"][0]["job"] == {"namespace": "tests", "name": "train", "version": None}


def test_dataset_version_provenance_and_downstream_consumers(api, post_event):
    _versioned_pipeline(post_event)
    versions = _versions(api)
    provenance = api.get(f"/api/v1/namespaces/prov/datasets/raw/versions/{versions['v2']}/provenance").json()
    assert provenance["producedByRunId"] == uid(3)
    assert provenance["version"]["versionLabel"] == "v2"
    assert [r["run"]["id"] for r in provenance["runs"]] == [uid(3)]
    assert provenance["runs"][0]["inputs"][0]["name"] == "feed"
    # By label too.
    by_label = api.get("/api/v1/namespaces/prov/datasets/raw/versions/v1/provenance").json()
    assert by_label["producedByRunId"] == uid(1)

    # Downstream from the run that wrote v1: the runs that consumed v1 (inferred or declared), not v2's.
    graph = lineage(api, f"run:{uid(1)}", depth=2)
    v1_node = f"datasetVersion:prov:raw:{versions['v1']}"
    consumers = {e["destination"]: e.get("resolution") for e in nodes(graph)[v1_node]["outEdges"]}
    assert consumers == {f"run:{uid(2)}": "inferred", f"run:{uid(5)}": "declared"}
    assert f"run:{uid(4)}" not in nodes(graph)
    # Upstream from a version node.
    upstream = lineage(api, f"datasetVersion:prov:raw:{versions['v2']}", withDownstream="false")
    assert set(nodes(upstream)) >= {f"datasetVersion:prov:raw:{versions['v2']}", f"run:{uid(3)}", "dataset:ext:feed"}


# --- column lineage --------------------------------------------------------------------------------------


def column(api: APIClient, node_id: str, **params: Any) -> dict[str, Any]:
    response = api.get("/api/v1/column-lineage", {"nodeId": node_id, **params})
    assert response.status_code == 200, response.content
    return response.json()


def test_column_lineage_of_cll_example(api, post_event):
    post_examples(post_event, CLL)
    graph = column(api, "datasetField:file:/tmp/cll_test/tbl1:agg")
    found = nodes(graph)
    agg = found["datasetField:file:/tmp/cll_test/tbl1:agg"]
    assert agg["type"] == "DATASET_FIELD"
    assert agg["data"]["fieldType"] == "long"
    inputs = {(f["dataset"], f["field"]): f for f in agg["data"]["inputFields"]}
    assert set(inputs) == {
        ("/tmp/cll_test/cll_source1", "a"),
        ("/tmp/cll_test/cll_source1", "b"),
        ("/tmp/cll_test/cll_source2", "c"),
        ("/tmp/cll_test/cll_source2", "a"),
    }
    assert [t["type"] for t in inputs[("/tmp/cll_test/cll_source2", "c")]["transformations"]] == ["DIRECT"]
    assert {(e["origin"], e["destination"]) for e in agg["inEdges"]} == {
        ("datasetField:file:/tmp/cll_test/cll_source1:a", "datasetField:file:/tmp/cll_test/tbl1:agg"),
        ("datasetField:file:/tmp/cll_test/cll_source1:b", "datasetField:file:/tmp/cll_test/tbl1:agg"),
        ("datasetField:file:/tmp/cll_test/cll_source2:c", "datasetField:file:/tmp/cll_test/tbl1:agg"),
        ("datasetField:file:/tmp/cll_test/cll_source2:a", "datasetField:file:/tmp/cll_test/tbl1:agg"),
    }
    # Upstream only by default: from a source field, nothing downstream.
    source = column(api, "datasetField:file:/tmp/cll_test/cll_source2:c")
    assert set(nodes(source)) == {"datasetField:file:/tmp/cll_test/cll_source2:c"}
    down = column(api, "datasetField:file:/tmp/cll_test/cll_source2:c", withDownstream="true")
    assert set(nodes(down)) == {
        "datasetField:file:/tmp/cll_test/cll_source2:c",
        "datasetField:file:/tmp/cll_test/tbl1:agg",
    }
    # A dataset node starts from all its fields.
    whole = column(api, "dataset:file:/tmp/cll_test/tbl1")
    assert {"datasetField:file:/tmp/cll_test/tbl1:" + f for f in ("ident", "trans", "agg")} <= set(nodes(whole))


def test_column_lineage_of_airflow_identity_copy(api, post_event):
    post_examples(post_event, AIRFLOW)
    graph = column(api, "datasetField:bigquery:mock-project.test.upload:a")
    a = nodes(graph)["datasetField:bigquery:mock-project.test.upload:a"]["data"]
    assert a["transformationType"] == "IDENTITY"
    assert a["transformationDescription"] == "identical"
    assert sorted((f["namespace"], f["dataset"], f["field"]) for f in a["inputFields"]) == [
        ("gs://mock-bucket", "copied.csv", "a"),
        ("gs://mock-bucket", "test.csv", "a"),
    ]


def test_symlinks_resolve_and_are_listed(api, post_event):
    post_examples(post_event, CLL)
    via_symlink = lineage(api, "dataset:file:/tmp/cll_test:default.tbl1", withDownstream="false")
    assert via_symlink["graph"][0]["id"] == "dataset:file:/tmp/cll_test/tbl1"
    detail = api.get("/api/v1/namespaces/file/datasets/" + quote("/tmp/cll_test/tbl1", safe="")).json()
    assert {"namespace": "file:/tmp/cll_test", "name": "default.tbl1", "type": "TABLE"} in detail["symlinks"]
    assert set(nodes(via_symlink)) >= {
        "dataset:file:/tmp/cll_test/cll_source1",
        "dataset:file:/tmp/cll_test/cll_source2",
    }


# --- bad parameters and authentication ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({}, 400, "nodeId is required"),
        ({"nodeId": "nonsense"}, 400, "nodeId must look like"),
        ({"nodeId": "dataset:only-a-namespace"}, 400, "has no namespace and name"),
        ({"nodeId": "table:a:b"}, 400, "not supported"),
        ({"nodeId": "datasetVersion:a:b:not-a-uuid"}, 400, "not a UUID"),
        ({"nodeId": "dataset:c:a", "depth": "ten"}, 400, "depth must be an integer"),
        ({"nodeId": "dataset:c:a", "depth": "-1"}, 400, "depth must be at least 0"),
        ({"nodeId": "dataset:c:a", "depth": "100000"}, 400, "depth must be at most"),
        ({"nodeId": "dataset:c:a", "limit": "0"}, 400, "limit must be at least 1"),
        ({"nodeId": "dataset:c:a", "asOf": "last tuesday"}, 400, "asOf must be an ISO-8601"),
        ({"nodeId": "dataset:c:a", "withDownstream": "maybe"}, 400, "withDownstream must be true or false"),
        ({"nodeId": "dataset:c:nope"}, 404, "No node matches"),
        ({"nodeId": "job:nobody:nothing"}, 404, "No node matches"),
        ({"nodeId": "run:no-such-run"}, 404, "No node matches"),
    ],
)
def test_bad_lineage_parameters(api, post_event, params, status, needle):
    post_all(post_event, [run_event("a_to_b", uid(1), "2024-01-01T00:00:00Z", [ds("c", "a")], [ds("c", "b")])])
    response = api.get("/api/v1/lineage", params)
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] == ("bad_request" if status == 400 else "not_found")
    assert needle in body["detail"]


def test_bad_column_lineage_parameters(api, post_event):
    post_examples(post_event, CLL)
    node = "datasetField:file:/tmp/cll_test/tbl1:agg"
    cases = [
        ({"nodeId": "job:testColumnLevelLineage:x"}, 400),
        ({"nodeId": node, "depth": "x"}, 400),
        ({"nodeId": node, "asOf": "2024-01-01T00:00:00Z"}, 400),
        ({"nodeId": "datasetField:file:/tmp/cll_test/tbl1"}, 400),
        ({"nodeId": "datasetField:file:/tmp/cll_test/tbl1:no_such_field"}, 404),
        ({"nodeId": "datasetField:nowhere:x:y"}, 404),
    ]
    for params, status in cases:
        response = api.get("/api/v1/column-lineage", params)
        assert response.status_code == status, (params, response.content)
        assert set(response.json()) == {"error", "detail"}


def test_graph_endpoints_need_authentication(db):
    anonymous = APIClient()
    for path in (
        "/api/v1/lineage?nodeId=dataset:a:b",
        "/api/v1/column-lineage?nodeId=dataset:a:b",
        "/api/v1/runs/x/provenance",
        "/api/v1/runlineage/upstream?runId=x",
    ):
        response = anonymous.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"] == "not_authenticated"
    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION="Bearer not-a-real-token")
    assert bad_token.get("/api/v1/lineage?nodeId=dataset:a:b").status_code == 401


def _count_queries(api: APIClient, path: str, **params: Any) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = api.get(path, params)
    assert response.status_code == 200, response.content
    return len(queries.captured_queries)


def test_query_count_does_not_grow_with_the_graph(api, post_event):
    """Rendering fetches related rows in bulk: a hub with 12 readers costs as many queries as one with 3."""
    for hub, readers in (("small", 3), ("large", 12)):
        events = [
            run_event(
                f"{hub}_reader{i}",
                uid(100 * readers + i),
                f"2024-01-01T00:0{i % 10}:00Z",
                [ds("hub", hub, schema=schema("k"))],
                [ds("out", f"{hub}{i}", version=version_facet(str(i)))],
                namespace=hub,
            )
            for i in range(readers)
        ]
        post_all(post_event, events)
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("/api/v1/lineage", {"nodeId": "dataset:hub:small"}, {"nodeId": "dataset:hub:large"}),
        (
            "/api/v1/lineage",
            {"nodeId": "dataset:hub:small", "asOf": "2025-01-01"},
            {"nodeId": "dataset:hub:large", "asOf": "2025-01-01"},
        ),
        ("/api/v1/namespaces/small/jobs", {}, {}),
        ("/api/v1/namespaces/out/datasets", {"limit": 3}, {"limit": 12}),
    ]
    for path, small, large in cases:
        if path.endswith("/jobs"):
            assert _count_queries(api, path, **small) == _count_queries(api, "/api/v1/namespaces/large/jobs"), path
        else:
            assert _count_queries(api, path, **small) == _count_queries(api, path, **large), path
    version_uuid = api.get("/api/v1/namespaces/out/datasets/large0/versions").json()["versions"][0]["version"]
    assert _count_queries(api, "/api/v1/lineage", nodeId=f"datasetVersion:out:large0:{version_uuid}", depth=4) < 40


def column_facet(**fields: list[tuple[str, str, str]]) -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json",
        "fields": {
            name: {
                "inputFields": [{"namespace": ns, "name": ds_name, "field": f} for ns, ds_name, f in inputs],
                "transformationType": "IDENTITY",
                "transformationDescription": "copied",
            }
            for name, inputs in fields.items()
        },
    }


def test_redaction_in_column_lineage_and_provenance(api, post_event):
    """public:src.value → (secret job) secret:raw.amount → (public job) public:report.total."""
    post_all(
        post_event,
        [
            run_event(
                "stage",
                uid(1),
                "2024-01-01T00:00:00Z",
                [ds("public", "src", schema=schema("value"))],
                [
                    ds(
                        "secret",
                        "raw",
                        schema=schema("amount"),
                        version=version_facet("r1"),
                        columnLineage=column_facet(amount=[("public", "src", "value")]),
                    )
                ],
                namespace="secret",
            ),
            run_event(
                "report",
                uid(2),
                "2024-01-02T00:00:00Z",
                [ds("secret", "raw")],
                [ds("public", "report", columnLineage=column_facet(total=[("secret", "raw", "amount")]))],
                namespace="public",
            ),
        ],
    )
    with visibility_policy(hide_secret):
        columns = column(api, "datasetField:public:report:total")
        text = json.dumps(columns)
        assert "secret" not in text and "raw" not in text and "amount" not in text
        found = nodes(columns)
        assert "datasetField:public:src:value" in found  # traversal went through the hidden field
        total = found["datasetField:public:report:total"]["data"]
        assert total["inputFields"][0]["redacted"] is True
        hidden = total["inputFields"][0]["id"]
        assert found[hidden]["data"] == {"redacted": True} and found[hidden]["type"] == "DATASET_FIELD"

        provenance = api.get(f"/api/v1/runs/{uid(2)}/provenance").json()
        text = json.dumps(provenance)
        assert "secret" not in text and "raw" not in text and "stage" not in text
        root, hidden_run = provenance["runs"]
        assert root["inputs"][0]["redacted"] is True
        assert hidden_run["redacted"] is True and hidden_run["run"]["id"].startswith(f"run:{REDACTED}:")

        graph = lineage(api, f"run:{uid(2)}", withDownstream="false")
        assert "dataset:public:src" in nodes(graph)  # reached through the hidden version and run
        assert "secret" not in json.dumps(graph)
    # Without a policy, the same facts by name.
    provenance = api.get(f"/api/v1/runs/{uid(2)}/provenance").json()
    assert provenance["runs"][0]["inputs"][0]["name"] == "raw"
    assert provenance["runs"][1]["run"]["id"] == uid(1)


def test_as_of_fields_of_a_dataset_that_has_no_versions(api, post_event):
    """Inputs never written by a tracked run have no versions: their fields as of an instant come
    from the time their schema facet was reported."""
    post_all(
        post_event,
        [
            run_event("read", uid(1), "2024-01-01T00:00:00Z", [ds("src", "feed", schema=schema("x"))]),
            run_event("read", uid(2), "2024-03-01T00:00:00Z", [ds("src", "feed")]),
            run_event("read", uid(3), "2024-05-01T00:00:00Z", [ds("src", "feed", schema=schema("x", "y"))]),
        ],
    )
    path = "/api/v1/namespaces/src/datasets/feed"
    assert [f["name"] for f in api.get(path).json()["fields"]] == ["x", "y"]
    assert api.get(path, {"asOf": "2024-02-01T00:00:00Z"}).json()["fields"] == []  # overwritten since: unknown
    assert [f["name"] for f in api.get(path, {"asOf": "2024-06-01T00:00:00Z"}).json()["fields"]] == ["x", "y"]
    graph = lineage(api, "job:tests:read", asOf="2024-06-01T00:00:00Z")
    assert [f["name"] for f in nodes(graph)["dataset:src:feed"]["data"]["fields"]] == ["x", "y"]


# --- the graph renderer renders what the dataset and job reads do ---------------------------------------


def _reference_graph_json(traversal: Any, redactor: Any, as_of: Any) -> dict[str, Any]:
    """The entity graph as first written: node data from ``datasets_json`` and ``jobs_json`` over
    model instances. ``lineage_graph_json`` renders it from plain values, and must not differ."""
    from lineage.access import redacted_node_id
    from lineage.api.marquez import _attach_edges, _placeholder, datasets_json, jobs_json
    from lineage.graph import DATASET, JOB, JobIO
    from lineage.models import Dataset, Job

    visibility = redactor.visibility
    dataset_rows = {
        d.pk: d
        for d in Dataset.objects.filter(pk__in=traversal.kinds(DATASET)).select_related("namespace", "current_version")
    }
    job_rows = {j.pk: j for j in Job.objects.filter(pk__in=traversal.kinds(JOB)).select_related("namespace", "parent")}
    visible_datasets = [d for d in dataset_rows.values() if visibility.sees(d.namespace_id)]
    visible_jobs = [j for j in job_rows.values() if visibility.sees(j.namespace_id)]
    io = {j.pk: JobIO() for j in visible_jobs}
    for origin, destination in traversal.edges:
        if origin[0] == DATASET and destination[1] in io and destination[0] == JOB:
            d = dataset_rows.get(origin[1])
            if d is not None:
                io[destination[1]].inputs.append((d.namespace_id, d.namespace.name, d.pk, d.name))
        elif origin[0] == JOB and origin[1] in io and destination[0] == DATASET:
            d = dataset_rows.get(destination[1])
            if d is not None:
                io[origin[1]].outputs.append((d.namespace_id, d.namespace.name, d.pk, d.name))
    for row in io.values():
        row.inputs.sort(key=lambda ref: (ref[1], ref[3]))
        row.outputs.sort(key=lambda ref: (ref[1], ref[3]))
    rendered = datasets_json(visible_datasets, redactor, as_of=as_of, facets=False, symlinks=False)
    dataset_data = dict(zip([d.pk for d in visible_datasets], rendered, strict=True))
    rendered = jobs_json(visible_jobs, redactor, as_of=as_of, io=io, facets=False)
    job_data = dict(zip([j.pk for j in visible_jobs], rendered, strict=True))
    graph_nodes: dict[Any, dict[str, Any]] = {}
    for key in traversal.nodes:
        kind, pk = key
        if kind == DATASET and pk in dataset_data:
            d = dataset_rows[pk]
            graph_nodes[key] = {
                "id": f"dataset:{d.namespace.name}:{d.name}",
                "type": "DATASET",
                "data": dataset_data[pk],
                "inEdges": [],
                "outEdges": [],
            }
        elif kind == JOB and pk in job_data:
            j = job_rows[pk]
            graph_nodes[key] = {
                "id": f"job:{j.namespace.name}:{j.name}",
                "type": "JOB",
                "data": job_data[pk],
                "inEdges": [],
                "outEdges": [],
            }
        else:
            graph_nodes[key] = _placeholder(kind, redacted_node_id(kind, pk))
    return {"graph": _attach_edges(graph_nodes, traversal), "truncated": traversal.truncated}


def test_graph_nodes_render_exactly_as_the_dataset_and_job_reads_do(api, post_event):
    from datetime import UTC, datetime

    from lineage.access import EVERYTHING, Visibility
    from lineage.api.marquez import Redactor, lineage_graph_json
    from lineage.graph import NodeRef, entity_lineage
    from lineage.models import Dataset, Job

    post_examples(post_event, AIRFLOW)
    _secret_chain(post_event)
    # A parent run, a code commit, run facets and an input change (a closed edge) for asOf.
    event = run_event("build", uid(9), "2024-01-01T00:00:00.123456Z", [ds("public", "dst")], [ds("code", "artifact")])
    event["run"]["facets"]["parent"] = {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ParentRunFacet.json",
        "run": {"runId": uid(2)},
        "job": {"namespace": "public", "name": "publish"},
    }
    event["job"]["facets"]["sourceCodeLocation"] = {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/SourceCodeLocationJobFacet.json",
        "type": "git",
        "url": "https://github.com/acme/etl/blob/abc123/build.py",
        "repoUrl": "https://github.com/acme/etl.git",
        "version": "abc123",
    }
    start = dict(event, eventType="START", eventTime="2024-01-01T00:00:00.5Z")
    post_all(post_event, [start, event])
    later = run_event("build", uid(10), "2024-03-01T00:00:00Z", [ds("public", "src")], [ds("code", "artifact")])
    post_all(post_event, [later])
    starts = [("dataset", d) for d in Dataset.objects.values_list("pk", flat=True)]
    starts += [("job", j) for j in Job.objects.values_list("pk", flat=True)]
    visibilities = [EVERYTHING, Visibility(frozenset(hide_secret(None)))]
    instants = [None, datetime(2024, 1, 1, 0, 30, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)]
    compared = 0
    for kind, pk in starts:
        for as_of in instants:
            for depth in (2, 20):
                traversal = entity_lineage(NodeRef(kind, pk, 0), depth=depth, limit=50, as_of=as_of)
                for visibility in visibilities:
                    expected = _reference_graph_json(traversal, Redactor(visibility), as_of)
                    got = lineage_graph_json(traversal, Redactor(visibility), as_of=as_of)
                    assert json.dumps(got) == json.dumps(expected), (kind, pk, as_of, depth)
                    compared += 1
    assert compared > 100


def test_iso_time_writes_timestamps_as_ts_does(db):
    from datetime import UTC, datetime

    from lineage.api.marquez import IsoTime, iso, ts
    from lineage.models import Namespace

    instants = [
        datetime(2024, 1, 1, 0, 0, tzinfo=UTC),
        datetime(2024, 1, 1, 23, 59, 59, 1, tzinfo=UTC),
        datetime(1999, 12, 31, 12, 30, 5, 500000, tzinfo=UTC),
        datetime(2024, 6, 30, 8, 7, 6, 999999, tzinfo=UTC),
    ]
    for n, instant in enumerate(instants):
        Namespace.objects.create(name=f"iso{n}", created_at=instant, updated_at=instant)
    rows = (
        Namespace.objects.filter(name__startswith="iso").order_by("name").values_list(IsoTime("created_at"), flat=True)
    )
    assert [iso(value) for value in rows] == [ts(instant) for instant in instants]
    assert iso(None) is None


def test_cycle_collection_is_back_on_after_a_graph_answer(api, post_event):
    """The graph view turns cyclic garbage collection off while it builds an answer (see
    ``_without_cycle_collection``); it is on again afterwards, also after an error, and stays off
    if it was off."""
    import gc

    _secret_chain(post_event)
    assert gc.isenabled()
    assert api.get("/api/v1/lineage", {"nodeId": "dataset:public:dst"}).status_code == 200
    assert gc.isenabled()
    assert api.get("/api/v1/lineage", {"nodeId": "dataset:public:nothing"}).status_code == 404
    assert gc.isenabled()
    gc.disable()
    try:
        assert api.get("/api/v1/lineage", {"nodeId": "dataset:public:dst"}).status_code == 200
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_cycle_collection_switch_is_shared_by_overlapping_requests():
    """Threads of one worker answer at once: collection stays off while any of them is inside,
    and is on again when the last one leaves, whatever order they leave in."""
    import gc
    import threading

    from lineage.api.graph_views import _without_cycle_collection

    assert gc.isenabled()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with _without_cycle_collection():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with _without_cycle_collection():
            second_in.set()
            first_out.wait(5)
            seen["after first left"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {"after first left": False}
    assert gc.isenabled()


def test_lineage_answer_is_compact_json_unless_indent_is_asked_for(api, post_event):
    """The graph is written out inside the view (see ``_lineage_graph``): the same JSON document
    as DRF would send, and DRF's own rendering when the client asks for an indented one."""
    import json

    _secret_chain(post_event)
    compact = api.get("/api/v1/lineage", {"nodeId": "dataset:public:dst"})
    assert compact.status_code == 200 and compact["Content-Type"] == "application/json"
    assert b"\n" not in compact.content
    indented = api.get("/api/v1/lineage", {"nodeId": "dataset:public:dst"}, HTTP_ACCEPT="application/json; indent=2")
    assert indented.status_code == 200 and b'\n  "graph"' in indented.content
    assert json.loads(indented.content) == json.loads(compact.content)
