"""Bad input gets its documented 4xx with a message naming what is wrong, and changes nothing."""

from __future__ import annotations

import copy
import gzip
import json
import zlib

import pytest

from tests.conftest import load_example, table_counts

pytestmark = pytest.mark.django_db

SIMPLE = "marquez/open_lineage/event_simple.json"


def post_raw(api, body: bytes, path: str = "/api/v1/lineage", **headers):
    return api.post(path, data=body, content_type="application/json", **headers)


def assert_rejected(response, status: int, *fragments: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) >= {"error", "detail"}
    for fragment in fragments:
        assert fragment in json.dumps(body), (fragment, body)
    return body


@pytest.fixture
def simple():
    return load_example(SIMPLE)


@pytest.fixture
def unchanged(db):
    before = table_counts()
    yield
    assert table_counts() == before


def mutate(event: dict, path: str, value=None, delete: bool = False) -> dict:
    event = copy.deepcopy(event)
    *parents, last = path.split(".")
    target = event
    for key in parents:
        target = target[key]
    if delete:
        del target[last]
    else:
        target[last] = value
    return event


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"eventTime": "2024-01-01T00:00:00Z", ', "Malformed JSON"),
        (b"not json at all", "Malformed JSON"),
        (b"", "empty"),
        (b'{"eventTime": NaN}', "NaN"),
        (b'{"producer": "\xff"}', "UTF-8"),
    ],
)
def test_malformed_json_is_400(api, unchanged, body, fragment):
    assert_rejected(post_raw(api, body), 400, fragment)


@pytest.mark.parametrize(
    ("path", "value", "delete", "field", "message"),
    [
        ("run.runId", None, True, "run.runId", "required field is missing"),
        ("run", None, True, "run", "required field is missing"),
        ("job.name", None, True, "job.name", "required field is missing"),
        ("job.namespace", None, True, "job.namespace", "required field is missing"),
        ("producer", None, True, "producer", "required field is missing"),
        ("eventTime", None, True, "eventTime", "required field is missing"),
        ("eventTime", 1700000000, False, "eventTime", "ISO 8601"),
        ("eventTime", "yesterday", False, "eventTime", "ISO 8601"),
        ("run.runId", 42, False, "run.runId", "must be a string"),
        ("run.runId", "", False, "run.runId", "must not be empty"),
        ("run.runId", "x" * 300, False, "run.runId", "limit is 255"),
        ("job.name", ["a"], False, "job.name", "must be a string"),
        ("inputs", {"namespace": "a"}, False, "inputs", "must be an array"),
        ("inputs", [{"namespace": "a"}], False, "inputs[0].name", "required field is missing"),
        ("outputs", ["x"], False, "outputs[0]", "must be an object"),
        ("run.facets", "nope", False, "run.facets", "must be an object"),
        ("eventType", "FINISHED", False, "eventType", "is not one of"),
        (
            "schemaURL",
            "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/BananaEvent",
            False,
            "schemaURL",
            "unknown event type",
        ),
        ("schemaURL", 7, False, "schemaURL", "must be a string"),
        ("job.namespace", "my namespace", False, "job.namespace", "forbidden character"),
        ("job.namespace", "ns<script>", False, "job.namespace", "forbidden character"),
        ("job.name", "bad\u0000name", False, "job.name", "control characters"),
    ],
)
def test_invalid_event_is_422_naming_the_field(api, unchanged, simple, path, value, delete, field, message):
    event = mutate(simple, path, value, delete)
    body = assert_rejected(post_raw(api, json.dumps(event).encode()), 422, message)
    assert body["field"] == field
    assert body["detail"].startswith(field)


def test_nul_inside_a_facet_is_422_with_its_path(api, unchanged, simple):
    event = mutate(simple, "run.facets", {"custom": {"note": "a\u0000b"}})
    body = assert_rejected(post_raw(api, json.dumps(event).encode()), 422, "NUL")
    assert body["field"] == "run.facets.custom.note"


def test_not_an_object_is_422(api, unchanged):
    assert_rejected(post_raw(api, b"[1, 2]"), 422, "must be a JSON object")


def test_run_id_of_another_job_is_422(api, simple):
    assert post_raw(api, json.dumps(simple).encode()).status_code == 201
    before = table_counts()
    other = mutate(simple, "job.name", "another-job")
    assert_rejected(post_raw(api, json.dumps(other).encode()), 422, "already belongs to job")
    assert table_counts() == before


def test_forbidden_namespace_inside_column_lineage_is_422(api, unchanged, simple):
    simple["outputs"][0]["facets"] = {
        "columnLineage": {"fields": {"a": {"inputFields": [{"namespace": "bad ns", "name": "t", "field": "a"}]}}}
    }
    body = assert_rejected(post_raw(api, json.dumps(simple).encode()), 422, "namespace")
    assert body["field"].startswith("outputs[0].facets.columnLineage.fields.a.inputFields[0]")


def test_body_over_the_limit_is_413(api, unchanged):
    body = b'{"x": "' + b"a" * (40 * 1024 * 1024) + b'"}'
    assert_rejected(post_raw(api, body), 413, "exceeds the limit")


def test_gzip_bomb_is_413_without_inflating_it(api, unchanged):
    bomb = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1024 * 1024)
    compressed = b"".join(bomb.compress(chunk) for _ in range(1024)) + bomb.flush()  # 1 GiB of zeros
    assert len(compressed) < 2 * 1024 * 1024
    assert_rejected(post_raw(api, compressed, HTTP_CONTENT_ENCODING="gzip"), 413, "decompressed")


def test_gzip_body_is_accepted(api, simple):
    response = post_raw(api, gzip.compress(json.dumps(simple).encode()), HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 201, response.content


def test_broken_gzip_is_400(api, unchanged):
    assert_rejected(post_raw(api, b"\x1f\x8b\x08\x00garbage", HTTP_CONTENT_ENCODING="gzip"), 400, "gzip")


def test_unsupported_content_encoding_is_415(api, unchanged, simple):
    assert_rejected(post_raw(api, json.dumps(simple).encode(), HTTP_CONTENT_ENCODING="br"), 415, "br")


def test_batch_must_be_an_array(api, unchanged, simple):
    assert_rejected(post_raw(api, json.dumps(simple).encode(), path="/api/v1/lineage/batch"), 400, "JSON array")


def test_batch_reports_each_failure_and_keeps_the_good_events(api, simple):
    bad = mutate(simple, "run.runId", None, delete=True)
    second = mutate(simple, "run.runId", "5e6a0f3e-39bb-4a5d-9d3d-8f3c8d1c6c1a")
    body = json.dumps([simple, bad, second, "junk", simple]).encode()
    response = post_raw(api, body, path="/api/v1/lineage/batch")
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["status"] == "partial_success"
    assert result["summary"] == {
        "received": 5,
        "successful": 3,
        "failed": 2,
        "retriable": 0,
        "non_retriable": 2,
        "duplicates": 1,
    }
    failures = {f["index"]: f for f in result["failed_events"]}
    assert set(failures) == {1, 3}
    assert "run.runId" in failures[1]["reason"] and failures[1]["retriable"] is False
    from lineage.models import RawEvent, Run

    assert RawEvent.objects.count() == 2
    assert set(Run.objects.values_list("run_id", flat=True)) == {simple["run"]["runId"], second["run"]["runId"]}


def test_batch_of_only_valid_events_is_success(api, simple):
    response = post_raw(api, json.dumps([simple]).encode(), path="/api/v1/lineage/batch")
    assert response.json()["status"] == "success"
    assert response.json()["failed_events"] == []


@pytest.mark.postgres
def test_a_very_wide_schema_is_accepted_and_searchable(api, simple):
    """100k fields: the dataset's search document is bounded, so storing it cannot fail."""
    fields = [{"name": f"column_{i:06d}", "type": "VARCHAR"} for i in range(100_000)]
    simple["outputs"][0]["facets"] = {"schema": {"_producer": "t", "_schemaURL": "t", "fields": fields}}
    response = post_raw(api, json.dumps(simple).encode())
    assert response.status_code == 201, response.content
    found = api.get("/api/v1/search", {"q": "column_000042"}).json()
    assert any(r["name"] == simple["outputs"][0]["name"] for r in found["results"])
