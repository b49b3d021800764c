"""Every Marquez-compatible response validates against Marquez's openapi.yml (../shared/specs/marquez).

Real example events are posted, then every read endpoint is called for every namespace, dataset,
version, job and run they produced, and each body is validated with jsonschema against the
component schema the spec names for that operation ($refs resolved inside the spec document).

Workarounds for quirks of openapi.yml (each is the smallest change that lets the spec describe
what Marquez itself returns; nothing else is relaxed):

1. Optional values may be ``null``. Marquez serialises an absent ``Optional`` as ``null`` and the
   spec's own examples show it (``latestRun: null``, ``lastModifiedAt: null``,
   ``nominalStartTime: null``), but OpenAPI 3.0 would need ``nullable: true``, which the spec never
   writes. So every *property* also accepts null; required properties must still be present.
2. ``SearchResult.name`` and ``.updatedAt`` have an empty ``type:`` (YAML null), which is not a
   valid JSON Schema type: we read it as ``string`` (what the descriptions say).
3. ``DatasetVersion.tags`` says ``type: string`` while ``Dataset.tags`` and Marquez's code use a
   list of tag names: patched to an array of strings.
4. ``InputDatasetVersion.facets`` / ``OutputDatasetVersion.facets`` say the facet values are
   strings; they are facet objects (Marquez returns them verbatim): patched to ``CustomFacet``.
5. ``FacetsResult.facets`` refers to a single ``CustomFacet`` (so the map itself would need
   ``_producer``); Marquez returns the map of facets: patched to ``RunFacets``.
6. ``GraphNode.data`` is ``oneOf [Dataset, Job]`` with a discriminator. Neither schema has a
   required property, so every object matches both and ``oneOf`` can never pass; jsonschema does
   not apply OpenAPI discriminators anyway. We apply it by hand: ``data`` of a DATASET node is
   validated as ``Dataset``, of a JOB node as ``Job``.
7. ``NodeType`` lists JOB and DATASET only; the column-lineage graph has ``DATASET_FIELD`` nodes
   (as Marquez returns; its Java ``NodeType`` has the value). For /column-lineage only, the enum is
   extended and ``data`` is validated against ``ColumnLineageNodeData`` written from Marquez's
   source (marquez.db.models.ColumnLineageNodeData), since the spec has no schema for it.
8. ``Run`` is ``anyOf [IncompleteRun, {jobVersion, inputDatasetVersions, ...}]``: with no required
   keys, anything passes one branch or the other. A Marquez run is both (the Java class has all
   of those fields), so runs are validated against ``allOf`` the two branches.
9. Formats: ``date-time`` and ``uuid`` are checked (jsonschema's format checker); run ids in these
   examples are UUIDs. ``uri``/``URL`` formats are not checked.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
import yaml
from rest_framework.test import APIClient

from tests.conftest import SPECS, load_example, require_shared

pytestmark = pytest.mark.django_db

EXAMPLES = [
    *[f"compatibility-tests/airflow/line_{n}.json" for n in ("01", "02", "03", "08", "10", "11")],
    *[f"compatibility-tests/CLL/{n}.json" for n in (1, 3, 5, 7, 8, 9)],
    "marquez/open_lineage/event_full.json",
    "marquez/open_lineage/event_dataset_event.json",
    "marquez/open_lineage/event_job_event.json",
    "marquez/open_lineage/event_simple.json",
    "marquez/open_lineage/event_unicode.json",
]

COLUMN_NODE_DATA = {
    "type": "object",
    "required": ["namespace", "dataset", "field", "inputFields"],
    "properties": {
        "namespace": {"type": "string"},
        "dataset": {"type": "string"},
        "datasetVersion": {"type": ["string", "null"], "format": "uuid"},
        "field": {"type": "string"},
        "fieldType": {"type": ["string", "null"]},
        "transformationDescription": {"type": ["string", "null"]},
        "transformationType": {"type": ["string", "null"]},
        "inputFields": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["namespace", "dataset", "field"],
                "properties": {
                    "namespace": {"type": "string"},
                    "dataset": {"type": "string"},
                    "datasetVersion": {"type": ["string", "null"], "format": "uuid"},
                    "field": {"type": "string"},
                    "transformationDescription": {"type": ["string", "null"]},
                    "transformationType": {"type": ["string", "null"]},
                },
            },
        },
    },
}


def _convert(node: Any, *, is_property_map: bool = False) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: drop non-validating keywords and null ``type``s; let
    properties be null (quirk 1)."""
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    if is_property_map:
        return {name: {"anyOf": [_convert(schema), {"type": "null"}]} for name, schema in node.items()}
    out = {}
    for key, value in node.items():
        if key in {"example", "discriminator", "deprecated"}:
            continue
        if key == "type" and value is None:
            out["type"] = "string"  # quirk 2
            continue
        out[key] = _convert(value, is_property_map=key == "properties")
    return out


@cache
def _spec() -> dict[str, Any]:
    path = require_shared(SPECS / "marquez" / "openapi.yml")
    return yaml.safe_load(path.read_text())


def _components(*, column_lineage: bool = False) -> dict[str, Any]:
    schemas = copy.deepcopy(_spec()["components"]["schemas"])
    schemas["DatasetVersion"]["properties"]["tags"] = {"type": "array", "items": {"type": "string"}}  # quirk 3
    for name in ("InputDatasetVersion", "OutputDatasetVersion"):  # quirk 4
        schemas[name]["properties"]["facets"] = {
            "type": "object",
            "additionalProperties": {"$ref": "#/components/schemas/CustomFacet"},
        }
    schemas["FacetsResult"]["properties"]["facets"] = {"$ref": "#/components/schemas/RunFacets"}  # quirk 5
    schemas["GraphNode"]["properties"]["data"] = {"type": "object"}  # quirk 6: checked by hand
    schemas["Run"]["allOf"] = schemas["Run"].pop("anyOf")  # quirk 8
    if column_lineage:  # quirk 7
        schemas["NodeType"]["enum"] = [*schemas["NodeType"]["enum"], "DATASET_FIELD"]
    return {"schemas": _convert(schemas)}


@cache
def _validator(name: str, column_lineage: bool = False) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": _components(column_lineage=column_lineage)}
    if name == "ColumnLineageNodeData":
        schema = COLUMN_NODE_DATA
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def validate(name: str, body: Any, *, column_lineage: bool = False) -> None:
    errors = sorted(_validator(name, column_lineage).iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, f"{name}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
    )
    if name == "LineageGraph":  # quirk 6 and 7: the discriminator, by hand
        for node in body["graph"]:
            kind = node["type"]
            data_schema = {"DATASET": "Dataset", "JOB": "Job", "DATASET_FIELD": "ColumnLineageNodeData"}[kind]
            validate(data_schema, node["data"])


def get(api: APIClient, path: str, **params: Any) -> Any:
    response = api.get(path, params)
    assert response.status_code == 200, (path, response.content)
    return response.json()


def q(text: str) -> str:
    return quote(text, safe="")


@pytest.fixture
def examples(api: APIClient, post_event: Any) -> None:
    for path in EXAMPLES:
        response = post_event(load_example(path))
        assert response.status_code == 201, (path, response.content)


def test_the_spec_quirks_are_still_there():
    """If Marquez fixes its spec, the matching workaround above should go."""
    schemas = _spec()["components"]["schemas"]
    assert schemas["SearchResult"]["properties"]["name"]["type"] is None
    assert schemas["DatasetVersion"]["properties"]["tags"]["type"] == "string"
    assert schemas["InputDatasetVersion"]["properties"]["facets"]["additionalProperties"] == {"type": "string"}
    assert schemas["FacetsResult"]["properties"]["facets"] == {"$ref": "#/components/schemas/CustomFacet"}
    assert "oneOf" in schemas["GraphNode"]["properties"]["data"]
    assert schemas["NodeType"]["enum"] == ["JOB", "DATASET"]
    assert "anyOf" in schemas["Run"]
    # Quirk 6 really bites: an ordinary dataset node's data matches both branches of oneOf.
    raw = _convert(copy.deepcopy(_spec()["components"]["schemas"]))
    one_of = {"oneOf": [{"$ref": "#/components/schemas/Dataset"}, {"$ref": "#/components/schemas/Job"}]}
    checker = jsonschema.Draft202012Validator({**one_of, "components": {"schemas": raw}})
    assert not checker.is_valid({"name": "x", "namespace": "y"})


def test_namespaces_datasets_versions_and_jobs_validate(api, examples):
    namespaces = get(api, "/api/v1/namespaces")
    validate("NamespaceList", namespaces)
    assert len(namespaces["namespaces"]) >= 8
    seen = {"Dataset": 0, "DatasetVersion": 0, "Job": 0, "Run": 0}
    for ns in namespaces["namespaces"]:
        name = ns["name"]
        validate("Namespace", get(api, f"/api/v1/namespaces/{q(name)}"))
        datasets = get(api, f"/api/v1/namespaces/{q(name)}/datasets")
        validate("DatasetList", datasets)
        for dataset in datasets["datasets"]:
            base = f"/api/v1/namespaces/{q(name)}/datasets/{q(dataset['name'])}"
            detail = get(api, base)
            validate("Dataset", detail)
            assert detail == dataset
            versions = get(api, f"{base}/versions")
            validate("DatasetVersionList", versions)
            for version in versions["versions"]:
                validate("DatasetVersion", get(api, f"{base}/versions/{version['version']}"))
                seen["DatasetVersion"] += 1
            seen["Dataset"] += 1
        jobs = get(api, f"/api/v1/namespaces/{q(name)}/jobs")
        validate("JobList", jobs)
        for job in jobs["jobs"]:
            base = f"/api/v1/namespaces/{q(name)}/jobs/{q(job['name'])}"
            validate("Job", get(api, base))
            runs = get(api, f"{base}/runs")
            validate("RunList", runs)
            for run in runs["runs"]:
                validate("Run", get(api, f"/api/v1/jobs/runs/{q(run['id'])}"))
                validate("FacetsResult", get(api, f"/api/v1/jobs/runs/{q(run['id'])}/facets", type="run"))
                validate("FacetsResult", get(api, f"/api/v1/jobs/runs/{q(run['id'])}/facets", type="job"))
                seen["Run"] += 1
            seen["Job"] += 1
    assert all(count > 0 for count in seen.values()), seen


def test_lineage_graphs_validate(api, examples):
    node_ids = []
    for ns in get(api, "/api/v1/namespaces")["namespaces"]:
        for dataset in get(api, f"/api/v1/namespaces/{q(ns['name'])}/datasets")["datasets"]:
            node_ids.append(f"dataset:{ns['name']}:{dataset['name']}")
        for job in get(api, f"/api/v1/namespaces/{q(ns['name'])}/jobs")["jobs"]:
            node_ids.append(f"job:{ns['name']}:{job['name']}")
    assert len(node_ids) > 20
    for node_id in node_ids:
        graph = get(api, "/api/v1/lineage", nodeId=node_id)
        validate("LineageGraph", graph)
        assert graph["graph"][0]["id"] == node_id
    as_of = get(api, "/api/v1/lineage", nodeId="job:airflow:BQ.upload", asOf="2024-11-26T13:05:27Z")
    validate("LineageGraph", as_of)


def test_column_lineage_graphs_validate(api, examples):
    for node_id in (
        "datasetField:file:/tmp/cll_test/tbl1:agg",
        "dataset:file:/tmp/cll_test/tbl1",
        "datasetField:bigquery:mock-project.test.upload:a",
    ):
        graph = get(api, "/api/v1/column-lineage", nodeId=node_id, withDownstream="true")
        assert graph["graph"], node_id
        validate("LineageGraph", graph, column_lineage=True)


def test_search_and_events_validate(api, examples):
    for params in ({"q": "mock"}, {"q": "tbl", "filter": "DATASET"}, {"q": "BQ", "filter": "job", "sort": "UPDATE_AT"}):
        body = get(api, "/api/v1/search", **params)
        validate("SearchResultList", body)
        assert body["results"], params
    events = get(api, "/api/v1/events/lineage", limit=5)
    validate("LineageEventList", events)
    assert len(events["events"]) == 5
    assert events["totalCount"] == len(EXAMPLES)
    # The events come back verbatim.
    posted = {json.dumps(load_example(p), sort_keys=True) for p in EXAMPLES}
    everything = get(api, "/api/v1/events/lineage", limit=100)["events"]
    assert {json.dumps(e, sort_keys=True) for e in everything} <= posted


def test_the_validation_has_teeth():
    """The converted schemas still reject wrong shapes (so the passes above mean something)."""
    bad = [
        ("Dataset", {"fields": "not a list"}),
        ("Dataset", {"fields": [{"name": "a"}]}),  # a field needs a type
        ("Dataset", {"createdAt": "yesterday"}),
        ("DatasetVersion", {"id": {"namespace": "n", "name": "d"}, "type": "DB_TABLE"}),  # required keys
        ("LineageGraph", {"graph": [{"id": "x", "type": "TABLE", "data": {}, "inEdges": [], "outEdges": []}]}),
        ("SearchResultList", {"totalCount": 1, "results": [{"type": "MODEL"}]}),
        ("NamespaceList", {"namespaces": [{"name": 3}]}),
        ("Job", {"inputs": [{"namespace": 1}]}),
        ("Run", {"id": "not-a-uuid", "state": "RUNNING"}),
        ("Run", {"state": "SLEEPING"}),
        ("Run", {"inputDatasetVersions": [{"facets": {}}]}),
        ("FacetsResult", {"runId": "x", "facets": {"parent": {"run": {}}}}),  # a facet needs _producer
    ]
    for name, body in bad:
        assert not _validator(name).is_valid(body), (name, body)
