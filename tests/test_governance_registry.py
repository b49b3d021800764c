"""The model registry: versions from custody_model facets and from the REST API, lineage nodes."""

from __future__ import annotations

import pytest

from governance.audit.models import AuditEntry
from governance.registry.models import ModelVersion, RegisteredModel
from lineage.models import Run
from tests.governance_support import (
    client_for,
    dataset,
    digest,
    grant,
    model_output,
    new_run_id,
    post,
    run_event,
    train,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def scientist(make_user):
    user = make_user("sam", roles=("data_scientist",))
    grant(user, "fraud", "write")
    return user


def test_custody_model_facet_registers_the_version_with_its_producing_run(api, scientist):
    client = client_for(scientist)
    run_id = train(client, metrics={"auc": 0.8})
    version = ModelVersion.objects.select_related("model__namespace", "run").get()
    assert (version.model.namespace.name, version.model.name, version.version) == ("fraud", "fraud-detector", "v1")
    assert version.run == Run.objects.get(run_id=run_id)
    assert version.artifact_digest == digest("weights") and version.environment_digest == digest("env-1")
    assert version.framework == "scikit-learn" and version.params == {"max_depth": 6}
    assert version.source == "lineage" and version.created_by == scientist
    assert version.dataset_version is not None and version.dataset_version.version == "v1"
    assert AuditEntry.objects.filter(action="model_version.register", object_id=str(version.pk)).count() == 1
    assert AuditEntry.objects.filter(action="model.register").count() == 1

    body = client.get("/api/v1/models/fraud-detector/versions/v1").json()
    assert body["run"]["run_id"] == run_id and body["artifact_digest"] == digest("weights")
    assert body["lineage_node_id"] == "model:fraud:fraud-detector:v1"
    listing = client.get("/api/v1/models/").json()
    assert listing["count"] == 1 and listing["results"][0]["latest_version"] == "v1"


def test_the_latest_facet_by_event_time_wins(api, scientist):
    client = client_for(scientist)
    run_id = new_run_id()
    late = run_event(
        "fraud",
        "train",
        run_id,
        event_type="COMPLETE",
        minutes=10,
        outputs=[model_output("fraud", "m", "v1", metrics={"auc": 0.95})],
    )
    early = run_event(
        "fraud",
        "train",
        run_id,
        event_type="RUNNING",
        minutes=5,
        outputs=[model_output("fraud", "m", "v1", metrics={"auc": 0.5})],
    )
    assert post(client, "/api/v1/lineage", late).status_code == 201
    assert post(client, "/api/v1/lineage", early).status_code == 201  # arrives after, but is older
    assert ModelVersion.objects.get().metrics == {"auc": 0.95}


def test_a_version_label_of_another_run_is_not_overwritten(api, scientist):
    client = client_for(scientist)
    first = train(client)
    train(client, metrics={"auc": 0.1})  # another run claims the same label
    version = ModelVersion.objects.get()
    assert version.run.run_id == first and version.metrics == {"auc": 0.91}


def test_rest_registration_and_errors(api, make_user, scientist):
    client = client_for(scientist)
    assert post(client, "/api/v1/models/", {"namespace": "fraud", "name": "scorer"}).status_code == 201
    assert post(client, "/api/v1/models/", {"namespace": "fraud", "name": "scorer"}).status_code == 409
    assert post(client, "/api/v1/models/", {"namespace": "fraud"}).status_code == 400
    assert post(client, "/api/v1/models/", ["not", "an", "object"]).status_code == 400
    assert post(client, "/api/v1/models/", {"namespace": "elsewhere", "name": "x"}).status_code == 404
    assert client.post("/api/v1/models/", data="{bad json", content_type="application/json").status_code == 400
    version = {"version": "1.0", "artifact_digest": digest("a"), "metrics": {"auc": 0.9}}
    created = post(client, "/api/v1/models/scorer/versions/", version)
    assert created.status_code == 201, created.content
    assert created.json()["source"] == "api" and created.json()["run"] is None
    assert post(client, "/api/v1/models/scorer/versions/", version).status_code == 409
    bad = [
        {"version": ""},
        {"version": "a/b"},
        {"version": "2", "artifact_digest": "md5:00"},
        {"version": "2", "metrics": [1]},
        {"version": "2", "artifact_size": -1},
        {"version": "2", "run_id": "no-such-run"},
    ]
    for payload in bad:
        assert post(client, "/api/v1/models/scorer/versions/", payload).status_code in (400, 404), payload
    assert client.get("/api/v1/models/scorer/versions/1.0").status_code == 200
    assert client.get("/api/v1/models/scorer/versions/9.9").status_code == 404
    assert client.get("/api/v1/models/nope").status_code == 404


def test_names_colliding_across_namespaces_need_the_namespace(api, make_user):
    user = make_user("both", roles=("data_scientist",))
    grant(user, "team-a")
    grant(user, "team-b")
    client = client_for(user)
    for ns in ("team-a", "team-b"):
        assert post(client, "/api/v1/models/", {"namespace": ns, "name": "churn"}).status_code == 201
    ambiguous = client.get("/api/v1/models/churn")
    assert ambiguous.status_code == 400 and "team-a, team-b" in ambiguous.json()["detail"]
    assert client.get("/api/v1/models/churn?namespace=team-b").json()["namespace"] == "team-b"
    # someone who sees only one of them is not told about the other
    only_a = make_user("only-a", roles=("data_scientist",))
    grant(only_a, "team-a", "view")
    assert client_for(only_a).get("/api/v1/models/churn").json()["namespace"] == "team-a"
    assert client_for(only_a).get("/api/v1/models/churn?namespace=team-b").status_code == 404
    assert RegisteredModel.objects.count() == 2


def test_model_and_deployment_nodes_in_the_lineage_graph(api, scientist):
    client = client_for(scientist)
    run_id = train(client)
    graph = api.get(f"/api/v1/lineage?nodeId=run:{run_id}&depth=6").json()
    ids = {node["id"]: node for node in graph["graph"]}
    assert "model:fraud:fraud-detector:v1" in ids
    model_node = ids["model:fraud:fraud-detector:v1"]
    assert model_node["type"] == "MODEL_VERSION" and model_node["data"]["artifactDigest"] == digest("weights")
    assert {"origin": f"run:{run_id}", "destination": "model:fraud:fraud-detector:v1", "type": "PRODUCED"} in (
        model_node["inEdges"]
    )
    upstream = api.get("/api/v1/lineage?nodeId=model:fraud:fraud-detector:v1&depth=4").json()
    kinds = {node["type"] for node in upstream["graph"]}
    assert {"MODEL_VERSION", "RUN", "DATASET_VERSION"} <= kinds
    assert api.get("/api/v1/lineage?nodeId=model:fraud:fraud-detector:v9").status_code == 404
    assert api.get("/api/v1/lineage?nodeId=deployment:999").status_code == 404
    assert api.get("/api/v1/lineage?nodeId=deployment:abc").status_code == 404


def test_namespaces_with_colons_in_model_node_ids(api, make_user):
    client = api
    run_id = new_run_id()
    event = run_event("s3://bucket:9000", "train", run_id, outputs=[model_output("s3://bucket:9000", "a:b", "1")])
    assert post(client, "/api/v1/lineage", event).status_code == 201
    node = client.get("/api/v1/lineage?nodeId=model:s3://bucket:9000:a:b:1&depth=1")
    assert node.status_code == 200, node.content
    assert any(n["id"] == "model:s3://bucket:9000:a:b:1" for n in node.json()["graph"])


def test_invalid_facets_are_skipped_without_failing_ingestion(api):
    out = dataset("fraud", "models/x", version="1")
    out["facets"]["custody_model"] = {"name": "", "version": 3}
    assert post(api, "/api/v1/lineage", run_event("fraud", "train", new_run_id(), outputs=[out])).status_code == 201
    assert not ModelVersion.objects.exists()


def test_nul_characters_are_refused_not_500(api, scientist):
    client = client_for(scientist)
    assert post(client, "/api/v1/models/", {"namespace": "fraud", "name": "ok"}).status_code == 201
    for path in ("/api/v1/models/a%00b", "/api/v1/promotions/?model=a%00b", "/api/v1/models/ok/versions/v%001"):
        assert client.get(path).status_code in (400, 404), path
    bad = post(client, "/api/v1/models/ok/versions/", {"version": "1", "params": {"a": "x\u0000y"}})
    assert bad.status_code == 400 and "NUL" in bad.json()["detail"]
    bad = post(client, "/api/v1/promotions/", {"model": "ok", "version": "1", "environment": "p", "reason": "\u0000"})
    assert bad.status_code == 400
