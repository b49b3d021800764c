"""Evidence packs (governance/evidence): a model version built through the real paths (OpenLineage
events with a custody_model facet, a promotion with an approval, a deployment), fetched as JSON,
W3C PROV-JSON and printable HTML; the digest recomputes; the audit entries chain to a signed
checkpoint offline; permissions and errors."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from django.test import Client
from prov.model import ProvDocument

from governance.audit import chain, signing
from governance.audit.models import AuditEntry
from governance.promotions import clock
from tests.governance_support import (
    T0,
    client_for,
    dataset,
    grant,
    new_run_id,
    post,
    run_event,
    train,
)

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/fraud-detector/versions/v1/evidence"


@pytest.fixture
def signing_key(settings: Any) -> str:
    pem = (
        __import__("cryptography.hazmat.primitives.asymmetric.ed25519", fromlist=["Ed25519PrivateKey"])
        .Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    settings.CUSTODY_AUDIT_SIGNING_KEY = pem
    return pem


@pytest.fixture
def world(api: Any, make_user: Any, signing_key: str) -> dict[str, Any]:
    """ETL writes two versions of warehouse/transactions (a column dropped: a schema change), sam
    trains fraud-detector v1 from the second, sam requests production, ann approves, sam deploys."""
    sam = make_user("sam", roles=("data_scientist",))
    grant(sam, "fraud", "write")
    grant(sam, "warehouse", "write")
    ann = make_user("ann", roles=("approver",), is_staff=True)
    sam_client = client_for(sam)
    etl = new_run_id()
    for i, (label, fields) in enumerate((("2026-02-28", ["a", "b"]), ("2026-03-01", ["a"]))):
        run_id = etl if i else new_run_id()
        for event_type, minutes in (("START", -60 + i * 10), ("COMPLETE", -55 + i * 10)):
            response = post(
                sam_client,
                "/api/v1/lineage",
                run_event(
                    "warehouse",
                    "etl-transactions",
                    run_id,
                    event_type=event_type,
                    minutes=minutes,
                    inputs=[dataset("s3://bank", "raw/transactions")],
                    outputs=[dataset("warehouse", "transactions", version=label, fields=fields)],
                ),
            )
            assert response.status_code == 201, response.content
    training = train(sam_client, version="v1", author="carol")
    ann_client = client_for(ann)
    with clock.frozen(T0.replace(hour=14)):
        created = post(
            sam_client,
            "/api/v1/promotions/",
            {
                "model": "fraud-detector",
                "version": "v1",
                "environment": "production",
                "namespace": "fraud",
                "reason": "Q3 retrain",
            },
        )
        assert created.status_code == 201, created.content
        approved = post(ann_client, f"/api/v1/promotions/{created.json()['id']}/approve", {"reason": "looks good"})
        assert approved.json()["state"] == "approved", approved.content
        deployed = post(
            sam_client,
            "/api/v1/deployments/",
            {
                "model": "fraud-detector",
                "version": "v1",
                "environment": "production",
                "namespace": "fraud",
                "target": "api-eu",
            },
        )
        assert deployed.status_code == 201, deployed.content
    checkpoint = signing.create_checkpoint(force=True)
    assert checkpoint is not None
    return {
        "admin": api,
        "sam": sam_client,
        "ann": ann_client,
        "training_run": training,
        "etl_run": etl,
        "promotion": created.json()["id"],
        "deployment": deployed.json()["id"],
        "make_user": make_user,
    }


def fetch(client: Any, fmt: str = "json", url: str = URL) -> Any:
    response = client.get(url, {"format": fmt})
    assert response.status_code == 200, response.content
    return response


def recompute(pack: dict[str, Any]) -> str:
    body = {k: v for k, v in pack.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_json_pack_holds_the_closure_approvals_deployments_and_audit(world: dict[str, Any]) -> None:
    response = fetch(world["ann"])
    assert response["Content-Type"].startswith("application/json")
    pack = response.json()
    assert pack["model"]["name"] == "fraud-detector" and pack["model"]["version"]["version"] == "v1"
    assert pack["model"]["version"]["artifact_sha256"].startswith("sha256:")
    lineage = pack["lineage"]
    assert lineage["producing_run"]["run_id"] == world["training_run"]
    assert lineage["producing_run"]["state"] == "COMPLETED"
    assert lineage["producing_run"]["started_at"] and lineage["producing_run"]["ended_at"]
    assert "custody_git" in lineage["producing_run"]["facets"]
    assert lineage["code_commit"]["sha"] == "a" * 40
    assert lineage["environment_digest"].startswith("sha256:")
    assert lineage["artifact"]["uri"].endswith("model.pkl")
    run_ids = {r["run_id"] for r in lineage["runs"]}
    assert {world["training_run"], world["etl_run"]} <= run_ids
    versions = {(d["dataset"]["name"], d["version"]): d for d in lineage["dataset_versions"]}
    consumed = versions[("transactions", "2026-03-01")]
    assert [f["name"] for f in consumed["fields"]] == ["a"]
    assert consumed["producing_run"] == world["etl_run"]
    assert consumed["consumed_by"] == [world["training_run"]]
    assert [(c["from_version"], c["to_version"]) for c in consumed["schema_changes"]] == [("2026-02-28", "2026-03-01")]
    # The ETL run's own input is in the transitive closure too.
    assert any(d["dataset"]["name"] == "raw/transactions" for d in lineage["dataset_versions"])
    # The closure digest is the one the promotion pinned.
    [promotion] = pack["promotions"]
    assert promotion["evidence_digest"] == lineage["evidence_digest"]
    assert promotion["policy"]["approvals_required"] >= 1 and "version" in promotion["policy"]
    [decision] = promotion["decisions"]
    assert (decision["user"], decision["decision"], decision["reason"]) == ("ann", "approve", "looks good")
    assert decision["at"]
    assert promotion["quorum"]["met"] is True
    assert promotion["separation_of_duties"]["outcome"] in ("respected", "not_required")
    assert promotion["separation_of_duties"]["excluded_approvers"]["requester"] == "sam"
    [deployment] = pack["deployments"]
    assert (deployment["environment"], deployment["target"], deployment["deployed_by"]) == (
        "production",
        "api-eu",
        "sam",
    )
    assert deployment["promotion_id"] == world["promotion"]
    assert isinstance(pack["findings"], list)

    # Audit entries about all of the above, with hashes that chain to a signed checkpoint.
    audit = pack["audit"]
    actions = {e["action"] for e in audit["entries"]}
    assert {
        "lineage.ingest",
        "model.register",
        "model_version.register",
        "promotion.request",
        "promotion.approve",
        "deployment.record",
    } <= actions, actions
    ingested = [e for e in audit["entries"] if e["action"] == "lineage.ingest"]
    assert len(ingested) == 4  # START + COMPLETE of the ETL run in the closure and of the training run
    objects = {(e["object_type"], e["object_id"]) for e in audit["entries"]}
    assert ("promotions.promotionrequest", str(world["promotion"])) in objects
    assert ("promotions.deployment", str(world["deployment"])) in objects
    assert "evidence.read" not in actions
    verify_offline(audit)

    # The digest recomputes from the JSON as served.
    assert pack["digest"]["algorithm"] == "sha256"
    assert pack["digest"]["value"] == recompute(pack)
    assert response["X-Evidence-Digest"] == "sha256:" + pack["digest"]["value"]


def verify_offline(audit: dict[str, Any]) -> None:
    """What a regulator does with the pack alone: chain entries and links to the checkpoint and
    check its signature."""
    records: list[tuple[int, str, str, str]] = []
    for e in audit["entries"]:
        body = hashlib.sha256(chain.canonical_json(chain.digest_form_reference(e)).encode()).hexdigest()
        records.append((e["sequence"], body, e["hash"], e["prev_hash"]))
    for link in audit["links"]:
        records.append((link["sequence"], link["body"], link["hash"], ""))
    records.sort()
    sequences = [r[0] for r in records]
    checkpoint = audit["checkpoint"]
    assert checkpoint is not None
    assert sequences == list(range(sequences[0], checkpoint["sequence"] + 1)), "gap between entries and checkpoint"
    assert audit["start"]["sequence"] == sequences[0]
    head = audit["start"]["prev_hash"]
    for sequence, body, expected, _ in records:
        head = hashlib.sha256((head + body).encode("ascii")).hexdigest()
        assert head == expected, f"entry {sequence} does not chain"
    assert head == checkpoint["hash"]
    key = serialization.load_pem_public_key(audit["public_key"].encode())
    message = signing.checkpoint_message(
        checkpoint["sequence"], checkpoint["hash"], checkpoint["time"], checkpoint["key_id"]
    )
    key.verify(base64.b64decode(checkpoint["signature"]), message)  # type: ignore[union-attr]


def test_a_tampered_pack_no_longer_matches_its_digest(world: dict[str, Any]) -> None:
    pack = fetch(world["ann"]).json()
    pack["promotions"][0]["decisions"][0]["user"] = "mallory"
    assert recompute(pack) != pack["digest"]["value"]


def test_prov_json_parses_and_holds_entities_activities_agents(world: dict[str, Any]) -> None:
    response = fetch(world["ann"], "prov")
    document = ProvDocument.deserialize(content=response.content.decode(), format="json")
    by_type: dict[str, set[str]] = {}
    for record in document.get_records():
        by_type.setdefault(record.get_type().localpart, set()).add(str(record.identifier))
    entities = by_type["Entity"]
    assert any("model/fraud/fraud-detector/v1" in e for e in entities)
    assert any("dataset/warehouse/transactions/2026-03-01" in e for e in entities)
    assert any(e.startswith("custody:commit/") for e in entities)
    assert any(e.startswith("custody:artifact/") for e in entities)
    activities = by_type["Activity"]
    assert f"custody:run/{world['training_run']}" in activities
    assert f"custody:run/{world['etl_run']}" in activities
    assert f"custody:promotion/{world['promotion']}" in activities
    assert f"custody:deployment/{world['deployment']}" in activities
    assert {"custody:user/ann", "custody:user/sam"} <= by_type["Agent"]
    relations = {r.get_type().localpart for r in document.get_records() if r.is_relation()}
    assert {"Usage", "Generation", "Association", "Derivation"} <= relations
    generated = [
        r
        for r in document.get_records()
        if r.get_type().localpart == "Generation" and "model/fraud" in str(r.formal_attributes[0][1])
    ]
    assert generated and f"run/{world['training_run']}" in str(generated[0].formal_attributes[1][1])


def test_html_is_printable_and_shows_name_and_digest(world: dict[str, Any]) -> None:
    response = fetch(world["ann"], "html")
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    digest = response["X-Evidence-Digest"].removeprefix("sha256:")
    assert "fraud-detector" in html and digest in html
    assert "<script" not in html.lower()
    assert "api-eu" in html and "looks good" in html and "2026-03-01" in html


def test_reads_are_audited(world: dict[str, Any]) -> None:
    before = AuditEntry.objects.filter(action="evidence.read").count()
    response = fetch(world["ann"], "prov")
    entry = AuditEntry.objects.filter(action="evidence.read").order_by("-sequence").first()
    assert AuditEntry.objects.filter(action="evidence.read").count() == before + 1
    assert entry is not None and entry.actor_name == "ann"
    assert entry.object_type == "registry.modelversion"
    assert entry.extra == {"format": "prov", "digest": response["X-Evidence-Digest"].removeprefix("sha256:")}


def test_permissions(world: dict[str, Any]) -> None:
    make_user = world["make_user"]
    # A data scientist who cannot see the namespace: 404, as for the rest of the model API.
    outsider = client_for(make_user("olga", roles=("data_scientist",)))
    assert outsider.get(URL, {"format": "json"}).status_code == 404
    # One who can see it but neither holds a reading role nor writes the model: 403.
    viewer_user = make_user("vic", roles=("data_scientist",))
    grant(viewer_user, "fraud", "view")
    viewer = client_for(viewer_user)
    assert viewer.get("/api/v1/models/fraud-detector/versions/v1").status_code == 200
    response = viewer.get(URL, {"format": "json"})
    assert response.status_code == 403 and response.json()["error"] == "permission_denied"
    # Readers: auditor, compliance officer, approver, admin, and the model's writer.
    for name, roles in (("audrey", ("auditor",)), ("colin", ("compliance_officer",))):
        assert client_for(make_user(name, roles=roles)).get(URL, {"format": "json"}).status_code == 200
    assert world["admin"].get(URL, {"format": "json"}).status_code == 200
    assert world["sam"].get(URL, {"format": "json"}).status_code == 200
    # No token: 401.
    from rest_framework.test import APIClient

    assert APIClient().get(URL, {"format": "json"}).status_code == 401


def test_errors_and_routes(world: dict[str, Any]) -> None:
    client = world["ann"]
    assert client.get("/api/v1/models/fraud-detector/versions/v9/evidence", {"format": "json"}).status_code == 404
    assert client.get("/api/v1/models/nope/versions/v1/evidence", {"format": "json"}).status_code == 404
    bad = client.get(URL, {"format": "xml"})
    assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
    # .../evidence/pack is the pack (JSON by default), with the namespace parameter.
    pack = client.get(URL + "/pack", {"namespace": "fraud"})
    assert pack.status_code == 200 and pack.json()["format"] == "custody.evidence-pack"
    assert client.get(URL + "/pack", {"namespace": "other"}).status_code == 404
    prov = client.get(URL + "/pack", {"format": "prov"})
    assert prov.status_code == 200 and ProvDocument.deserialize(content=prov.content.decode(), format="json")
    assert client.get(URL + "/pack", {"format": "pdf"}).status_code == 400
    # Without format, .../evidence still answers as the registry does.
    legacy = client.get(URL)
    assert legacy.status_code == 200 and "evidence" in legacy.json() and "checks" in legacy.json()


def test_admin_download(world: dict[str, Any]) -> None:
    from governance.registry.models import ModelVersion

    version = ModelVersion.objects.get(model__name="fraud-detector", version="v1")
    officer = world["make_user"]("otto", roles=("compliance_officer",), is_staff=True)
    browser = Client()
    browser.force_login(officer)
    page = browser.get(f"/admin/registry/modelversion/{version.pk}/change/")
    assert page.status_code == 200
    link = f"/admin/evidence/modelversion/{version.pk}/json/"
    assert link in page.content.decode()
    download = browser.get(link)
    assert download.status_code == 200
    assert "attachment" in download["Content-Disposition"]
    assert json.loads(download.content)["model"]["name"] == "fraud-detector"
    assert browser.get(f"/admin/evidence/modelversion/{version.pk}/xml/").status_code == 400
    # Staff without a reading role: refused.
    clerk = world["make_user"]("clara", roles=("data_scientist",), is_staff=True)
    grant(clerk, "fraud", "view")
    other = Client()
    other.force_login(clerk)
    assert other.get(link).status_code in (403, 404)


def test_break_glass_rollback_and_findings(world: dict[str, Any]) -> None:
    """v2 forced into production by an admin (break-glass), rolled back to v1; the audit rules run:
    v2's pack shows both deployments, the rollback and the finding about it."""
    from django.core.management import call_command

    train(world["sam"], version="v2")
    with clock.frozen(T0.replace(hour=16)):
        forced = post(
            world["admin"],
            "/api/v1/deployments/",
            {
                "model": "fraud-detector",
                "version": "v2",
                "environment": "production",
                "namespace": "fraud",
                "target": "api-eu",
                "break_glass": True,
                "reason": "outage, approvers unreachable",
            },
        )
        assert forced.status_code == 201, forced.content
        rolled = post(world["sam"], "/api/v1/deployments/", {"rollback_of": forced.json()["id"], "reason": "bad v2"})
        assert rolled.status_code == 201, rolled.content
    call_command("run_audits")
    signing.create_checkpoint(force=True)
    pack = fetch(world["ann"], url="/api/v1/models/fraud-detector/versions/v2/evidence").json()
    assert pack["digest"]["value"] == recompute(pack)
    deployments = {d["id"]: d for d in pack["deployments"]}
    assert deployments[forced.json()["id"]]["break_glass"] is True
    rollback = deployments[rolled.json()["id"]]
    assert rollback["is_rollback"] and rollback["version"] == "v1"
    assert rollback["rollback_of"] == {"id": forced.json()["id"], "version": "v2"}
    assert pack["promotions"] == []
    subjects = {f["subject"] for f in pack["findings"]}
    # The rollback put v1 back without a live approval (its request expired): the rule flags it.
    assert f"deployment:{rolled.json()['id']}" in subjects, pack["findings"]
    actions = {e["action"] for e in pack["audit"]["entries"]}
    assert "deployment.break_glass" in actions
    verify_offline(pack["audit"])


def test_without_a_covering_checkpoint_the_pack_says_so(world: dict[str, Any]) -> None:
    train(world["sam"], version="v3")
    pack = fetch(world["ann"], url="/api/v1/models/fraud-detector/versions/v3/evidence").json()
    assert pack["audit"]["checkpoint"] is None and pack["audit"]["checkpoint_pending"]
    assert pack["audit"]["entries"]
    html = fetch(world["ann"], "html", url="/api/v1/models/fraud-detector/versions/v3/evidence").content.decode()
    assert "No signed checkpoint covers" in html


def test_a_model_writer_without_upstream_visibility_gets_placeholders(world: dict[str, Any]) -> None:
    """wes writes the fraud namespace but cannot see warehouse: the ETL run, its dataset versions
    and the audit entries of their ingestion are withheld, and the chain still verifies."""
    wes = world["make_user"]("wes", roles=("data_scientist",))
    grant(wes, "fraud", "write")
    pack = fetch(client_for(wes)).json()
    text = json.dumps(pack)
    assert world["etl_run"] not in text and "etl-transactions" not in text
    assert {"redacted": True} in pack["lineage"]["runs"]
    assert {"redacted": True} in pack["lineage"]["dataset_versions"]
    assert pack["audit"]["withheld"] == 2  # the ETL run's START and COMPLETE
    assert pack["digest"]["value"] == recompute(pack)
    assert pack["lineage"]["evidence_digest"] == fetch(world["ann"]).json()["lineage"]["evidence_digest"]
    verify_offline(pack["audit"])
