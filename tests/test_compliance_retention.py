"""Retention: a seeded history where the production model's training data is older than the policy.
The dry run lists exactly the deletable rows, apply removes exactly those, the production model's
evidence (lineage closure) is unchanged, a legal hold blocks deletion, the audit chain verifies."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from governance.audit.models import AuditEntry
from governance.audit.verify import verify_chain
from governance.compliance.models import Finding, LegalHold, RetentionPolicy
from governance.compliance.retention import execute, plan
from lineage.models import DatasetVersion, RawEvent, Run, RunInput, RunOutput
from tests.test_compliance_graph import ago, approve, dataset, deploy, model_version, namespace, run

pytestmark = pytest.mark.django_db


def raw_event(r: Any, ns: str = "ns") -> Any:
    return RawEvent.objects.create(
        digest=hashlib.sha256(r.run_id.encode()).hexdigest(),
        kind="RunEvent",
        event_type="COMPLETE",
        event_time=r.first_event_time,
        received_at=r.first_event_time,
        run_id=r.run_id,
        job_namespace=ns,
        job_name=r.job.name,
        size_bytes=10,
        payload={"run": r.run_id},
    )


def seed(make_user: Any) -> dict[str, Any]:
    approver = make_user("ann", roles=("approver",))
    src, feats, scratch, junk = dataset("src"), dataset("features"), dataset("scratch"), dataset("junk")
    # Production lineage, all 200 days old: load -> featurize -> train -> model (deployed 150 days ago).
    load = run("load", ago(200), outputs=[src])
    feat = run("featurize", ago(199), inputs=[load.new_versions[0]], outputs=[feats])
    train = run("train", ago(198), inputs=[feat.new_versions[0]])
    mv = model_version("churn", train)
    deploy(mv, approve(mv, approver, at=ago(151)), at=ago(150))
    # Old, unrelated history: goes. (scratch's first version is old; its current version is recent.)
    old1 = run("scratch", ago(180), outputs=[scratch])
    old2 = run("scratch-reader", ago(179), inputs=[old1.new_versions[0]], outputs=[junk])
    recent = run("scratch", ago(1), outputs=[scratch, junk])
    # A later version of src produced after the deployment, also old: not in the lineage -> goes.
    later_src = run("load", ago(120), outputs=[src])
    run("load", ago(2), outputs=[src])  # src's current version (young)
    for r in (load, feat, train, old1, old2, recent, later_src):
        raw_event(r)
    return {
        "mv": mv,
        "prod_runs": {load.pk, feat.pk, train.pk},
        "old_runs": {old1.pk, old2.pk, later_src.pk},
        "old_versions": {old1.new_versions[0].pk, old2.new_versions[0].pk, later_src.new_versions[0].pk},
        "old_events": {r.run_id for r in (old1, old2, later_src)},
        "scratch": scratch,
        "recent": recent,
    }


def policies(days: int = 30) -> None:
    for kind in RetentionPolicy.Kind.values:
        RetentionPolicy.objects.create(kind=kind, keep_days=days)


def evidence(mv: Any) -> str:
    from governance.promotions.evidence import closure

    mv.refresh_from_db()
    return closure(mv).digest


def test_dry_run_lists_exactly_the_deletable_rows_and_apply_removes_exactly_those(make_user: Any, capsys: Any) -> None:
    s = seed(make_user)
    policies()
    before = evidence(s["mv"])
    p = plan()
    assert {i.pk for i in p.items["runs"]} == s["old_runs"]
    assert {i.pk for i in p.items["dataset_versions"]} == s["old_versions"]
    assert (
        set(RawEvent.objects.filter(pk__in=[i.pk for i in p.items["raw_events"]]).values_list("run_id", flat=True))
        == s["old_events"]
    )
    assert all("older than 30 days" in i.reason for i in p.items["runs"])
    assert p.kept["runs"]["lineage of a production deployment"] == 3
    call_command("retention", "--dry-run")
    out = capsys.readouterr().out
    for pk in s["old_runs"]:
        assert f"delete runs {pk} " in out
    counts = (Run.objects.count(), DatasetVersion.objects.count(), RawEvent.objects.count())
    assert counts == (Run.objects.count(), DatasetVersion.objects.count(), RawEvent.objects.count())  # nothing gone

    call_command("retention", "--apply", "--summary")
    assert not Run.objects.filter(pk__in=s["old_runs"]).exists()
    assert Run.objects.filter(pk__in=s["prod_runs"] | {s["recent"].pk}).count() == 4
    assert not DatasetVersion.objects.filter(pk__in=s["old_versions"]).exists()
    assert counts[0] - Run.objects.count() == 3 and counts[1] - DatasetVersion.objects.count() == 3
    assert counts[2] - RawEvent.objects.count() == 3
    assert evidence(s["mv"]) == before
    assert verify_chain().ok
    entries = AuditEntry.objects.filter(action="retention.delete")
    digests = [row["sha256"] for e in entries for row in e.extra["rows"]]
    assert len(digests) == 9 and all(len(d) == 64 for d in digests)
    # Idempotent: nothing left to do.
    again = plan()
    assert not again.items["runs"] and not again.items["dataset_versions"] and not again.items["raw_events"]


def test_legal_hold_blocks_deletion(make_user: Any) -> None:
    s = seed(make_user)
    policies()
    LegalHold.objects.create(name="case-17", reason="litigation", dataset=s["scratch"], created_at=timezone.now())
    LegalHold.objects.create(
        name="window", reason="audit", window_start=ago(121), window_end=ago(119), created_at=timezone.now()
    )
    p = plan()
    assert {i.pk for i in p.items["runs"]} == set()  # old1 holds scratch; old2 read held data; later_src in window
    kept = p.kept["runs"]
    assert any(k.startswith("legal hold") for k in kept)
    execute(p)
    assert Run.objects.filter(pk__in=s["old_runs"]).count() == 3
    # Namespace hold on another namespace does not block; on this one it does.
    LegalHold.objects.update(active=False)
    other = namespace("elsewhere")
    LegalHold.objects.create(name="other", reason="x", namespace=other, created_at=timezone.now())
    assert {i.pk for i in plan().items["runs"]} == s["old_runs"]
    LegalHold.objects.create(name="ns", reason="x", namespace=namespace("ns"), created_at=timezone.now())
    assert {i.pk for i in plan().items["runs"]} == set()


def test_model_hold_protects_a_never_deployed_models_lineage(make_user: Any) -> None:
    src = dataset("exp")
    r = run("exp-load", ago(100), outputs=[src])
    train = run("exp-train", ago(99), inputs=[r.new_versions[0]])
    run("exp-load", ago(1), outputs=[src])
    mv = model_version("experiment", train)
    events = {raw_event(r).pk, raw_event(train).pk}
    policies()
    p = plan()
    # The run producing a registered model version, and what it read, stay anyway; its raw events may go.
    assert {i.pk for i in p.items["runs"]} == set()
    assert p.kept["runs"] == {"produced a registered model version": 1, "produced a dataset version that stays": 1}
    assert {i.pk for i in p.items["raw_events"]} == events
    LegalHold.objects.create(name="m", reason="x", model=mv.model, created_at=timezone.now())
    assert {i.pk for i in plan().items["raw_events"]} == set()


def test_findings_deleted_and_audit_entries_redacted_never_deleted(make_user: Any) -> None:
    from governance.audit.services import record

    RetentionPolicy.objects.create(kind="findings", keep_days=30)
    RetentionPolicy.objects.create(kind="audit_entries", keep_days=0)
    old = Finding.objects.create(
        rule_id="r",
        subject="s1",
        severity="low",
        title="t",
        status="resolved",
        first_seen_at=ago(90),
        last_seen_at=ago(80),
        resolved_at=ago(80),
    )
    young = Finding.objects.create(
        rule_id="r",
        subject="s2",
        severity="low",
        title="t",
        status="resolved",
        first_seen_at=ago(9),
        last_seen_at=ago(8),
        resolved_at=ago(8),
    )
    record(
        "test.personal",
        object_type="t",
        object_id="1",
        object_repr="Alice Example",
        actor=None,
        actor_name="alice@example.com",
    )
    n = AuditEntry.objects.count()
    p = plan()
    assert [i.pk for i in p.items["findings"]] == [old.pk]
    execute(p)
    assert not Finding.objects.filter(pk=old.pk).exists() and Finding.objects.filter(pk=young.pk).exists()
    assert AuditEntry.objects.count() > n  # nothing removed, redaction and deletion recorded
    entry = AuditEntry.objects.get(action="test.personal")
    assert entry.actor_name.startswith("sha256:") and entry.object_repr.startswith("sha256:")
    assert verify_chain().ok


def test_nothing_without_policies(make_user: Any) -> None:
    seed(make_user)
    p = plan()
    assert not any(p.items.values())
    assert RunInput.objects.exists() and RunOutput.objects.exists()
