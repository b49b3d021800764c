"""Promotions: policies, quorum, separation of duties, expiry with time travel, staleness,
break-glass, and the gate the SDK asks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from governance.audit.models import AuditEntry
from governance.promotions import clock, services
from governance.promotions.models import Decision, PromotionPolicy, PromotionRequest
from governance.registry.models import ModelVersion
from tests.governance_support import (
    T0,
    client_for,
    dataset,
    grant,
    post,
    run_event,
    train,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(make_user):
    """A data scientist who trains in 'fraud', three approvers, an admin client."""
    sam = make_user("sam", roles=("data_scientist",), email="sam@example.com")
    grant(sam, "fraud", "write")
    grant(sam, "warehouse", "view")  # where the training data lives (a data source: never claimed)
    approvers = [make_user(f"appr{i}", roles=("approver",), is_staff=True) for i in range(3)]
    return {"sam": sam, "approvers": approvers}


def policy(api, **values):
    body = {"environment": "production", "approvals_required": 2, "eligible_roles": ["approver"], **values}
    response = post(api, "/api/v1/policies/", body)
    assert response.status_code == 201, response.content
    return response.json()


def request_promotion(client, environment="production", **extra):
    body = {"model": "fraud-detector", "version": "v1", "environment": environment, "namespace": "fraud", **extra}
    return post(client, "/api/v1/promotions/", body)


def test_quorum_of_two_with_an_audit_entry_per_step(api, team):
    policy(api)
    sam = client_for(team["sam"])
    train(sam)
    created = request_promotion(sam, reason="Q3 retrain")
    assert created.status_code == 201, created.content
    promotion = created.json()
    assert promotion["state"] == "pending" and promotion["approvals_required"] == 2
    assert len(promotion["evidence_digest"]) == 64 and promotion["evidence"]["inputs"]
    first, second, third = (client_for(u) for u in team["approvers"])
    url = f"/api/v1/promotions/{promotion['id']}"
    one = post(first, url + "/approve", {"reason": "looks fine"}).json()
    assert one["state"] == "pending" and one["approvals"] == 1
    assert post(first, url + "/approve", {}).status_code == 409  # no double counting
    two = post(second, url + "/approve", {"evidence_digest": promotion["evidence_digest"]}).json()
    assert two["state"] == "approved" and two["live"] and two["approvals"] == 2
    assert post(third, url + "/approve", {}).status_code == 409  # no longer pending
    assert Decision.objects.filter(request_id=promotion["id"]).count() == 2
    actions = list(
        AuditEntry.objects.filter(object_type="promotions.promotionrequest").values_list("action", flat=True)
    )
    assert actions == ["promotion.request", "promotion.approve", "promotion.approve"]
    # what custody gate asks
    gate = sam.get("/api/v1/promotions/?model=fraud-detector&version=v1&environment=production").json()
    assert gate["results"][0]["state"] == "approved" and gate["results"][0]["live"] is True
    detail = sam.get(url).json()
    assert [d["user"] for d in detail["decisions"]] == ["appr0", "appr1"]


def test_separation_of_duties(api, make_user, team):
    policy(api, approvals_required=1, eligible_roles=["approver", "data_scientist"])
    # the requester is an approver too; the run was submitted by sam; the commit author is carol
    carol = make_user("carol", roles=("approver",), first_name="Carol", last_name="Coder")
    requester = make_user("rita", roles=("approver", "data_scientist"))
    grant(requester, "fraud", "write")
    train(client_for(team["sam"]), author="Carol Coder")
    promotion = request_promotion(client_for(requester)).json()
    url = f"/api/v1/promotions/{promotion['id']}/approve"
    refusals = {
        "rita": "you requested this promotion",
        "sam": "submitted the lineage of the run",
        "carol": "authored the code commit",
    }
    for user, reason in [(requester, refusals["rita"]), (team["sam"], refusals["sam"]), (carol, refusals["carol"])]:
        response = post(client_for(user), url, {})
        assert response.status_code == 403, user
        assert reason in response.json()["detail"]
    outsider = make_user("dave", roles=("data_scientist",))
    grant(outsider, "fraud", "view")
    ok = post(client_for(outsider), url, {})  # a data scientist is eligible under this policy
    assert ok.status_code == 200 and ok.json()["state"] == "approved"


def test_eligible_roles_and_read_only_roles(api, make_user, team):
    policy(api, approvals_required=1)
    train(client_for(team["sam"]))
    promotion = request_promotion(client_for(team["sam"])).json()
    url = f"/api/v1/promotions/{promotion['id']}"
    officer = client_for(make_user("olga", roles=("compliance_officer",), is_staff=True))
    assert officer.get(url).status_code == 200
    for action, body in (("approve", {}), ("reject", {"reason": "no"}), ("comment", {"text": "hm"})):
        assert post(officer, f"{url}/{action}", body).status_code == 403, action
    assert post(client_for(team["approvers"][0]), f"{url}/reject", {}).status_code == 400  # reason required
    assert post(client_for(team["approvers"][0]), f"{url}/comment", {"text": "why?"}).status_code == 201
    rejected = post(client_for(team["approvers"][0]), f"{url}/reject", {"reason": "metrics too low"})
    assert rejected.json()["state"] == "rejected" and "metrics too low" in rejected.json()["state_reason"]
    assert post(client_for(team["approvers"][1]), f"{url}/approve", {}).status_code == 409


def test_required_checks_block_approval(api, team):
    policy(api, approvals_required=1, required_checks=["artifact_digest", "metric:auc>=0.95", "clean_commit"])
    train(client_for(team["sam"]), metrics={"auc": 0.9})
    promotion = request_promotion(client_for(team["sam"])).json()
    assert {c["name"]: c["passed"] for c in promotion["checks"]} == {
        "artifact_digest": True,
        "metric:auc>=0.95": False,
        "clean_commit": True,
    }
    refused = post(client_for(team["approvers"][0]), f"/api/v1/promotions/{promotion['id']}/approve", {})
    assert refused.status_code == 409 and "auc" in refused.json()["detail"]
    assert post(api, "/api/v1/policies/", {"environment": "x", "required_checks": ["bogus"]}).status_code == 400


def test_expiry_with_time_travel(api, team):
    policy(api, approvals_required=1, approval_ttl_hours=24, request_ttl_hours=48)
    sam = client_for(team["sam"])
    train(sam)
    with clock.frozen(T0):
        stuck = request_promotion(sam).json()
    assert stuck["expires_at"] == "2026-03-03T12:00:00Z"
    with clock.frozen(T0 + timedelta(hours=49)):
        # reads see the passed deadline before the sweep records it
        assert sam.get(f"/api/v1/promotions/{stuck['id']}").json()["state"] == "expired"
        late = post(client_for(team["approvers"][0]), f"/api/v1/promotions/{stuck['id']}/approve", {})
        assert late.status_code == 409 and "expired" in late.json()["detail"]
        assert PromotionRequest.objects.get(pk=stuck["id"]).state == "expired"  # recorded on the way
        # a new request, approved, lives 24 hours
        fresh = request_promotion(sam).json()
        approved = post(client_for(team["approvers"][0]), f"/api/v1/promotions/{fresh['id']}/approve", {}).json()
        assert approved["state"] == "approved"
    with clock.frozen(T0 + timedelta(hours=49 + 23)):
        assert services.live_approval(ModelVersion.objects.get(), "production") is not None
        assert services.expire_due() == 0
    with clock.frozen(T0 + timedelta(hours=49 + 25)):
        listed = sam.get("/api/v1/promotions/?model=fraud-detector&environment=production&live=true").json()
        assert listed["count"] == 0
        assert sam.get(f"/api/v1/promotions/{fresh['id']}").json()["live"] is False
        assert services.expire_due() == 1
        assert PromotionRequest.objects.get(pk=fresh["id"]).state == "expired"
    assert AuditEntry.objects.filter(action="promotion.expire").count() == 2


def test_a_late_input_makes_the_request_and_its_approvals_stale(api, team):
    policy(api)
    sam = client_for(team["sam"])
    run_id = train(sam)
    promotion = request_promotion(sam).json()
    url = f"/api/v1/promotions/{promotion['id']}"
    post(client_for(team["approvers"][0]), url + "/approve", {})
    # an event arrives late: the training run also read a second dataset
    late = run_event(
        "fraud",
        "train-fraud-detector",
        run_id,
        event_type="RUNNING",
        minutes=2,
        inputs=[dataset("warehouse", "chargebacks", version="7", fields=["id"])],
    )
    assert post(sam, "/api/v1/lineage", late).status_code == 201
    stale = sam.get(url).json()
    assert stale["state"] == "stale" and stale["evidence_digest"] != promotion["evidence_digest"]
    assert stale["evidence"]["previous_digest"] == promotion["evidence_digest"]
    assert {i["dataset"]["name"] for i in stale["evidence"]["inputs"]} == {"transactions", "chargebacks"}
    assert all(d["stale"] for d in stale["decisions"])
    assert post(client_for(team["approvers"][1]), url + "/approve", {}).status_code == 409
    entry = AuditEntry.objects.get(action="promotion.stale")
    assert entry.extra["previous_digest"] == promotion["evidence_digest"]
    # a new request pins the new closure and needs its approvals again
    again = request_promotion(sam).json()
    assert again["state"] == "pending" and again["evidence_digest"] == stale["evidence_digest"]


def test_a_new_version_of_an_upstream_input_makes_a_request_stale(api, team):
    """The training run read a dataset without naming the version: it was inferred, and a late
    version that predates the run changes what it resolves to."""
    policy(api)
    sam = client_for(team["sam"])
    run_id = train(sam, inputs=[dataset("warehouse", "events")])
    promotion = request_promotion(sam).json()
    assert promotion["evidence"]["inputs"][0]["resolution"] == "unknown"
    writer = run_event(
        "warehouse",
        "etl",
        "11111111-1111-1111-1111-111111111111",
        minutes=-30,
        outputs=[dataset("warehouse", "events", version="e1", fields=["x"])],
    )
    assert post(api, "/api/v1/lineage", writer).status_code == 201
    assert sam.get(f"/api/v1/promotions/{promotion['id']}").json()["state"] == "stale"
    assert run_id


def test_unrelated_lineage_changes_nothing(api, team):
    policy(api)
    sam = client_for(team["sam"])
    train(sam)
    promotion = request_promotion(sam).json()
    other = run_event(
        "fraud", "other-job", "22222222-2222-2222-2222-222222222222", inputs=[dataset("warehouse", "transactions")]
    )
    assert post(sam, "/api/v1/lineage", other).status_code == 201
    assert sam.get(f"/api/v1/promotions/{promotion['id']}").json()["state"] == "pending"


def test_withdraw_and_duplicates(api, make_user, team):
    policy(api, approvals_required=1)
    sam = client_for(team["sam"])
    train(sam)
    promotion = request_promotion(sam).json()
    duplicate = request_promotion(sam)
    assert duplicate.status_code == 409 and f"#{promotion['id']}" in duplicate.json()["detail"]
    other = make_user("olaf", roles=("data_scientist",))
    grant(other, "fraud", "write")
    assert post(client_for(other), f"/api/v1/promotions/{promotion['id']}/withdraw", {}).status_code == 403
    done = post(sam, f"/api/v1/promotions/{promotion['id']}/withdraw", {"reason": "wrong data"}).json()
    assert done["state"] == "withdrawn"
    assert post(sam, f"/api/v1/promotions/{promotion['id']}/withdraw", {}).status_code == 409
    assert request_promotion(sam).status_code == 201


def test_break_glass_is_for_admins_with_a_reason_and_is_flagged(api, team):
    policy(api)
    sam = client_for(team["sam"])
    train(sam)
    assert request_promotion(sam, break_glass=True, reason="outage").status_code == 403
    assert request_promotion(api, break_glass=True).status_code == 400  # reason required
    pending = request_promotion(sam).json()
    forced = request_promotion(api, break_glass=True, reason="fraud spike, no approvers awake")
    assert forced.status_code == 201
    body = forced.json()
    assert body["id"] == pending["id"] and body["state"] == "approved"
    assert body["break_glass"] and body["flagged_for_review"] and body["approvals"] == 0
    assert AuditEntry.objects.filter(action="promotion.break_glass").count() == 1


def test_policy_versions_and_scopes(api, team):
    first = policy(api, approvals_required=3)
    second = policy(api, approvals_required=1)
    assert second["version"] == first["version"] + 1
    assert PromotionPolicy.objects.get(pk=first["id"]).active is False
    scoped = policy(api, namespace="fraud", approvals_required=0)
    assert scoped["namespace"] == "fraud" and scoped["version"] == 1
    sam = client_for(team["sam"])
    train(sam)
    created = request_promotion(sam).json()
    assert created["state"] == "approved" and created["policy"]["id"] == scoped["id"]  # N = 0
    assert post(sam, "/api/v1/policies/", {"environment": "production"}).status_code == 403
    assert post(api, "/api/v1/policies/", {"environment": "production", "eligible_roles": ["boss"]}).status_code == 400
    assert post(api, "/api/v1/policies/", {"environment": "production", "approvals_required": "2"}).status_code == 400
    listed = sam.get("/api/v1/policies/?environment=production&active=true").json()
    assert {p["id"] for p in listed["results"]} == {second["id"], scoped["id"]}


def test_no_policy_no_promotion(api, team):
    sam = client_for(team["sam"])
    train(sam)
    response = request_promotion(sam, environment="qa")
    assert response.status_code == 400 and "No promotion policy" in response.json()["detail"]
    for bad in (
        {"model": "fraud-detector"},
        {"model": "nope", "version": "1", "environment": "production"},
        {"model": "fraud-detector", "version": "v1", "environment": "prod uction"},
    ):
        assert post(sam, "/api/v1/promotions/", bad).status_code in (400, 404), bad
    assert sam.get("/api/v1/promotions/?state=bogus").status_code == 400
    assert sam.get("/api/v1/promotions/99999999999999999999999").status_code == 404
    assert post(sam, "/api/v1/promotions/123/approve", {}).status_code == 404
