"""Whatever JSON a client sends to a governance endpoint, the answer is a clear 4xx (or a success),
never a 500."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.promotions.models import Deployment, PromotionRequest
from tests.governance_support import client_for, grant, post, train

pytestmark = pytest.mark.django_db

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["fraud-detector", "v1", "production", "staging", "fraud", "2026-01-01T00:00:00Z", "", "1"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
KEYS = st.sampled_from(
    [
        "model",
        "version",
        "environment",
        "namespace",
        "reason",
        "break_glass",
        "target",
        "deployed_at",
        "rollback_of",
        "evidence_digest",
        "text",
        "name",
        "description",
        "artifact_digest",
        "metrics",
        "params",
        "run_id",
        "approvals_required",
        "eligible_roles",
        "required_checks",
        "approval_ttl_hours",
        "separation_of_duties",
        "require_approval_to_deploy",
        "artifact_size",
    ]
)
BODIES = st.one_of(st.dictionaries(KEYS, VALUES, max_size=8), VALUES)


@pytest.fixture
def world(api, make_user):
    sam = make_user("sam", roles=("data_scientist",))
    grant(sam, "fraud", "write")
    client = client_for(sam)
    train(client)
    created = post(
        client, "/api/v1/promotions/", {"model": "fraud-detector", "version": "v1", "environment": "staging"}
    )
    assert created.status_code == 201
    deployed = post(
        client, "/api/v1/deployments/", {"model": "fraud-detector", "version": "v1", "environment": "staging"}
    )
    assert deployed.status_code == 201
    return {"admin": api, "sam": client, "request": created.json()["id"], "deployment": deployed.json()["id"]}


def paths(world):
    r, d = world["request"], world["deployment"]
    return [
        "/api/v1/models/",
        "/api/v1/models/fraud-detector/versions/",
        "/api/v1/promotions/",
        f"/api/v1/promotions/{r}/approve",
        f"/api/v1/promotions/{r}/reject",
        f"/api/v1/promotions/{r}/withdraw",
        f"/api/v1/promotions/{r}/comment",
        "/api/v1/deployments/",
        f"/api/v1/deployments/{d}/rollback",
        "/api/v1/policies/",
    ]


def test_random_bodies_never_cause_a_server_error(world):
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=BODIES, which=st.integers(min_value=0, max_value=9), who=st.sampled_from(["admin", "sam"]))
    def check(body, which, who):
        path = paths(world)[which]
        response = world[who].post(path, data=json.dumps(body), content_type="application/json")
        assert response.status_code < 500, (path, body, response.content[:300])
        if response.status_code >= 400:
            assert set(response.json()) >= {"error", "detail"}

    check()
    assert PromotionRequest.objects.exists() and Deployment.objects.exists()


@pytest.mark.parametrize(
    "query",
    ["limit=-1", "limit=x", "offset=1e9", "asOf=yesterday", "live=maybe", "state=nope", "current=2", "active=x"],
)
def test_bad_query_parameters_are_400(world, query):
    for path in ("/api/v1/promotions/", "/api/v1/deployments/", "/api/v1/policies/", "/api/v1/models/"):
        response = world["sam"].get(f"{path}?{query}")
        assert response.status_code in (200, 400), (path, query, response.content[:200])
