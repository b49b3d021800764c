"""The Marquez-compatible read endpoints, through HTTP on the real database: namespaces, datasets,
versions, jobs, runs, facets, search and raw events; paths with '/' and ':'; paging; bad
parameters; authentication and token scopes."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from rest_framework.test import APIClient

from lineage import search as search_module
from tests.conftest import load_example
from tests.test_lineage_graph import (
    AIRFLOW,
    BQ_RUN,
    CLL,
    UPLOAD_RUN,
    ds,
    post_all,
    post_examples,
    run_event,
    schema,
    uid,
    version_facet,
)

pytestmark = pytest.mark.django_db


def q(text: str) -> str:
    return quote(text, safe="")


def get(api: APIClient, path: str, status: int = 200, **params: Any) -> Any:
    response = api.get(path, params)
    assert response.status_code == status, (path, response.content)
    return response.json()


# --- namespaces -----------------------------------------------------------------------------------------


def test_namespaces_list_detail_and_paging(api, post_event):
    post_examples(post_event, AIRFLOW)
    listed = get(api, "/api/v1/namespaces")
    names = [ns["name"] for ns in listed["namespaces"]]
    assert names == sorted(names)
    assert set(names) == {"airflow", "bigquery", "gs://mock-bucket"}
    assert listed["totalCount"] == 3
    page = get(api, "/api/v1/namespaces", limit=1, offset=1)
    assert [ns["name"] for ns in page["namespaces"]] == names[1:2]
    assert page["totalCount"] == 3
    assert get(api, "/api/v1/namespaces", limit=5000)["totalCount"] == 3  # clamped, not refused
    # A namespace with ':' and '/', URL-encoded as Marquez clients do, and raw.
    for path in ("/api/v1/namespaces/gs%3A%2F%2Fmock-bucket", "/api/v1/namespaces/gs://mock-bucket"):
        detail = get(api, path)
        assert detail["name"] == "gs://mock-bucket"
        assert detail["createdAt"] == "2024-11-26T13:05:29.606867Z"
    assert get(api, "/api/v1/namespaces/nowhere", 404)["error"] == "not_found"
    assert get(api, "/api/v1/namespaces/airflow/")["name"] == "airflow"  # a trailing slash is forgiven


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"limit": "ten"}, "limit must be an integer"),
        ({"limit": "-1"}, "limit must be at least 0"),
        ({"offset": "-5"}, "offset must be at least 0"),
        ({"offset": "1.5"}, "offset must be an integer"),
    ],
)
def test_bad_paging(api, params, needle):
    body = get(api, "/api/v1/namespaces", 400, **params)
    assert body["error"] == "bad_request" and needle in body["detail"]


# --- datasets and versions ----------------------------------------------------------------------------------


def test_dataset_list_and_detail_from_airflow_events(api, post_event):
    post_examples(post_event, AIRFLOW)
    listed = get(api, "/api/v1/namespaces/gs%3A%2F%2Fmock-bucket/datasets")
    assert [d["name"] for d in listed["datasets"]] == ["copied.csv", "test.csv"]
    assert listed["totalCount"] == 2
    upload = get(api, "/api/v1/namespaces/bigquery/datasets/mock-project.test.upload")
    assert upload["id"] == {"namespace": "bigquery", "name": "mock-project.test.upload"}
    assert upload["type"] == "DB_TABLE"
    assert [(f["name"], f["type"]) for f in upload["fields"]] == [(c, "INTEGER") for c in "abcd"]
    assert set(upload["facets"]) >= {"schema", "columnLineage"}
    assert upload["currentVersion"] is not None
    assert upload["lastModifiedAt"] == "2024-11-26T13:05:29.606867Z"
    assert upload["deleted"] is False
    paged = get(api, "/api/v1/namespaces/gs%3A%2F%2Fmock-bucket/datasets", limit=1, offset=1)
    assert [d["name"] for d in paged["datasets"]] == ["test.csv"] and paged["totalCount"] == 2


def test_dataset_names_with_slashes(api, post_event):
    post_examples(post_event, CLL)
    encoded = get(api, "/api/v1/namespaces/file/datasets/" + q("/tmp/cll_test/tbl1"))
    raw = get(api, "/api/v1/namespaces/file/datasets//tmp/cll_test/tbl1")
    assert encoded == raw
    assert encoded["name"] == "/tmp/cll_test/tbl1"
    assert [f["name"] for f in encoded["fields"]] == ["ident", "trans", "agg"]
    versions = get(api, "/api/v1/namespaces/file/datasets//tmp/cll_test/tbl1/versions")
    assert versions["totalCount"] >= 1
    version = versions["versions"][0]["version"]
    detail = get(api, f"/api/v1/namespaces/file/datasets/{q('/tmp/cll_test/tbl1')}/versions/{version}")
    assert detail["version"] == version and detail["name"] == "/tmp/cll_test/tbl1"
    missing = get(api, "/api/v1/namespaces/file/datasets/" + q("/tmp/cll_test/nope"), 404)
    assert "No dataset matches" in missing["detail"]
    unknown_version = get(api, "/api/v1/namespaces/file/datasets//tmp/cll_test/tbl1/versions/nope", 404)
    assert "has no version" in unknown_version["detail"]


def test_dataset_versions_with_schema_changes_and_creating_runs(api, post_event):
    post_all(
        post_event,
        [
            run_event(
                "load",
                uid(1),
                "2024-01-01T00:00:00Z",
                [],
                [ds("v", "t", version=version_facet("1"), schema=schema("a"))],
            ),
            run_event(
                "load",
                uid(2),
                "2024-02-01T00:00:00Z",
                [],
                [ds("v", "t", version=version_facet("2"), schema=schema("a", "b"))],
            ),
            run_event(
                "load",
                uid(3),
                "2024-03-01T00:00:00Z",
                [],
                [ds("v", "t", version=version_facet("3"), schema=schema("b"))],
            ),
        ],
    )
    versions = get(api, "/api/v1/namespaces/v/datasets/t/versions")
    assert versions["totalCount"] == 3
    listed = versions["versions"]
    assert [v["versionLabel"] for v in listed] == ["3", "2", "1"]  # newest first
    assert [[f["name"] for f in v["fields"]] for v in listed] == [["b"], ["a", "b"], ["a"]]
    assert [v["createdByRun"]["id"] for v in listed] == [uid(3), uid(2), uid(1)]
    assert listed[0]["schemaChange"]["level"] == "MAJOR"
    assert listed[1]["schemaChange"]["level"] == "MINOR"
    assert listed[2]["schemaChange"] is None
    by_label = get(api, "/api/v1/namespaces/v/datasets/t/versions/2")
    assert by_label["version"] == listed[1]["version"]
    assert get(api, "/api/v1/namespaces/v/datasets/t")["currentVersion"] == listed[0]["version"]
    second_page = get(api, "/api/v1/namespaces/v/datasets/t/versions", limit=1, offset=1)
    assert [v["versionLabel"] for v in second_page["versions"]] == ["2"]


def test_dataset_event_and_job_event(api, post_event):
    post_examples(
        post_event, ["marquez/open_lineage/event_dataset_event.json", "marquez/open_lineage/event_job_event.json"]
    )
    dataset = get(api, "/api/v1/namespaces/my-dataset-namespace/datasets/my-dataset-name")
    assert dataset["fields"][0]["name"] == "col_a" and dataset["fields"][0]["type"] == "VARCHAR"
    assert get(api, "/api/v1/namespaces/my-dataset-namespace/datasets/my-dataset-name/versions")["totalCount"] == 1
    job = get(api, "/api/v1/namespaces/my-scheduler-namespace/jobs/myjob")
    # A JobEvent declares inputs and outputs statically; they are the job's edges.
    assert job["inputs"] == [{"namespace": "my-datasource-namespace", "name": "instance.schema.input-1"}]
    assert job["outputs"] == [{"namespace": "my-datasource-namespace", "name": "instance.schema.output-1"}]
    assert job["latestRun"] is None


# --- jobs and runs --------------------------------------------------------------------------------------


def test_jobs_runs_and_facets(api, post_event):
    post_examples(post_event, AIRFLOW)
    jobs = get(api, "/api/v1/namespaces/airflow/jobs")
    assert [j["name"] for j in jobs["jobs"]] == ["BQ", "BQ.upload", "dag", "dag.task_0"]
    assert jobs["totalCount"] == 4
    upload = get(api, "/api/v1/namespaces/airflow/jobs/BQ.upload")
    assert upload["inputs"] == [
        {"namespace": "gs://mock-bucket", "name": "copied.csv"},
        {"namespace": "gs://mock-bucket", "name": "test.csv"},
    ]
    assert upload["outputs"] == [{"namespace": "bigquery", "name": "mock-project.test.upload"}]
    assert upload["parentJobName"] == "BQ"
    assert upload["latestRun"]["id"] == UPLOAD_RUN

    runs = get(api, "/api/v1/namespaces/airflow/jobs/BQ.upload/runs")
    assert runs["totalCount"] == 1 and runs["runs"][0]["id"] == UPLOAD_RUN
    run = get(api, f"/api/v1/jobs/runs/{UPLOAD_RUN}")
    assert run["state"] == "COMPLETED"
    assert run["startedAt"] == "2024-11-26T13:05:25.547948Z"
    assert run["endedAt"] == "2024-11-26T13:05:29.606867Z"
    assert run["durationMs"] == 4058
    assert run["parentRun"] == {"id": BQ_RUN, "job": {"namespace": "airflow", "name": "BQ"}}
    inputs = {(v["datasetVersionId"]["namespace"], v["datasetVersionId"]["name"]) for v in run["inputDatasetVersions"]}
    assert inputs == {("gs://mock-bucket", "copied.csv"), ("gs://mock-bucket", "test.csv")}
    (output,) = run["outputDatasetVersions"]
    upload_ds = get(api, "/api/v1/namespaces/bigquery/datasets/mock-project.test.upload")
    assert output["datasetVersionId"]["version"] == upload_ds["currentVersion"]

    run_facets = get(api, f"/api/v1/jobs/runs/{UPLOAD_RUN}/facets", type="run")
    assert run_facets["runId"] == UPLOAD_RUN
    assert run_facets["facets"]["parent"]["run"]["runId"] == BQ_RUN
    job_facets = get(api, f"/api/v1/jobs/runs/{UPLOAD_RUN}/facets", type="job")
    assert job_facets["facets"] == get(api, "/api/v1/namespaces/airflow/jobs/BQ.upload")["facets"]
    assert get(api, f"/api/v1/jobs/runs/{UPLOAD_RUN}/facets", 400, type="dataset")["error"] == "bad_request"
    assert get(api, "/api/v1/jobs/runs/no-such-run", 404)["error"] == "not_found"
    assert get(api, "/api/v1/namespaces/airflow/jobs/nope", 404)["error"] == "not_found"


def test_unicode_job_names_in_paths(api, post_event):
    post_examples(post_event, ["marquez/open_lineage/event_unicode.json"])
    name = "myjob.buggy_task\U0001f577"
    job = get(api, "/api/v1/namespaces/my-scheduler-namespace/jobs/" + q(name))
    assert job["name"] == name
    assert get(api, "/api/v1/namespaces/my-scheduler-namespace/jobs/" + q(name) + "/runs")["totalCount"] == 1


def test_job_runs_newest_first_and_paged(api, post_event):
    post_all(
        post_event,
        [
            run_event("nightly", uid(i), f"2024-01-0{i}T00:00:00Z", [ds("n", "in")], [ds("n", "out")])
            for i in range(1, 6)
        ],
    )
    runs = get(api, "/api/v1/namespaces/tests/jobs/nightly/runs", limit=2)
    assert [r["id"] for r in runs["runs"]] == [uid(5), uid(4)]
    assert runs["totalCount"] == 5
    later = get(api, "/api/v1/namespaces/tests/jobs/nightly/runs", limit=2, offset=4)
    assert [r["id"] for r in later["runs"]] == [uid(1)]


# --- search --------------------------------------------------------------------------------------------


def _searchable(post_event: Any) -> None:
    post_all(
        post_event,
        [
            run_event(
                "customer_export",
                uid(1),
                "2024-01-01T00:00:00Z",
                [ds("crm", "public.customers", schema=schema("customer_email", "signup_date"))],
                [ds("warehouse", "analytics.delivery_7_days", schema=schema("orders"))],
                namespace="etl",
            ),
            run_event("billing_job", uid(2), "2024-02-01T00:00:00Z", [ds("crm", "public.invoices")], namespace="etl"),
        ],
    )


def search(api: APIClient, status: int = 200, **params: Any) -> Any:
    return get(api, "/api/v1/search", status, **params)


def test_search_datasets_jobs_fields_and_namespaces(api, post_event):
    _searchable(post_event)
    by_name = search(api, q="delivery")
    assert by_name["totalCount"] == 1
    assert by_name["results"][0] == {
        "type": "DATASET",
        "name": "analytics.delivery_7_days",
        "updatedAt": "2024-01-01T00:00:00Z",
        "namespace": "warehouse",
        "nodeId": "dataset:warehouse:analytics.delivery_7_days",
        "matchedFields": [],
    }
    by_field = search(api, q="email")
    assert [(r["name"], r["matchedFields"]) for r in by_field["results"]] == [("public.customers", ["customer_email"])]
    jobs = search(api, q="export", filter="JOB")
    assert [(r["type"], r["nodeId"]) for r in jobs["results"]] == [("JOB", "job:etl:customer_export")]
    in_namespace = search(api, q="crm")
    assert {r["name"] for r in in_namespace["results"]} == {"public.customers", "public.invoices"}
    newest_first = search(api, q="etl", sort="UPDATE_AT")
    assert [r["name"] for r in newest_first["results"]] == ["billing_job", "customer_export"]
    by_name_sort = search(api, q="etl", sort="name")
    assert [r["name"] for r in by_name_sort["results"]] == ["billing_job", "customer_export"]
    limited = search(api, q="public", limit=1)
    assert limited["totalCount"] == 2 and len(limited["results"]) == 1
    assert search(api, q="public", namespace="warehouse")["totalCount"] == 0
    assert search(api, q="public", after="2024-01-15")["totalCount"] == 1
    assert search(api, q="public", before="2024-01-15")["totalCount"] == 1
    assert search(api, q="zzz-nothing")["totalCount"] == 0


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({}, "q is required"),
        ({"q": "  "}, "q is required"),
        ({"q": "x", "filter": "MODEL"}, "filter must be DATASET or JOB"),
        ({"q": "x", "sort": "size"}, "sort must be NAME or UPDATE_AT"),
        ({"q": "x", "before": "yesterday"}, "before must be a date"),
        ({"q": "x", "limit": "many"}, "limit must be an integer"),
    ],
)
def test_bad_search_parameters(api, params, needle):
    body = search(api, 400, **params)
    assert needle in body["detail"]


def test_search_documents_match_the_migration_indexes():
    import importlib

    migration = importlib.import_module("lineage.migrations.0002_search")
    assert migration.DATASET_DOCUMENT == search_module.DATASET_DOCUMENT
    assert migration.JOB_DOCUMENT == search_module.JOB_DOCUMENT
    assert migration.NAMESPACE_DOCUMENT == search_module.NAMESPACE_DOCUMENT


@pytest.mark.postgres
def test_postgres_search_uses_the_full_text_index(api, post_event):
    _searchable(post_event)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'lineage_%%_search_idx'")
        assert {row[0] for row in cursor.fetchall()} == {
            "lineage_dataset_search_idx",
            "lineage_job_search_idx",
            "lineage_namespace_search_idx",
        }
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            f"EXPLAIN SELECT id FROM lineage_dataset WHERE {search_module.DATASET_DOCUMENT} "
            "@@ to_tsquery('simple'::regconfig, 'email:*')"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET enable_seqscan = on")
    assert "lineage_dataset_search_idx" in plan


# --- raw events -----------------------------------------------------------------------------------------


def test_lineage_events_sorted_filtered_and_paged(api, post_event):
    events = [run_event("e", uid(i), f"2024-01-0{i}T00:00:00Z", [], [ds("ev", f"d{i}")]) for i in range(1, 6)]
    post_all(post_event, events)
    everything = get(api, "/api/v1/events/lineage")
    assert everything["totalCount"] == 5
    assert [e["eventTime"] for e in everything["events"]] == [f"2024-01-0{i}T00:00:00Z" for i in (5, 4, 3, 2, 1)]
    assert everything["events"][-1] == events[0]  # verbatim
    ascending = get(api, "/api/v1/events/lineage", sortDirection="asc", limit=2, offset=1)
    assert [e["run"]["runId"] for e in ascending["events"]] == [uid(2), uid(3)]
    assert ascending["totalCount"] == 5
    window = get(api, "/api/v1/events/lineage", after="2024-01-02T00:00:00Z", before="2024-01-05T00:00:00Z")
    assert [e["run"]["runId"] for e in window["events"]] == [uid(4), uid(3)]
    assert window["totalCount"] == 2
    assert get(api, "/api/v1/events/lineage", 400, sortDirection="sideways")["error"] == "bad_request"
    assert "before must be an ISO-8601" in get(api, "/api/v1/events/lineage", 400, before="soon")["detail"]
    # An offset written with '+' left unencoded arrives as a space; it is understood.
    plus = api.get("/api/v1/events/lineage?after=2024-01-04T00:00:00+00:00")
    assert plus.status_code == 200 and plus.json()["totalCount"] == 1


def test_example_events_come_back(api, post_event):
    event = load_example("marquez/open_lineage/event_full.json")
    post_all(post_event, [event])
    assert get(api, "/api/v1/events/lineage")["events"] == [event]


# --- authentication and scopes ------------------------------------------------------------------------

READ_PATHS = [
    "/api/v1/namespaces",
    "/api/v1/namespaces/airflow",
    "/api/v1/namespaces/airflow/jobs",
    "/api/v1/namespaces/airflow/jobs/BQ.upload",
    "/api/v1/namespaces/airflow/jobs/BQ.upload/runs",
    "/api/v1/namespaces/bigquery/datasets",
    "/api/v1/namespaces/bigquery/datasets/mock-project.test.upload",
    "/api/v1/namespaces/bigquery/datasets/mock-project.test.upload/versions",
    f"/api/v1/jobs/runs/{UPLOAD_RUN}",
    f"/api/v1/jobs/runs/{UPLOAD_RUN}/facets?type=run",
    f"/api/v1/runs/{UPLOAD_RUN}/provenance",
    f"/api/v1/runlineage/upstream?runId={UPLOAD_RUN}",
    "/api/v1/lineage?nodeId=job:airflow:BQ.upload",
    "/api/v1/column-lineage?nodeId=datasetField:bigquery:mock-project.test.upload:a",
    "/api/v1/search?q=mock",
    "/api/v1/events/lineage",
]


def test_reads_need_a_token_and_respect_scopes(api, post_event, make_user, token_for):
    post_examples(post_event, AIRFLOW)
    anonymous = APIClient()
    reader = APIClient()
    # Both read everything by role (compliance_officer): what differs is only their token's scope.
    officer_reader = make_user("reader", roles=("compliance_officer",))
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(officer_reader, scope='read')}")
    ingester = APIClient()
    officer_ingester = make_user("ingester", roles=("compliance_officer",))
    ingester.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(officer_ingester, scope='ingest')}")
    for path in READ_PATHS:
        response = anonymous.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"] == "not_authenticated"
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert reader.get(path).status_code == 200, path
        assert ingester.get(path).status_code == 403, path


def test_unknown_namespace_subpaths(api, post_event):
    post_examples(post_event, AIRFLOW)
    assert get(api, "/api/v1/namespaces/airflow/models", 404)["error"] == "not_found"
    assert get(api, "/api/v1/namespaces/airflow/datasets/x/versions", 404)["error"] == "not_found"
    assert get(api, "/api/v1/runs/whatever", 400)["error"] == "bad_request"
    assert get(api, "/api/v1/runs/no-such-run/provenance", 404)["error"] == "not_found"
    assert get(api, "/api/v1/runlineage/upstream", 400)["detail"] == "runId is required."
    body = json.dumps(get(api, "/api/v1/namespaces/nowhere/datasets/x", 404))
    assert "nowhere" in body
