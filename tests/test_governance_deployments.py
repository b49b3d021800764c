"""Deployments: the approval gate (409), break-glass, rollback, and what ran where as of T."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance.audit.models import AuditEntry
from governance.promotions import clock, services
from governance.promotions.models import Deployment
from tests.governance_support import T0, client_for, grant, post, train

pytestmark = pytest.mark.django_db


def iso(value):
    return value.isoformat().replace("+00:00", "Z")


@pytest.fixture
def world(api, make_user):
    """Versions v1 and v2 of fraud-detector, trained by sam; one approver."""
    sam = make_user("sam", roles=("data_scientist",))
    grant(sam, "fraud", "write")
    approver = make_user("ann", roles=("approver",), is_staff=True)
    client = client_for(sam)
    train(client, version="v1")
    train(client, version="v2")
    return {"sam": client, "ann": client_for(approver), "admin": api}


def promote(world, version, at):
    with clock.frozen(at):
        created = post(
            world["sam"],
            "/api/v1/promotions/",
            {"model": "fraud-detector", "version": version, "environment": "production", "namespace": "fraud"},
        )
        assert created.status_code == 201, created.content
        approved = post(world["ann"], f"/api/v1/promotions/{created.json()['id']}/approve", {})
        assert approved.json()["state"] == "approved", approved.content
        return approved.json()


def deploy(client, version, at, **extra):
    body = {
        "model": "fraud-detector",
        "version": version,
        "environment": "production",
        "namespace": "fraud",
        "target": "api-eu",
        **extra,
    }
    with clock.frozen(at):
        return post(client, "/api/v1/deployments/", body)


def test_production_deployment_needs_a_live_approval(world):
    refused = deploy(world["sam"], "v1", T0)
    assert refused.status_code == 409
    assert refused.json()["error"] == "approval_required"
    assert "no promotion request was made" in refused.json()["detail"]
    with clock.frozen(T0):
        post(
            world["sam"],
            "/api/v1/promotions/",
            {"model": "fraud-detector", "version": "v1", "environment": "production"},
        )
    pending = deploy(world["sam"], "v1", T0)
    assert pending.status_code == 409 and "pending (0 of 1 approvals)" in pending.json()["detail"]
    # staging's default policy does not gate deployments
    staging = post(
        world["sam"], "/api/v1/deployments/", {"model": "fraud-detector", "version": "v1", "environment": "staging"}
    )
    assert staging.status_code == 201 and staging.json()["promotion_id"] is None
    assert not Deployment.objects.filter(environment="production").exists()


def test_deploy_rollback_and_the_as_of_query(world):
    p1 = promote(world, "v1", T0)
    d1 = deploy(world["sam"], "v1", T0 + timedelta(hours=1), build="123")
    assert d1.status_code == 201, d1.content
    d1 = d1.json()
    assert d1["promotion_id"] == p1["id"] and d1["replaces"] is None and d1["metadata"] == {"build": "123"}
    promote(world, "v2", T0 + timedelta(hours=2))
    d2 = deploy(world["sam"], "v2", T0 + timedelta(hours=3)).json()
    assert d2["replaces"] == d1["id"]
    # a second target, never rolled back
    other = deploy(world["sam"], "v1", T0 + timedelta(hours=3, minutes=30), target="batch").json()
    with clock.frozen(T0 + timedelta(hours=4)):
        assert post(world["sam"], f"/api/v1/deployments/{d1['id']}/rollback", {}).status_code == 409  # not current
        rolled = post(world["sam"], f"/api/v1/deployments/{d2['id']}/rollback", {"reason": "latency regression"})
    assert rolled.status_code == 201, rolled.content
    rb = rolled.json()
    assert rb["version"] == "v1" and rb["rollback_of"] == d2["id"] and rb["replaces"] == d2["id"]
    assert rb["promotion_id"] == p1["id"] and not rb["flagged_for_review"]  # v1's approval is still live

    def as_of(at):
        response = world["sam"].get(f"/api/v1/deployments/?environment=production&asOf={iso(at)}")
        assert response.status_code == 200, response.content
        return {(d["target"], d["version"], d["id"]) for d in response.json()["results"]}

    assert as_of(T0) == set()
    assert as_of(T0 + timedelta(hours=1)) == {("api-eu", "v1", d1["id"])}
    assert as_of(T0 + timedelta(hours=3, minutes=10)) == {("api-eu", "v2", d2["id"])}
    assert as_of(T0 + timedelta(hours=3, minutes=45)) == {("api-eu", "v2", d2["id"]), ("batch", "v1", other["id"])}
    assert as_of(T0 + timedelta(hours=5)) == {("api-eu", "v1", rb["id"]), ("batch", "v1", other["id"])}
    # one SQL statement answers it
    with CaptureQueriesContext(connection) as queries:
        rows = list(services.deployments_as_of(T0 + timedelta(hours=5)))
    assert len(queries.captured_queries) == 1 and len(rows) == 2
    history = world["sam"].get("/api/v1/deployments/?environment=production&target=api-eu").json()
    assert [d["id"] for d in history["results"]] == [rb["id"], d2["id"], d1["id"]]
    actions = set(AuditEntry.objects.filter(object_type="promotions.deployment").values_list("action", flat=True))
    assert actions == {"deployment.record", "deployment.rollback"}
    # deployments are lineage nodes, downstream of their model version
    graph = world["admin"].get(f"/api/v1/lineage?nodeId=deployment:{d2['id']}&depth=3").json()
    ids = {n["id"] for n in graph["graph"]}
    assert f"deployment:{d2['id']}" in ids and "model:fraud:fraud-detector:v2" in ids
    model_graph = world["admin"].get("/api/v1/lineage?nodeId=model:fraud:fraud-detector:v1&depth=2").json()
    deployed = [n for n in model_graph["graph"] if n["type"] == "DEPLOYMENT"]
    assert {n["data"]["id"] for n in deployed} == {d1["id"], other["id"], rb["id"]}


def test_rollback_without_a_live_approval_is_flagged(world):
    promote(world, "v1", T0)
    d1 = deploy(world["sam"], "v1", T0 + timedelta(hours=1)).json()
    promote(world, "v2", T0 + timedelta(hours=2))
    d2 = deploy(world["sam"], "v2", T0 + timedelta(hours=3)).json()
    with clock.frozen(T0 + timedelta(days=40)):  # v1's approval (30 days) expired
        rolled = post(world["sam"], "/api/v1/deployments/", {"rollback_of": d2["id"], "reason": "bad v2"})
    assert rolled.status_code == 201
    assert rolled.json()["flagged_for_review"] and rolled.json()["promotion_id"] is None
    assert rolled.json()["replaces"] == d2["id"] and d1["id"] != rolled.json()["id"]


def test_break_glass_deployment(world, make_user):
    refused = deploy(world["sam"], "v1", T0, break_glass=True, reason="outage")
    assert refused.status_code == 403
    assert deploy(world["admin"], "v1", T0, break_glass=True).status_code == 400  # reason required
    forced = deploy(world["admin"], "v1", T0, break_glass=True, reason="outage, approvers unreachable")
    assert forced.status_code == 201
    assert forced.json()["break_glass"] and forced.json()["flagged_for_review"]
    assert AuditEntry.objects.filter(action="deployment.break_glass").count() == 1


def test_bad_deployment_input(world):
    sam = world["sam"]
    cases = [
        ({"model": "fraud-detector", "version": "v1"}, 400),
        ({"model": "fraud-detector", "version": "v9", "environment": "production"}, 404),
        ({"model": "fraud-detector", "version": "v1", "environment": "staging", "deployed_at": "yesterday"}, 400),
        ({"model": "fraud-detector", "version": "v1", "environment": "staging", "deployed_at": "2999-01-01"}, 400),
        ({"model": "fraud-detector", "version": "v1", "environment": "staging", "break_glass": "yes"}, 400),
        ({"model": "fraud-detector", "version": "v1", "environment": "staging", "target": 5}, 400),
        ({"rollback_of": 123456}, 404),
        ({"rollback_of": "abc"}, 404),
    ]
    for body, status in cases:
        response = post(sam, "/api/v1/deployments/", body)
        assert response.status_code == status, (body, response.content)
    assert sam.get("/api/v1/deployments/?asOf=not-a-date").status_code == 400
    assert sam.get("/api/v1/deployments/?limit=x").status_code == 400
    assert sam.get("/api/v1/deployments/424242").status_code == 404
    assert post(sam, "/api/v1/deployments/1/rollback", {}).status_code == 404
