"""Each built-in audit rule: a scenario that fires it, one that does not, and resolution when the cause
goes away; deduplication; accepted findings; every status change audited; the findings API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from governance.audit.models import AuditEntry
from governance.compliance.engine import run_rules, set_status
from governance.compliance.models import Finding, FreshnessExpectation, PrivacySignoff
from governance.compliance.rules import all_rules
from tests.test_compliance_graph import ago, approve, dataset, deploy, model_version, run

pytestmark = pytest.mark.django_db


def open_subjects(rule: str) -> set[str]:
    return set(Finding.objects.filter(rule_id=rule, status="open").values_list("subject", flat=True))


def test_builtins_are_registered() -> None:
    assert {
        "deployment.no_live_approval",
        "training_data.changed_since_approval",
        "model.dirty_commit",
        "pii.no_privacy_signoff",
        "ingestion.stale",
        "approval.approver_lost_role",
        "audit.chain_broken",
    } <= set(all_rules())


def test_deployment_without_live_approval(make_user: Any) -> None:
    rule = "deployment.no_live_approval"
    approver = make_user("ann", roles=("approver",))
    ok = model_version("good", run("t", ago(30)))
    ok_request = approve(ok, approver)
    deploy(ok, ok_request)
    bad = model_version("bad", run("t", ago(30)))
    dep = deploy(bad, target="svc-b")
    expiring = model_version("exp", run("t", ago(30)))
    req = approve(expiring, approver, expires_at=ago(1))  # expired: not live
    exp_dep = deploy(expiring, req, target="svc-c")
    run_rules([rule])
    assert open_subjects(rule) == {f"deployment:{dep.pk}", f"deployment:{exp_dep.pk}"}
    finding = Finding.objects.get(rule_id=rule, subject=f"deployment:{dep.pk}")
    assert finding.namespace.name == "ns" and finding.severity == "critical"
    # Cause goes away: the bad deployment is replaced by an approved one; the expired is re-approved.
    deploy(ok, ok_request, target="svc-b", at=ago(0, 1))
    req.expires_at = timezone.now() + timedelta(days=1)
    req.save()
    report = run_rules([rule])
    assert report.resolved == 2
    assert Finding.objects.get(pk=finding.pk).status == "resolved"


def test_training_data_changed_since_approval(make_user: Any) -> None:
    from lineage.models import SchemaChange

    rule = "training_data.changed_since_approval"
    approver = make_user("ann", roles=("approver",))
    src = dataset("src")
    producer = run("load", ago(60), outputs=[src])
    mv = model_version("m", run("train", ago(50), inputs=[producer.new_versions[0]]))
    deploy(mv, approve(mv, approver, at=ago(20)))
    run_rules([rule])
    assert open_subjects(rule) == set()
    newer = run("load", ago(10), outputs=[src]).new_versions[0]
    change = SchemaChange.objects.create(
        dataset=src,
        from_version=producer.new_versions[0],
        to_version=newer,
        level="MAJOR",
        changes=[],
        explanation="dropped a column",
        created_at=ago(10),
    )
    run_rules([rule])
    assert open_subjects(rule) == {f"model_version:{mv.pk}:production"}
    change.delete()
    run_rules([rule])
    assert open_subjects(rule) == set()
    # A restricted tag added after the approval fires it too; one from before does not.
    src.tags, src.facet_times = ["pii"], {"tags": ago(2).isoformat()}
    src.save()
    run_rules([rule])
    assert open_subjects(rule) == {f"model_version:{mv.pk}:production"}
    src.facet_times = {"tags": ago(40).isoformat()}
    src.save()
    run_rules([rule])
    assert open_subjects(rule) == set()


def test_dirty_commit() -> None:
    rule = "model.dirty_commit"
    dirty = model_version("d", run("train", ago(5), dirty=True))
    model_version("c", run("train", ago(5), dirty=False))
    run_rules([rule])
    assert open_subjects(rule) == {f"model_version:{dirty.pk}"}
    commit = dirty.run.code_commit
    commit.is_dirty = False
    commit.save()
    run_rules([rule])
    assert open_subjects(rule) == set()
    assert Finding.objects.get(rule_id=rule).status == "resolved"


def test_pii_without_privacy_signoff(make_user: Any) -> None:
    rule = "pii.no_privacy_signoff"
    approver = make_user("ann", roles=("approver",))
    people = dataset("people", tags=["pii"])
    upstream = run("load", ago(60), outputs=[people])
    feats = dataset("features")
    mid = run("featurize", ago(55), inputs=[upstream.new_versions[0]], outputs=[feats])
    mv = model_version("m", run("train", ago(50), inputs=[mid.new_versions[0]]))
    clean = model_version("clean", run("train2", ago(50), inputs=[dataset("weather")]))
    deploy(mv, approve(mv, approver))
    deploy(clean, approve(clean, approver), target="other")
    model_version("not-deployed", run("train3", ago(50), inputs=[people]))
    run_rules([rule])
    assert open_subjects(rule) == {f"model_version:{mv.pk}"}
    PrivacySignoff.objects.create(model_version=mv, signed_by=approver, created_at=timezone.now())
    run_rules([rule])
    assert open_subjects(rule) == set()


def test_stale_ingestion() -> None:
    rule = "ingestion.stale"
    daily, fresh, declared = dataset("daily"), dataset("fresh"), dataset("declared")
    for day in (20, 19, 18, 17, 16):  # daily until 16 days ago: stale
        run("load", ago(day), outputs=[daily])
    for hours in (4, 3, 2, 1):  # hourly until an hour ago: fine
        run("load2", ago(0, hours), outputs=[fresh])
    run("load3", ago(0, 3), outputs=[declared])
    FreshnessExpectation.objects.create(dataset=declared, every_seconds=3600, grace_seconds=600)
    run_rules([rule])
    assert open_subjects(rule) == {f"dataset:{daily.pk}", f"dataset:{declared.pk}"}
    run("load", ago(0), outputs=[daily])
    run("load3", ago(0), outputs=[declared])
    run_rules([rule])
    assert open_subjects(rule) == set()


def test_approver_lost_role(make_user: Any) -> None:
    from django.contrib.auth.models import Group

    rule = "approval.approver_lost_role"
    ann = make_user("ann", roles=("approver",))
    bob = make_user("bob", roles=("approver",))
    mv = model_version("m", run("t", ago(30)))
    req = approve(mv, ann)
    approve(model_version("n", run("t", ago(30))), bob)
    run_rules([rule])
    assert open_subjects(rule) == set()
    ann.groups.remove(Group.objects.get(name="approver"))
    run_rules([rule])
    decision = req.decisions.get()
    assert open_subjects(rule) == {f"decision:{decision.pk}"}
    ann.groups.add(Group.objects.get(name="approver"))
    run_rules([rule])
    assert open_subjects(rule) == set()


def test_broken_audit_chain() -> None:
    from django.db import connection

    from governance.audit.services import record

    rule = "audit.chain_broken"
    record("test.one", object_type="t", object_id="1", extra={"n": 1})
    record("test.two", object_type="t", object_id="2", extra={"n": 2})
    run_rules([rule])
    assert open_subjects(rule) == set(), Finding.objects.filter(rule_id=rule).values_list("details", flat=True)
    entry = AuditEntry.objects.order_by("sequence").first()
    assert entry is not None

    # Tamper behind the guards' back (the triggers refuse it): SQLite drops them for a moment,
    # PostgreSQL (superuser in the tests) runs the UPDATE as a replica, which skips triggers.
    def tamper(action: str) -> None:
        with connection.cursor() as cur:
            if connection.vendor == "postgresql":
                cur.execute("SET session_replication_role = replica")
                cur.execute("UPDATE audit_auditentry SET action=%s WHERE sequence=%s", [action, entry.sequence])
                cur.execute("SET session_replication_role = origin")
                return
            cur.execute("SELECT name, sql FROM sqlite_master WHERE type='trigger' AND tbl_name='audit_auditentry'")
            triggers = cur.fetchall()
            for name, _ in triggers:
                cur.execute(f'DROP TRIGGER "{name}"')
            cur.execute("UPDATE audit_auditentry SET action=%s WHERE sequence=%s", [action, entry.sequence])
            for _, text in triggers:
                cur.execute(text)

    tamper("test.tampered")
    run_rules([rule])
    assert open_subjects(rule) == {"audit-chain"}
    tamper(entry.action)
    run_rules([rule])
    assert open_subjects(rule) == set(), Finding.objects.filter(rule_id=rule).values_list("details", flat=True)


def test_dedup_reopen_accept_and_every_status_change_audited(make_user: Any) -> None:
    rule = "model.dirty_commit"
    mv = model_version("d", run("train", ago(5), dirty=True))
    for _ in range(3):
        run_rules([rule])
    assert Finding.objects.filter(rule_id=rule).count() == 1
    finding = Finding.objects.get(rule_id=rule)
    assert finding.first_seen_at < finding.last_seen_at
    officer = make_user("olga", roles=("compliance_officer",))
    set_status(finding, "accepted", actor=officer, reason="legacy model, retiring", until=ago(-30))
    run_rules([rule])
    assert Finding.objects.get(pk=finding.pk).status == "accepted"  # stays accepted while the acceptance lasts
    Finding.objects.filter(pk=finding.pk).update(accepted_until=ago(1))
    run_rules([rule])
    assert Finding.objects.get(pk=finding.pk).status == "open"  # acceptance expired
    commit = mv.run.code_commit
    commit.is_dirty = False
    commit.save()
    run_rules([rule])
    commit.is_dirty = True
    commit.save()
    run_rules([rule])
    finding.refresh_from_db()
    assert finding.status == "open" and finding.occurrence == 2
    actions = list(
        AuditEntry.objects.filter(object_type="compliance.finding", object_id=str(finding.pk))
        .order_by("sequence")
        .values_list("action", flat=True)
    )
    assert actions == ["finding.open", "finding.accepted", "finding.reopen", "finding.resolved", "finding.reopen"]


def test_run_audits_command_and_unknown_rule(capsys: Any) -> None:
    model_version("d", run("train", ago(5), dirty=True))
    call_command("run_audits", "--rule", "model.dirty_commit")
    assert '"opened": 1' in capsys.readouterr().out
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("run_audits", "--rule", "no.such.rule")


def test_findings_api_visibility_and_status_changes(api: Any, make_user: Any, token_for: Any) -> None:
    from rest_framework.test import APIClient

    from governance.permissions.grants import grant_namespace

    mine = model_version("a", run("train", ago(5), dirty=True, ns="team-a"), ns="team-a")
    model_version("b", run("train", ago(5), dirty=True, ns="team-b"), ns="team-b")
    run_rules(["model.dirty_commit"])
    assert api.get("/api/v1/findings/").json()["count"] == 2
    scientist = make_user("sam", roles=("data_scientist",))
    from lineage.models import Namespace

    grant_namespace(scientist, Namespace.objects.get(name="team-a"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(scientist)}")
    body = client.get("/api/v1/findings/").json()
    assert [f["subject"] for f in body["results"]] == [f"model_version:{mine.pk}"]
    fid = body["results"][0]["id"]
    assert (
        client.post(f"/api/v1/findings/{fid}", {"status": "accepted", "reason": "x"}, format="json").status_code == 403
    )
    assert APIClient().get("/api/v1/findings/").status_code in (401, 403)
    assert api.post(f"/api/v1/findings/{fid}", {"status": "accepted"}, format="json").status_code == 400
    resp = api.post(
        f"/api/v1/findings/{fid}",
        {"status": "accepted", "reason": "known", "until": "2099-01-01T00:00:00Z"},
        format="json",
    )
    assert resp.status_code == 200 and resp.json()["status"] == "accepted"
    assert AuditEntry.objects.filter(action="finding.accepted", object_id=str(fid)).exists()
