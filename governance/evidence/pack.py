"""The evidence pack of one model version (JSON form; :mod:`governance.evidence.prov` and the HTML
template render the same dictionary).

Sections:

- ``model``: the registered model and the version (artifact URI and sha256, framework, params,
  metrics, environment digest).
- ``lineage``: the version's lineage closure as the promotion layer pins it
  (:func:`governance.promotions.evidence.closure`, reused, with its ``evidence_digest``), expanded
  with the details a reader needs: every run of the closure (job, state, times, facets, code
  commit), every dataset version consumed transitively (schema fields and digest, producing run,
  the schema changes leading to it).
- ``promotions``: each request with the policy snapshot it was judged under, its decisions
  (who, when, role, reason), the quorum outcome and the separation-of-duties outcome.
- ``deployments``: where the version went, when, by whom, what it replaced, rollbacks.
- ``findings``: compliance findings about the version, its deployments and its decisions.
- ``audit``: the audit entries about all of the above, in full with ``prev_hash`` and ``hash``;
  ``links`` (sequence, body digest, hash) for the other entries up to the first signed checkpoint
  at or after the newest of them; that checkpoint and the public key that signed it. With these a
  reader recomputes the chain from ``start.prev_hash`` to the checkpoint's head hash and checks the
  Ed25519 signature, offline. Entries about runs, dataset versions and ingested events in
  namespaces the reader cannot see are given as links too (``withheld`` counts them).
- ``digest``: SHA-256 of the canonical JSON of the pack without the ``digest`` key
  (:data:`DIGEST_METHOD`).

Parts of the closure in namespaces the reader cannot see are replaced by ``{"redacted": true}``
placeholders (the closure's digest stays, so it can still be compared with the promotions').
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from governance.audit import chain, signing
from governance.audit.export import COLUMNS, entry_dict
from governance.audit.models import AuditCheckpoint, AuditEntry
from governance.compliance.models import Finding
from governance.permissions import access
from governance.promotions import evidence as promotion_evidence
from governance.promotions.api import policy_json
from governance.promotions.models import Decision, Deployment, PromotionRequest
from governance.registry.apiutil import redact_evidence
from governance.registry.models import ModelVersion
from lineage.models import CodeCommit, DatasetVersion, Namespace, RawEvent, Run, SchemaChange

FORMAT = "custody.evidence-pack"
FORMAT_VERSION = 1
DIGEST_METHOD = (
    "SHA-256 (hex) of the UTF-8 bytes of json.dumps(pack without its 'digest' key, sort_keys=True, "
    "separators=(',', ':'), ensure_ascii=False): canonical JSON, sorted keys, no whitespace."
)
AUDIT_METHOD = (
    "Walk entries and links in sequence order from start.prev_hash: body = SHA-256 of the "
    "canonical digest form of an entry (governance/audit/README.md) or the link's body; hash = "
    "SHA-256(prev_hash + body); each must equal the record's hash, and the hash at the checkpoint's "
    "sequence must equal its head hash. Then check the Ed25519 signature of the checkpoint message "
    '{"hash","key_id","sequence","time","type":"custody.audit.checkpoint","v":1} (canonical JSON) '
    "with the public key."
)
#: Entries between the first relevant audit entry and the checkpoint given as links at most.
MAX_LINKS = 100_000
#: Actions left out of the pack (reads of packs are not facts about the model).
EXCLUDED_ACTIONS = ("evidence.read",)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def pack_digest(pack: dict[str, Any]) -> str:
    body = {k: v for k, v in pack.items() if k != "digest"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return chain.format_time(value)


def _jsonable(value: Any) -> Any:
    """Plain JSON (facets may hold anything JSON can)."""
    return json.loads(json.dumps(value, default=str))


# --- lineage ---------------------------------------------------------------------------------------


def _commit_json(commit: CodeCommit | None) -> dict[str, Any] | None:
    if commit is None:
        return None
    return {
        "repo_url": commit.repo_url,
        "sha": commit.sha,
        "vcs_type": commit.vcs_type,
        "branch": commit.branch,
        "tag": commit.tag,
        "path": commit.path,
        "url": commit.url,
        "author": commit.author,
        "dirty": commit.is_dirty,
        "diff_digest": commit.diff_digest or None,
        "first_seen_at": ts(commit.first_seen_at),
    }


def _run_json(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "job": {"namespace": run.job.namespace.name, "name": run.job.name},
        "state": run.state,
        "started_at": ts(run.started_at),
        "ended_at": ts(run.ended_at),
        "first_event_time": ts(run.first_event_time),
        "last_event_time": ts(run.last_event_time),
        "parent_run_id": run.parent_run_id or None,
        "code_commit": _commit_json(run.code_commit),
        "facets": _jsonable(run.facets or {}),
    }


def _lineage(user: Any, version: ModelVersion) -> tuple[dict[str, Any], dict[str, Any]]:
    """The lineage section, and the pks of what it covers (for the audit query)."""
    closure = promotion_evidence.closure(version)
    covered: dict[str, Any] = {
        "runs": set(closure.run_pks),
        "run_ids": set(),
        "versions": set(),
        "hidden_runs": set(),
        "hidden_run_ids": set(),
        "hidden_versions": set(),
    }
    run_ids = {r["run_id"] for r in closure.facts["runs"]}
    runs = list(
        Run.objects.filter(pk__in=closure.run_pks)
        .select_related("job__namespace", "code_commit")
        .order_by("first_event_time", "pk")
    )
    covered["run_ids"] = {r.run_id for r in runs}
    visible_runs: list[dict[str, Any]] = []
    for r in runs:
        if access.sees_namespace(user, r.job.namespace_id):
            visible_runs.append(_run_json(r))
        else:
            visible_runs.append({"redacted": True})
            covered["hidden_runs"].add(r.pk)
            covered["hidden_run_ids"].add(r.run_id)
    consumed = {(i["dataset"]["namespace"], i["dataset"]["name"], i["version"]) for i in closure.facts["inputs"]}
    consumers: dict[tuple[str, str, str | None], list[str]] = {}
    resolutions: dict[tuple[str, str, str | None], str] = {}
    for item in closure.facts["inputs"]:
        key = (item["dataset"]["namespace"], item["dataset"]["name"], item["version"])
        if item["run_id"] not in covered["hidden_run_ids"]:
            consumers.setdefault(key, []).append(item["run_id"])
        resolutions[key] = item.get("resolution") or "declared"
    condition = Q(pk__in=[])
    for ns, name, label in consumed:
        if label is not None:
            condition |= Q(dataset__namespace__name=ns, dataset__name=name, version=label)
    dataset_versions: list[dict[str, Any]] = []
    rows = list(
        DatasetVersion.objects.filter(condition)
        .select_related("dataset__namespace", "run__job")
        .order_by("dataset__namespace__name", "dataset__name", "created_at", "pk")
    )
    changes_of: dict[int, list[SchemaChange]] = {}
    for change in (
        SchemaChange.objects.filter(to_version__in=[dv.pk for dv in rows])
        .select_related("from_version")
        .order_by("created_at", "pk")
    ):
        changes_of.setdefault(change.to_version_id, []).append(change)
    for dv in rows:
        covered["versions"].add(dv.pk)
        if not access.sees_namespace(user, dv.dataset.namespace_id):
            dataset_versions.append({"redacted": True})
            covered["hidden_versions"].add(dv.pk)
            continue
        changes = changes_of.get(dv.pk, [])
        key = (dv.dataset.namespace.name, dv.dataset.name, dv.version)
        dataset_versions.append(
            {
                "dataset": {"namespace": dv.dataset.namespace.name, "name": dv.dataset.name},
                "version": dv.version,
                "uuid": str(dv.uuid),
                "created_at": ts(dv.created_at),
                "resolution": resolutions.get(key, "declared"),
                "schema_digest": dv.schema_digest or None,
                "fields": _jsonable(dv.fields or []),
                "producing_run": dv.run.run_id if dv.run is not None and dv.run.run_id in run_ids else None,
                "producing_run_outside_closure": dv.run.run_id
                if dv.run is not None
                and dv.run.run_id not in run_ids
                and access.sees_namespace(user, dv.run.job.namespace_id)
                else None,
                "consumed_by": sorted(set(consumers.get(key, []))),
                "schema_changes": [
                    {
                        "from_version": c.from_version.version,
                        "to_version": dv.version,
                        "level": c.level,
                        "changes": _jsonable(c.changes),
                        "explanation": c.explanation,
                        "created_at": ts(c.created_at),
                    }
                    for c in changes
                ],
            }
        )
    namespace_ids = dict(Namespace.objects.filter(name__in=sorted({k[0] for k in consumed})).values_list("name", "pk"))
    for ns, name, _ in sorted(k for k in consumed if k[2] is None):
        if not access.sees_namespace(user, namespace_ids.get(ns)) or not consumers.get((ns, name, None)):
            dataset_versions.append({"redacted": True})
            continue
        dataset_versions.append(
            {
                "dataset": {"namespace": ns, "name": name},
                "version": None,
                "resolution": "unknown",
                "note": "consumed without a version the producer declared or Custody could infer",
                "uuid": None,
                "created_at": None,
                "schema_digest": None,
                "fields": [],
                "producing_run": None,
                "producing_run_outside_closure": None,
                "schema_changes": [],
                "consumed_by": sorted(set(consumers.get((ns, name, None), []))),
            }
        )
    producing = version.run
    section = {
        "evidence_digest": closure.digest,
        "evidence_digest_method": "governance.promotions.evidence.closure: SHA-256 of the canonical JSON of "
        "'closure' without schema_changes and digest (the digest promotion requests pin)",
        "closure": redact_evidence(user, closure.as_json()),
        "truncated": closure.truncated,
        "producing_run": None,
        "code_commit": None,
        "environment_digest": version.environment_digest or None,
        "artifact": {
            "uri": version.artifact_uri or None,
            "sha256": version.artifact_digest or None,
            "size": version.artifact_size,
        },
        "runs": visible_runs,
        "dataset_versions": dataset_versions,
    }
    if producing is not None:
        producing = Run.objects.select_related("job__namespace", "code_commit").get(pk=producing.pk)
        if access.sees_namespace(user, producing.job.namespace_id):
            section["producing_run"] = _run_json(producing)
            section["code_commit"] = _commit_json(producing.code_commit)
        else:
            section["producing_run"] = {"redacted": True}
    return section, covered


# --- promotions ------------------------------------------------------------------------------------


def _usernames(ids: set[int]) -> list[str]:
    users = get_user_model()._default_manager
    return sorted(users.filter(pk__in=ids).values_list("username", flat=True))


def _promotions(version: ModelVersion) -> tuple[list[dict[str, Any]], list[PromotionRequest], list[Decision]]:
    requests = list(
        PromotionRequest.objects.filter(model_version=version)
        .select_related("policy__namespace", "policy__model__namespace")
        .order_by("created_at", "pk")
    )
    run_authors = promotion_evidence.run_author_ids(version)
    commit_authors = promotion_evidence.commit_author_ids(version)
    out: list[dict[str, Any]] = []
    all_decisions: list[Decision] = []
    for req in requests:
        decisions = list(Decision.objects.filter(request=req).order_by("created_at", "pk"))
        all_decisions.extend(decisions)
        policy = req.policy
        excluded = set(run_authors) | set(commit_authors)
        if req.requested_by_id is not None:
            excluded.add(req.requested_by_id)
        approvals = [d for d in decisions if d.kind == "approve"]
        live = [d for d in approvals if not d.stale]
        violators = sorted({d.user_name for d in approvals if d.user_id is not None and d.user_id in excluded})
        if not policy.separation_of_duties:
            sod_outcome = "not_required"
        elif violators:
            sod_outcome = "violated"
        else:
            sod_outcome = "respected"
        out.append(
            {
                "id": req.pk,
                "environment": req.environment,
                "state": req.effective_state(timezone.now()),
                "stored_state": req.state,
                "state_reason": req.state_reason,
                "requested_by": req.requested_by_name or None,
                "reason": req.reason,
                "created_at": ts(req.created_at),
                "decided_at": ts(req.decided_at),
                "approved_at": ts(req.approved_at),
                "expires_at": ts(req.expires_at),
                "evidence_digest": req.evidence_digest,
                "checks": _jsonable(req.checks),
                "break_glass": req.break_glass,
                "flagged_for_review": req.flagged_for_review,
                "policy": _jsonable(policy_json(policy)),
                "decisions": [
                    {
                        "user": d.user_name,
                        "decision": d.kind,
                        "role": d.role,
                        "reason": d.reason,
                        "at": ts(d.created_at),
                        "evidence_digest": d.evidence_digest,
                        "policy_version": d.policy_version,
                        "stale": d.stale,
                    }
                    for d in decisions
                ],
                "quorum": {
                    "required": policy.approvals_required,
                    "approvals": len(live),
                    "stale_approvals": len(approvals) - len(live),
                    "rejections": sum(1 for d in decisions if d.kind == "reject"),
                    "met": len(live) >= policy.approvals_required,
                },
                "separation_of_duties": {
                    "required": policy.separation_of_duties,
                    "excluded_approvers": {
                        "requester": req.requested_by_name or None,
                        "run_authors": _usernames(run_authors),
                        "commit_authors": _usernames(commit_authors),
                    },
                    "violations": violators,
                    "outcome": sod_outcome,
                },
            }
        )
    return out, requests, all_decisions


def _deployments(version: ModelVersion) -> tuple[list[dict[str, Any]], list[Deployment]]:
    rows = list(
        Deployment.objects.filter(Q(model_version=version) | Q(rollback_of__model_version=version))
        .select_related("model_version__model", "rollback_of__model_version", "replaces__model_version")
        .order_by("deployed_at", "pk")
    )
    out = []
    for d in rows:
        out.append(
            {
                "id": d.pk,
                "version": d.model_version.version,
                "environment": d.environment,
                "target": d.target,
                "deployed_at": ts(d.deployed_at),
                "recorded_at": ts(d.recorded_at),
                "deployed_by": d.deployed_by_name or None,
                "promotion_id": d.promotion_id,
                "replaces": {"id": d.replaces_id, "version": d.replaces.model_version.version}
                if d.replaces is not None
                else None,
                "rollback_of": {"id": d.rollback_of_id, "version": d.rollback_of.model_version.version}
                if d.rollback_of is not None
                else None,
                "is_rollback": d.rollback_of_id is not None,
                "approval_required": d.approval_required,
                "break_glass": d.break_glass,
                "flagged_for_review": d.flagged_for_review,
                "reason": d.reason,
                "metadata": _jsonable(d.metadata),
            }
        )
    return out, rows


def _findings(version: ModelVersion, deployments: list[Deployment], decisions: list[Decision]) -> list[dict[str, Any]]:
    subjects = {f"model_version:{version.pk}"}
    subjects.update(f"deployment:{d.pk}" for d in deployments)
    subjects.update(f"decision:{d.pk}" for d in decisions)
    rows = Finding.objects.filter(Q(subject__in=subjects) | Q(subject__startswith=f"model_version:{version.pk}:"))
    return [
        {
            "id": f.pk,
            "rule": f.rule_id,
            "subject": f.subject,
            "severity": f.severity,
            "title": f.title,
            "status": f.status,
            "details": _jsonable(f.details),
            "first_seen_at": ts(f.first_seen_at),
            "last_seen_at": ts(f.last_seen_at),
            "resolved_at": ts(f.resolved_at),
            "accepted_reason": f.accepted_reason,
        }
        for f in rows.order_by("first_seen_at", "pk")
    ]


# --- audit -----------------------------------------------------------------------------------------


def _ingest_event_pks(
    run_ids: set[str], hidden_run_ids: set[str]
) -> tuple[set[int], set[int], datetime | None, datetime | None]:
    pks: set[int] = set()
    hidden: set[int] = set()
    low = high = None
    rows = RawEvent.objects.filter(run_id__in=sorted(run_ids)).values_list("pk", "run_id", "received_at")
    for pk, run_id, received in rows:
        pks.add(pk)
        if run_id in hidden_run_ids:
            hidden.add(pk)
        low = received if low is None or received < low else low
        high = received if high is None or received > high else high
    return pks, hidden, low, high


def _audit_query(
    version: ModelVersion,
    requests: list[PromotionRequest],
    decisions: list[Decision],
    deployments: list[Deployment],
    covered: dict[str, Any],
) -> tuple[list[int], set[int]]:
    """Sequences of the audit entries about the pack's objects, and those of them about objects the
    reader cannot see (given as links only, so the chain still verifies without disclosing them)."""
    objects: dict[str, set[str]] = {
        "registry.modelversion": {str(version.pk)},
        "registry.registeredmodel": {str(version.model_id)},
        "promotions.promotionrequest": {str(r.pk) for r in requests},
        "promotions.decision": {str(d.pk) for d in decisions},
        "promotions.deployment": {str(d.pk) for d in deployments},
        "promotions.promotionpolicy": {str(r.policy_id) for r in requests},
        "lineage.run": {str(pk) for pk in covered["runs"]},
        "lineage.datasetversion": {str(pk) for pk in covered["versions"]},
    }
    event_pks, hidden_events, low, high = _ingest_event_pks(covered["run_ids"], covered["hidden_run_ids"])
    objects["lineage.rawevent"] = {str(pk) for pk in event_pks}
    hidden_objects = {
        "lineage.run": {str(pk) for pk in covered["hidden_runs"]},
        "lineage.datasetversion": {str(pk) for pk in covered["hidden_versions"]},
        "lineage.rawevent": {str(pk) for pk in hidden_events},
    }
    condition = Q(pk__in=[])
    for kind, ids in objects.items():
        if ids:
            condition |= Q(object_type=kind, object_id__in=sorted(ids))
    base = AuditEntry.objects.exclude(action__in=EXCLUDED_ACTIONS)
    sequences: set[int] = set()
    withheld: set[int] = set()
    for sequence, kind, object_id in base.filter(condition).values_list("sequence", "object_type", "object_id"):
        sequences.add(sequence)
        if object_id in hidden_objects.get(kind, ()):
            withheld.add(sequence)
    if event_pks and low is not None and high is not None:
        # Batches are recorded as one entry "first..last" with every event's pk in extra.events.
        window = base.filter(
            object_type="lineage.rawevent",
            object_id__contains="..",
            timestamp__gte=low - timedelta(minutes=5),
            timestamp__lte=high + timedelta(minutes=5),
        )
        for sequence, extra in window.values_list("sequence", "extra"):
            data: Any = extra
            events = (data.get("events") or []) if isinstance(data, dict) else []
            pks = {e[0] for e in events if isinstance(e, list) and e}
            if pks & event_pks:
                sequences.add(sequence)
                if pks & hidden_events:
                    withheld.add(sequence)
    return sorted(sequences), withheld


def _audit(sequences: list[int], withheld: set[int]) -> dict[str, Any]:
    section: dict[str, Any] = {
        "entries": [],
        "links": [],
        "links_truncated": False,
        "withheld": len(withheld),
        "checkpoint": None,
        "public_key": None,
        "verification_method": AUDIT_METHOD,
    }
    if not sequences:
        return section
    first = AuditEntry.objects.filter(sequence=sequences[0]).values_list("prev_hash", flat=True).first()
    section["start"] = {"sequence": sequences[0], "prev_hash": first}
    shown = [s for s in sequences if s not in withheld]
    wanted = set(shown)
    section["entries"] = [entry_dict(e) for e in AuditEntry.objects.filter(sequence__in=shown).order_by("sequence")]
    checkpoint = AuditCheckpoint.objects.filter(sequence__gte=sequences[-1]).order_by("sequence", "id").first()
    if checkpoint is None:
        section["checkpoint_pending"] = (
            "No signed checkpoint covers the newest entry yet; the next scheduled checkpoint will "
            "(fetch the pack again after it)."
        )
        end = sequences[-1]
    else:
        section["checkpoint"] = signing.checkpoint_record(checkpoint)
        key = signing.trusted_public_keys().get(checkpoint.key_id)
        section["public_key"] = key.pem if key is not None else None
        end = checkpoint.sequence
    rows = (
        AuditEntry.objects.filter(sequence__gte=sequences[0], sequence__lte=end)
        .exclude(sequence__in=shown)
        .order_by("sequence")
    )
    if rows.count() > MAX_LINKS:
        section["links_truncated"] = True
        section["links_note"] = "Too many entries in between: verify with GET /api/v1/audit/?format=jsonl instead."
        return section
    row_body = chain.make_row_hasher()
    from django.db.models import TextField
    from django.db.models.functions import Cast

    annotated = rows.annotate(
        before_t=Cast("before", TextField()),
        after_t=Cast("after", TextField()),
        extra_t=Cast("extra", TextField()),
        redacted_t=Cast("redacted", TextField()),
    ).values_list(*COLUMNS)
    links = []
    for row in annotated.iterator(chunk_size=2000):
        if row[0] in wanted:
            continue
        links.append({"sequence": row[0], "body": row_body(row), "hash": row[15]})
    section["links"] = links
    return section


# --- the pack --------------------------------------------------------------------------------------


def build(user: Any, version: ModelVersion) -> dict[str, Any]:
    version = ModelVersion.objects.select_related("model__namespace", "run").get(pk=version.pk)
    model = version.model
    lineage, covered = _lineage(user, version)
    promotions, requests, decisions = _promotions(version)
    deployments, deployment_rows = _deployments(version)
    findings = _findings(version, deployment_rows, decisions)
    sequences, withheld = _audit_query(version, requests, decisions, deployment_rows, covered)
    pack: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generated_at": ts(timezone.now()),
        "generated_by": user.get_username(),
        "model": {
            "namespace": model.namespace.name,
            "name": model.name,
            "description": model.description,
            "created_at": ts(model.created_at),
            "version": {
                "version": version.version,
                "source": version.source,
                "artifact_uri": version.artifact_uri or None,
                "artifact_sha256": version.artifact_digest or None,
                "artifact_size": version.artifact_size,
                "framework": version.framework,
                "framework_version": version.framework_version,
                "model_class": version.model_class,
                "hyperparameters": _jsonable(version.hyperparameters),
                "params": _jsonable(version.params),
                "metrics": _jsonable(version.metrics),
                "environment_digest": version.environment_digest or None,
                "description": version.description,
                "created_at": ts(version.created_at),
            },
        },
        "lineage": lineage,
        "promotions": promotions,
        "deployments": deployments,
        "findings": findings,
        "audit": _audit(sequences, withheld),
    }
    pack["digest"] = {"algorithm": "sha256", "value": pack_digest(pack), "method": DIGEST_METHOD}
    return pack
