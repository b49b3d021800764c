"""Race safety on PostgreSQL: real threads, each with its own database connection, released
together by a barrier. Twenty approvers at once give exactly one outcome with exactly the right
number of approvals; approve and withdraw racing leave a consistent request and audit trail."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from governance.audit.models import AuditEntry
from governance.audit.verify import verify_chain
from governance.core.errors import ApiError
from governance.promotions import services
from governance.promotions.models import Decision, PromotionRequest
from governance.registry import services as registry
from governance.registry.models import ModelVersion
from tests.governance_support import digest

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_together(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run the callables in parallel threads released at once; each result is "ok" or the HTTP
    status of the ApiError it raised. Every thread closes its own connection."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def work(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            jobs[index]()
            results[index] = "ok"
        except ApiError as exc:
            results[index] = exc.status_code
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            results[index] = repr(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results


@pytest.fixture
def setup(make_user: Any) -> dict[str, Any]:
    root = make_user("root", roles=("admin",), is_staff=True, is_superuser=True)
    requester = make_user("req", roles=("data_scientist",))
    model = registry.create_model(root, _ensure("fraud"), "m")
    versions = []
    for label in ("v1", "v2", "v3", "v4", "v5", "v6"):
        registry.register_version(root, model, {"version": label, "artifact_digest": digest(label)})
        versions.append(ModelVersion.objects.select_related("model__namespace").get(model=model, version=label))
    from governance.permissions.grants import ensure_namespace, grant_namespace

    grant_namespace(requester, ensure_namespace("fraud"), "write")
    approvers = [make_user(f"approver{i:02d}", roles=("approver",)) for i in range(20)]
    return {"root": root, "requester": requester, "versions": versions, "approvers": approvers}


def _ensure(name: str) -> str:
    from governance.permissions.grants import ensure_namespace

    return ensure_namespace(name).name


def policy(root: Any, n: int) -> None:
    services.create_policy(root, environment="production", approvals_required=n, required_checks=[])


def fresh(user: Any) -> Any:
    """A new user object (caches live on user objects; each thread gets its own)."""
    return type(user).objects.get(pk=user.pk)


@pytest.mark.parametrize("needed", [3, 20])
def test_twenty_approvers_at_once(setup: dict[str, Any], needed: int) -> None:
    policy(setup["root"], needed)
    req = services.request_promotion(setup["requester"], setup["versions"][0], "production", "race")
    users = [fresh(u) for u in setup["approvers"]]
    jobs = [lambda user=user: services.approve(user, req.pk, "lgtm") for user in users]
    results = run_together(jobs)
    assert results.count("ok") == needed, results
    assert results.count(409) == 20 - needed, results
    req.refresh_from_db()
    assert req.state == "approved" and req.approvals_count == needed
    assert Decision.objects.filter(request=req, kind="approve", stale=False).count() == needed
    assert Decision.objects.filter(request=req).values("user").distinct().count() == needed
    entries = list(AuditEntry.objects.filter(action="promotion.approve", object_id=str(req.pk)))
    assert len(entries) == needed
    assert sum(1 for e in entries if e.extra["approved"]) == 1  # exactly one transition
    assert sorted(e.extra["approvals"] for e in entries) == list(range(1, needed + 1))  # no lost count
    assert verify_chain().ok


def test_approve_and_withdraw_race(setup: dict[str, Any]) -> None:
    policy(setup["root"], 2)
    outcomes = []
    for version in setup["versions"]:
        req = services.request_promotion(setup["requester"], version, "production", "race")
        a, b = (fresh(u) for u in setup["approvers"][:2])
        requester = fresh(setup["requester"])
        results = run_together(
            [
                lambda: services.approve(a, req.pk),  # noqa: B023
                lambda: services.approve(b, req.pk),  # noqa: B023
                lambda: services.withdraw(requester, req.pk, "changed my mind"),  # noqa: B023
            ]
        )
        req.refresh_from_db()
        approved = [r for r in results[:2] if r == "ok"]
        assert results[2] == "ok"  # withdrawal of an open request always succeeds
        assert all(r in ("ok", 409) for r in results[:2]), results
        assert req.state == "withdrawn"
        decisions = Decision.objects.filter(request=req, kind="approve").count()
        assert decisions == len(approved) == req.approvals_count
        assert AuditEntry.objects.filter(action="promotion.approve", object_id=str(req.pk)).count() == len(approved)
        assert AuditEntry.objects.filter(action="promotion.withdraw", object_id=str(req.pk)).count() == 1
        before = AuditEntry.objects.get(action="promotion.withdraw", object_id=str(req.pk)).before
        assert before["approvals_count"] == len(approved)
        assert before["state"] == ("approved" if len(approved) == 2 else "pending")
        outcomes.append(len(approved))
    assert verify_chain().ok
    assert PromotionRequest.objects.filter(state="withdrawn").count() == len(setup["versions"])
    # (which interleavings happened varies from run to run; every one of them was consistent)
    assert set(outcomes) <= {0, 1, 2}


def test_parallel_requests_for_the_same_version(setup: dict[str, Any]) -> None:
    policy(setup["root"], 1)
    users = [fresh(setup["requester"]) for _ in range(10)]
    version = setup["versions"][0]
    results = run_together([lambda u=u: services.request_promotion(u, version, "production") for u in users])
    assert results.count("ok") == 1 and results.count(409) == 9, results
    assert PromotionRequest.objects.filter(model_version=version).count() == 1
