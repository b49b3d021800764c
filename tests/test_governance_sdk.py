"""The SDK's governance calls against a live server: request_promotion, record_deployment (409 when
refused) and the `custody gate` check, with the SDK's own code (sdk/custody/governance.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.governance_support import client_for, grant, post, train

try:  # installed in development (make install-dev); else from the source tree
    from custody import errors as custody_errors
    from custody import governance as custody_governance
except ImportError:  # pragma: no cover - depends on the environment
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sdk"))
    from custody import errors as custody_errors
    from custody import governance as custody_governance

pytestmark = pytest.mark.django_db(transaction=True)


class FakeClient:
    """What the SDK's governance functions need of a custody client."""

    def __init__(self, url: str, token: str) -> None:
        self.config = SimpleNamespace(base_url=url, token=token, timeout=30.0, disabled=False, namespace="fraud")

    def flush(self, timeout: float = 0) -> bool:
        return True


def test_sdk_request_gate_and_deployment(live_server, make_user):
    from governance.accounts.models import ApiToken
    from governance.promotions.services import create_policy

    # (transactional tests flush the database, data migrations included: make the policy here)
    create_policy(make_user("root", roles=("admin",)), environment="production", required_checks=[])
    sam = make_user("sam", roles=("data_scientist",))
    grant(sam, "fraud", "write")
    train(client_for(sam))
    sdk = FakeClient(live_server.url, ApiToken.issue(sam, label="sdk")[1])
    gate = custody_governance.check_gate(sdk, "fraud-detector", "v1", "production", "fraud")
    assert not gate.approved and "no promotion request" in gate.reason
    created = custody_governance.request_promotion(sdk, "fraud-detector", "v1", to="production", reason="Q3")
    assert created["state"] == "pending"
    gate = custody_governance.check_gate(sdk, "fraud-detector", "v1", "production")
    assert not gate.approved and "pending" in gate.reason
    with pytest.raises(custody_errors.HTTPError) as refused:
        custody_governance.record_deployment(sdk, "fraud-detector", "v1", environment="production", target="api")
    assert refused.value.status == 409
    approver = client_for(make_user("ann", roles=("approver",)))
    assert post(approver, f"/api/v1/promotions/{created['id']}/approve", {}).status_code == 200
    gate = custody_governance.check_gate(sdk, "fraud-detector", "v1", "production", "fraud")
    assert gate.approved, gate.reason
    deployed = custody_governance.record_deployment(
        sdk, "fraud-detector", "v1", environment="production", target="api", build="42"
    )
    assert deployed["promotion_id"] == created["id"] and deployed["metadata"] == {"build": "42"}
