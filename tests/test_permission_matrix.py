"""The permission matrix: every API endpoint, every role (and token kind), own and other namespace.

The endpoints come from the URL conf itself (``django.urls.get_resolver``): a route without a rule
here fails :func:`test_every_endpoint_has_a_rule`, so a new endpoint cannot ship unchecked. Only
``/healthz``, the admin (tested in test_admin / test_governance_admin), and the OpenAPI schema and
docs are allow-listed.

Who is who:

- ``admin`` (the admin role, not a superuser), ``compliance_officer``, ``auditor``, ``approver``;
- ``data_scientist`` (sam, write on ``fraud``), and sam's ``read`` and ``ingest`` tokens;
- ``limited``: a CI user with write on both namespaces whose token is limited to ``fraud``;
- ``anonymous``.

"own" is the ``fraud`` namespace, "other" is ``secret``. Hidden things answer 404 (details) or
are left out (lists), never 403, so existence does not leak; graph nodes in hidden namespaces are
redacted placeholders.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from governance.promotions import services as promotions
from governance.registry import services as registry
from governance.registry.models import ModelVersion
from lineage.models import Run
from tests.governance_support import client_for, dataset, digest, grant, model_output, post, run_event

pytestmark = pytest.mark.django_db

ALLOWED_WITHOUT_RULE = ("healthz", "admin/", "api/schema/", "api/docs/")
ROLES = (
    "admin",
    "compliance_officer",
    "auditor",
    "approver",
    "data_scientist",
    "read",
    "ingest",
    "limited",
    "anonymous",
)
READ_ALL = {"admin", "compliance_officer", "auditor", "approver"}
NAMESPACES = {"own": "fraud", "other": "secret"}
OWN_RUN = "0000aaaa-0000-4000-8000-000000000001"
OTHER_RUN = "0000bbbb-0000-4000-8000-000000000002"
RUNS = {"own": OWN_RUN, "other": OTHER_RUN}
JOBS = {"own": "train-fraud-detector", "other": "secret-etl"}
MODELS = {"own": "fraud-detector", "other": "secret-model"}
DATASETS = {"own": "features", "other": "pii_table"}


def all_routes() -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for item in patterns:
            if isinstance(item, URLResolver):
                walk(item.url_patterns, prefix + str(item.pattern))
            elif isinstance(item, URLPattern):
                found.append((prefix + str(item.pattern), item.name))

    walk(get_resolver().url_patterns, "")
    return found


def allowed(route: str) -> bool:
    bare = route.lstrip("^")
    return any(bare.startswith(prefix) for prefix in ALLOWED_WITHOUT_RULE)


# --- expectations ---------------------------------------------------------------------------------


def scope_first(role: str, method: str) -> int | None:
    """What authentication and the token scope answer before any object check."""
    if role == "anonymous":
        return 401
    if role == "ingest":
        return 403
    if role == "read" and method != "GET":
        return 403
    return None


def read_detail(role: str, ns: str, method: str = "GET") -> int:
    first = scope_first(role, method)
    if first:
        return first
    if ns == "own" or role in READ_ALL:
        return 200
    return 404


def read_list(role: str, ns: str, method: str = "GET") -> int:
    return scope_first(role, method) or 200


def audit_read(role: str, ns: str, method: str = "GET") -> int:
    first = scope_first(role, method)
    if first:
        return first
    return 200 if role in {"admin", "compliance_officer", "auditor"} else 403


def public_key(role: str, ns: str, method: str = "GET") -> set[int]:
    first = scope_first(role, method)
    return {first} if first else {200, 503}  # 503 when no signing key is configured


def ingest(role: str, ns: str, method: str = "POST") -> int:
    if role == "anonymous":
        return 401
    if role == "read":
        return 403
    if role == "ingest" or role == "admin":
        return 201
    if ns == "own" and role in {"data_scientist", "limited"}:
        return 201
    return 403


def batch(role: str, ns: str, method: str = "POST") -> int:
    """The batch answers 200 with per-event failures (see test_lineage_batch_refuses_per_event)."""
    return {"anonymous": 401, "read": 403}.get(role, 200)


def write(role: str, ns: str, method: str = "POST", created: int = 201) -> int:
    """Registering, requesting a promotion, recording or rolling back a deployment."""
    first = scope_first(role, method)
    if first:
        return first
    if role == "admin":
        return created
    if role in {"compliance_officer", "auditor", "approver"}:
        return 403
    return created if ns == "own" else 404  # data scientist, limited token


def decide(role: str, ns: str, method: str = "POST") -> int:
    """Approve or reject, under a policy whose eligible role is approver."""
    first = scope_first(role, method)
    if first:
        return first
    if role == "approver":
        return 200
    if role in READ_ALL or ns == "own":
        return 403
    return 404


def withdraw(role: str, ns: str, method: str = "POST") -> int:
    """Requests were made by another admin: only admins (and the requester) may withdraw."""
    first = scope_first(role, method)
    if first:
        return first
    if role == "admin":
        return 200
    if role in READ_ALL or ns == "own":
        return 403
    return 404


def comment(role: str, ns: str, method: str = "POST") -> int:
    first = scope_first(role, method)
    if first:
        return first
    if role in {"compliance_officer", "auditor"}:
        return 403
    if role in {"admin", "approver"} or ns == "own":
        return 201
    return 404


def admin_only(role: str, ns: str, method: str = "POST") -> int:
    first = scope_first(role, method)
    if first:
        return first
    return 201 if role == "admin" else 403


@dataclass
class Case:
    method: str
    path: Callable[[Any, str, str], str]  # (world, role, ns) -> path
    expect: Callable[..., Any]
    body: Callable[[Any, str, str], Any] | None = None


def q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


RULES: dict[str, list[Case]] = {
    # lineage ingestion and reads
    "lineage": [
        Case("GET", lambda w, r, ns: f"/api/v1/lineage?nodeId=job:{NAMESPACES[ns]}:{JOBS[ns]}&depth=4", read_detail),
        Case(
            "POST",
            lambda w, r, ns: "/api/v1/lineage",
            ingest,
            lambda w, r, ns: run_event(NAMESPACES[ns], f"job-{r}", w.new_run()),
        ),
    ],
    "lineage-batch": [
        Case(
            "POST",
            lambda w, r, ns: "/api/v1/lineage/batch",
            batch,
            lambda w, r, ns: [run_event(NAMESPACES[ns], f"batch-{r}", w.new_run())],
        )
    ],
    "column-lineage": [
        Case(
            "GET",
            lambda w, r, ns: f"/api/v1/column-lineage?nodeId=dataset:{NAMESPACES[ns]}:{DATASETS[ns]}",
            read_detail,
        )
    ],
    "runlineage-upstream": [Case("GET", lambda w, r, ns: f"/api/v1/runlineage/upstream?runId={RUNS[ns]}", read_detail)],
    "run-provenance": [Case("GET", lambda w, r, ns: f"/api/v1/runs/{RUNS[ns]}/provenance", read_detail)],
    "namespaces": [Case("GET", lambda w, r, ns: "/api/v1/namespaces", read_list)],
    "namespace-tree": [
        Case("GET", lambda w, r, ns: f"/api/v1/namespaces/{NAMESPACES[ns]}", read_detail),
        Case("GET", lambda w, r, ns: f"/api/v1/namespaces/{NAMESPACES[ns]}/jobs/{JOBS[ns]}", read_detail),
        Case("GET", lambda w, r, ns: f"/api/v1/namespaces/{NAMESPACES[ns]}/datasets/{DATASETS[ns]}", read_detail),
    ],
    "job-runs": [Case("GET", lambda w, r, ns: f"/api/v1/jobs/runs/{RUNS[ns]}", read_detail)],
    "search": [Case("GET", lambda w, r, ns: f"/api/v1/search?q={DATASETS[ns]}", read_list)],
    "lineage-events": [Case("GET", lambda w, r, ns: "/api/v1/events/lineage", read_list)],
    # audit trail
    "audit-list": [Case("GET", lambda w, r, ns: "/api/v1/audit/", audit_read)],
    "audit-verify": [Case("GET", lambda w, r, ns: "/api/v1/audit/verify", audit_read)],
    "audit-public-key": [Case("GET", lambda w, r, ns: "/api/v1/audit/public-key", public_key)],
    "audit-checkpoints": [Case("GET", lambda w, r, ns: "/api/v1/audit/checkpoints", audit_read)],
    "audit-entry": [Case("GET", lambda w, r, ns: "/api/v1/audit/1", audit_read)],
    # registry
    "models": [
        Case("GET", lambda w, r, ns: "/api/v1/models/", read_list),
        Case(
            "POST",
            lambda w, r, ns: "/api/v1/models/",
            write,
            lambda w, r, ns: {"namespace": NAMESPACES[ns], "name": f"new-{r}"},
        ),
    ],
    "model": [Case("GET", lambda w, r, ns: f"/api/v1/models/{MODELS[ns]}", read_detail)],
    "model-versions": [
        Case("GET", lambda w, r, ns: f"/api/v1/models/{MODELS[ns]}/versions/", read_detail),
        Case(
            "POST",
            lambda w, r, ns: f"/api/v1/models/{MODELS[ns]}/versions/",
            write,
            lambda w, r, ns: {"version": f"reg-{r}", "artifact_digest": digest(r)},
        ),
    ],
    "model-version": [Case("GET", lambda w, r, ns: f"/api/v1/models/{MODELS[ns]}/versions/v1", read_detail)],
    "model-version-evidence": [
        Case("GET", lambda w, r, ns: f"/api/v1/models/{MODELS[ns]}/versions/v1/evidence", read_detail)
    ],
    # promotions
    "promotions": [
        Case("GET", lambda w, r, ns: "/api/v1/promotions/", read_list),
        Case(
            "POST",
            lambda w, r, ns: "/api/v1/promotions/",
            write,
            lambda w, r, ns: {"model": MODELS[ns], "version": f"ask-{r}", "environment": "production"},
        ),
    ],
    "promotion": [Case("GET", lambda w, r, ns: f"/api/v1/promotions/{w.pending[('view', ns)]}", read_detail)],
    "promotion-approve": [
        Case(
            "POST",
            lambda w, r, ns: f"/api/v1/promotions/{w.pending[('approve-' + r, ns)]}/approve",
            decide,
            lambda *a: {},
        )
    ],
    "promotion-reject": [
        Case(
            "POST",
            lambda w, r, ns: f"/api/v1/promotions/{w.pending[('reject-' + r, ns)]}/reject",
            decide,
            lambda *a: {"reason": "not convinced"},
        )
    ],
    "promotion-withdraw": [
        Case(
            "POST",
            lambda w, r, ns: f"/api/v1/promotions/{w.pending[('withdraw-' + r, ns)]}/withdraw",
            withdraw,
            lambda *a: {},
        )
    ],
    "promotion-comment": [
        Case(
            "POST",
            lambda w, r, ns: f"/api/v1/promotions/{w.pending[('view', ns)]}/comment",
            comment,
            lambda *a: {"text": "a question"},
        )
    ],
    # deployments
    "deployments": [
        Case("GET", lambda w, r, ns: "/api/v1/deployments/?current=true", read_list),
        Case(
            "POST",
            lambda w, r, ns: "/api/v1/deployments/",
            write,
            lambda w, r, ns: {"model": MODELS[ns], "version": "v1", "environment": "staging", "target": f"t-{r}"},
        ),
    ],
    "deployment": [Case("GET", lambda w, r, ns: f"/api/v1/deployments/{w.deployed[('view', ns)]}", read_detail)],
    "deployment-rollback": [
        Case(
            "POST",
            lambda w, r, ns: f"/api/v1/deployments/{w.deployed[('rollback-' + r, ns)]}/rollback",
            write,
            lambda *a: {"reason": "regression"},
        )
    ],
    # evidence packs (governance.evidence) and compliance (governance.compliance): their rules
    # here check authentication, token scopes, roles and namespace visibility; their own tests
    # cover the content.
    "model-version-evidence-pack": [
        Case("GET", lambda w, r, ns: f"/api/v1/models/{MODELS[ns]}/versions/v1/evidence/pack", read_detail)
    ],
    "findings": [Case("GET", lambda w, r, ns: "/api/v1/findings/", read_list)],
    "finding": [
        Case("GET", lambda w, r, ns: "/api/v1/findings/987654", lambda r, ns, m="GET": scope_first(r, m) or 404),
        Case(
            "POST",
            lambda w, r, ns: "/api/v1/findings/987654",
            lambda r, ns, m="POST": scope_first(r, m) or 404,
            lambda *a: {"status": "resolved"},
        ),
    ],
    "legal-holds": [
        Case(
            "GET",
            lambda w, r, ns: "/api/v1/legal-holds/",
            lambda r, ns, m="GET": scope_first(r, m) or (200 if r in READ_ALL else 403),
        ),
        Case(
            "POST",
            lambda w, r, ns: "/api/v1/legal-holds/",
            lambda r, ns, m="POST": scope_first(r, m) or (400 if r in {"admin", "compliance_officer"} else 403),
            lambda *a: {"reason": ""},
        ),
    ],
    "legal-hold-release": [
        Case(
            "POST",
            lambda w, r, ns: "/api/v1/legal-holds/987654/release",
            lambda r, ns, m="POST": scope_first(r, m) or (404 if r in {"admin", "compliance_officer"} else 403),
            lambda *a: {},
        )
    ],
    # policies
    "policies": [
        Case("GET", lambda w, r, ns: "/api/v1/policies/", read_list),
        Case(
            "POST",
            lambda w, r, ns: "/api/v1/policies/",
            admin_only,
            lambda w, r, ns: {"environment": f"env-{r}", "namespace": NAMESPACES[ns], "approvals_required": 1},
        ),
    ],
    "policy": [Case("GET", lambda w, r, ns: f"/api/v1/policies/{w.policies[ns]}", read_detail)],
}


# --- the world ------------------------------------------------------------------------------------


class World:
    def __init__(self, make_user: Any) -> None:
        self.counter = 0
        root = make_user("root", roles=("admin",), is_staff=True, is_superuser=True)
        self.root = client_for(root)
        users = {
            "admin": make_user("boss", roles=("admin",), is_staff=True),
            "compliance_officer": make_user("olga", roles=("compliance_officer",), is_staff=True),
            "auditor": make_user("audrey", roles=("auditor",), is_staff=True),
            "approver": make_user("ann", roles=("approver",), is_staff=True),
            "data_scientist": make_user("sam", roles=("data_scientist",)),
        }
        ci = make_user("ci", roles=("data_scientist",))
        self.clients: dict[str, APIClient] = {role: client_for(user) for role, user in users.items()}
        self.clients["read"] = client_for(users["data_scientist"], scope="read")
        self.clients["ingest"] = client_for(users["data_scientist"], scope="ingest")
        self.clients["anonymous"] = APIClient()
        self.users = users
        self._build_lineage(users["data_scientist"], ci)
        self.clients["limited"] = client_for(ci, namespaces=["fraud"])
        self._build_governance(root)

    def new_run(self) -> str:
        self.counter += 1
        return f"feedface-0000-4000-8000-{self.counter:012d}"

    def _build_lineage(self, sam: Any, ci: Any) -> None:
        pii = dataset("secret", "pii_table", version="p1", fields=["ssn"])
        secret_etl = run_event("secret", "secret-etl", OTHER_RUN, minutes=-60, outputs=[pii])
        secret_model = run_event(
            "secret",
            "train-secret-model",
            "0000cccc-0000-4000-8000-000000000003",
            minutes=-30,
            inputs=[dataset("secret", "pii_table")],
            outputs=[model_output("secret", "secret-model", "v1")],
        )
        for event in (secret_etl, secret_model):
            assert post(self.root, "/api/v1/lineage", event).status_code == 201
        grant(sam, "fraud", "write")
        grant(ci, "fraud", "write")
        grant(ci, "secret", "write")
        features = dataset("fraud", "features", version="f1", fields=["amount", "score"])
        own = run_event(
            "fraud",
            "train-fraud-detector",
            OWN_RUN,
            inputs=[features, dataset("secret", "pii_table")],
            outputs=[model_output("fraud", "fraud-detector", "v1")],
        )
        assert post(client_for(sam), "/api/v1/lineage", own).status_code == 201

    def _build_governance(self, root: Any) -> None:
        promotions.create_policy(root, environment="production", approvals_required=1, required_checks=[])
        requester = root
        self.pending: dict[tuple[str, str], int] = {}
        self.deployed: dict[tuple[str, str], int] = {}
        self.policies: dict[str, int] = {}
        for ns, model_name in MODELS.items():
            model = registry.find_model(root, model_name, NAMESPACES[ns])
            v1 = ModelVersion.objects.get(model=model, version="v1")

            def version(label: str, model: Any = model) -> ModelVersion:
                registry.register_version(root, model, {"version": label, "artifact_digest": digest(label)})
                return ModelVersion.objects.select_related("model__namespace").get(model=model, version=label)

            self.pending[("view", ns)] = promotions.request_promotion(requester, v1, "production").pk
            for role in ROLES:
                version(f"ask-{role}")
                for action in ("approve", "reject", "withdraw"):
                    target = version(f"{action}-{role}")
                    self.pending[(f"{action}-{role}", ns)] = promotions.request_promotion(
                        requester, target, "production"
                    ).pk
                promotions.record_deployment(root, v1, "staging", f"rb-{role}-{ns}")
                second = promotions.record_deployment(root, version(f"rb2-{role}"), "staging", f"rb-{role}-{ns}")
                self.deployed[(f"rollback-{role}", ns)] = second.pk
            self.deployed[("view", ns)] = promotions.record_deployment(root, v1, "staging", "main").pk
            namespace = model.namespace
            self.policies[ns] = promotions.create_policy(
                root, environment="qa", namespace=namespace, approvals_required=1
            ).pk


@pytest.fixture
def world(db: Any, make_user: Any) -> World:
    return World(make_user)


def call(client: APIClient, method: str, path: str, body: Any) -> Any:
    if method == "GET":
        return client.get(path)
    return client.post(path, data=json.dumps(body if body is not None else {}), content_type="application/json")


# --- tests ----------------------------------------------------------------------------------------


def test_every_endpoint_has_a_rule() -> None:
    routes = [(route, name) for route, name in all_routes() if not allowed(route)]
    unnamed = [route for route, name in routes if not name]
    assert not unnamed, f"routes without a name cannot be checked: {unnamed}"
    names = {name for _, name in routes}
    assert names - RULES.keys() == set(), f"endpoints without a permission rule: {sorted(names - RULES.keys())}"
    assert RULES.keys() - names == set(), f"rules for endpoints that no longer exist: {sorted(RULES.keys() - names)}"


def test_matrix(world: World, subtests: Any) -> None:
    for name, cases in RULES.items():
        for case in cases:
            for ns in NAMESPACES:
                for role in ROLES:
                    path = case.path(world, role, ns)
                    expected = case.expect(role, ns, case.method)
                    wanted = expected if isinstance(expected, set) else {expected}
                    with subtests.test(endpoint=name, method=case.method, role=role, ns=ns):
                        body = case.body(world, role, ns) if case.body else None
                        response = call(world.clients[role], case.method, path, body)
                        assert response.status_code in wanted, (path, response.content[:300])
                        if response.status_code >= 400:
                            assert set(response.json()) >= {"error", "detail"}


def test_lineage_batch_refuses_per_event(world: World) -> None:
    for role in ("data_scientist", "limited", "approver"):
        response = post(world.clients[role], "/api/v1/lineage/batch", [run_event("secret", "x", world.new_run())])
        assert response.status_code == 200
        assert response.json()["summary"]["failed"] == 1, role
    ok = post(world.clients["limited"], "/api/v1/lineage/batch", [run_event("fraud", "x", world.new_run())])
    assert ok.json()["summary"]["successful"] == 1


def test_lists_leave_out_what_is_hidden_and_graphs_redact_it(world: World) -> None:
    for role in ("data_scientist", "read", "limited"):
        client = world.clients[role]
        names = {ns["name"] for ns in client.get("/api/v1/namespaces").json()["namespaces"]}
        assert "secret" not in names and "fraud" in names, role
        assert {m["namespace"] for m in client.get("/api/v1/models/").json()["results"]} == {"fraud"}
        assert {p["namespace"] for p in client.get("/api/v1/promotions/").json()["results"]} == {"fraud"}
        assert {d["namespace"] for d in client.get("/api/v1/deployments/").json()["results"]} == {"fraud"}
        assert client.get("/api/v1/search?q=pii_table").json()["totalCount"] == 0
        events = client.get("/api/v1/events/lineage").json()["events"]
        assert events and all(e["job"]["namespace"] != "secret" for e in events)
        graph = client.get("/api/v1/lineage?nodeId=job:fraud:train-fraud-detector&depth=4").json()["graph"]
        text = json.dumps(graph)
        assert "pii_table" not in text and "secret:" not in text
        hidden = [n for n in graph if n["data"].get("redacted")]
        assert any(n["id"].startswith("dataset:<redacted>:") for n in hidden)
        assert all(":<redacted>:" in n["id"] and set(n["data"]) == {"redacted"} for n in hidden)
        run_graph = client.get(f"/api/v1/lineage?nodeId=run:{OWN_RUN}&depth=4").json()["graph"]
        assert any(n["type"] == "MODEL_VERSION" and not n["data"].get("redacted") for n in run_graph)
        assert "pii_table" not in json.dumps(run_graph)
        evidence = client.get("/api/v1/models/fraud-detector/versions/v1/evidence").json()["evidence"]
        assert any(i.get("redacted") for i in evidence["inputs"]) and "pii_table" not in json.dumps(evidence)
        policies = {p["namespace"] for p in client.get("/api/v1/policies/").json()["results"]}
        assert "secret" not in policies
    officer = world.clients["compliance_officer"]
    assert "pii_table" in json.dumps(officer.get(f"/api/v1/lineage?nodeId=run:{OWN_RUN}&depth=4").json())
    assert {m["namespace"] for m in officer.get("/api/v1/models/").json()["results"]} == {"fraud", "secret"}


def test_token_limits_apply_to_what_the_user_may_otherwise_do(world: World) -> None:
    """The CI user may write to both namespaces; its token only to fraud."""
    limited = world.clients["limited"]
    assert post(limited, "/api/v1/lineage", run_event("secret", "ci", world.new_run())).status_code == 403
    assert post(limited, "/api/v1/lineage", run_event("fraud", "ci", world.new_run())).status_code == 201
    assert limited.get("/api/v1/models/secret-model").status_code == 404
    assert Run.objects.filter(job__namespace__name="secret", job__name="ci").count() == 0
