"""Runs audit rules and keeps findings: deduplicated by (rule, subject); a finding no longer hit
resolves; a resolved one hit again re-opens (a new occurrence, notified again); an accepted one stays
accepted until its expiry. Every status change is recorded in the audit trail."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from governance.audit.services import record, snapshot
from governance.compliance.models import Finding
from governance.compliance.rules import Context, Hit, Rule, all_rules

logger = logging.getLogger(__name__)
ACTOR = "celery:audit-rules"
AUDITED_FIELDS = [
    "rule_id",
    "subject",
    "severity",
    "status",
    "namespace",
    "accepted_reason",
    "accepted_until",
    "occurrence",
]


@dataclass
class RunReport:
    rules: list[str] = field(default_factory=list)
    opened: int = 0
    reopened: int = 0
    resolved: int = 0
    seen: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _snap(finding: Finding) -> dict[str, Any]:
    return snapshot(finding, fields=AUDITED_FIELDS)


def set_status(
    finding: Finding,
    status: str,
    *,
    actor: Any = None,
    actor_name: str | None = ACTOR,
    reason: str = "",
    until: Any = None,
) -> Finding:
    """Change a finding's status (audited). ``accepted`` needs a reason."""
    now = timezone.now()
    with transaction.atomic():
        finding = Finding.objects.select_for_update().get(pk=finding.pk)
        before = _snap(finding)
        finding.status = status
        if status == Finding.Status.RESOLVED:
            finding.resolved_at = now
        if status == Finding.Status.ACCEPTED:
            if not reason:
                raise ValueError("accepting a finding needs a reason")
            finding.accepted_reason = reason
            finding.accepted_until = until
            finding.accepted_by = actor
        if status == Finding.Status.OPEN:
            finding.resolved_at = None
        finding.save()
        kwargs: dict[str, Any] = {"actor": actor} if actor is not None else {"actor": None, "actor_name": actor_name}
        record(
            f"finding.{status}",
            obj=finding,
            before=before,
            after=_snap(finding),
            extra={"rule": finding.rule_id, "reason": reason[:500]},
            **kwargs,
        )
    return finding


def _apply(rule: Rule, hits: Iterable[Hit], now: Any, report: RunReport) -> None:
    from governance.compliance.notify import queue_for

    by_subject: dict[str, Hit] = {}
    for hit in hits:
        by_subject.setdefault(hit.subject, hit)
    existing = {f.subject: f for f in Finding.objects.filter(rule_id=rule.id)}
    for subject, hit in by_subject.items():
        report.seen += 1
        severity = hit.severity or rule.severity
        with transaction.atomic():
            finding = existing.get(subject)
            if finding is None:
                finding = Finding.objects.create(
                    rule_id=rule.id,
                    subject=subject,
                    severity=severity,
                    namespace_id=hit.namespace_id,
                    title=hit.title[:1024],
                    details=hit.details,
                    first_seen_at=now,
                    last_seen_at=now,
                )
                record(
                    "finding.open",
                    obj=finding,
                    after=_snap(finding),
                    extra={"rule": rule.id},
                    actor=None,
                    actor_name=ACTOR,
                )
                queue_for(finding)
                report.opened += 1
                continue
            finding.last_seen_at = now
            finding.title, finding.details, finding.severity = hit.title[:1024], hit.details, severity
            finding.namespace_id = hit.namespace_id
            expired = (
                finding.status == Finding.Status.ACCEPTED
                and finding.accepted_until is not None
                and finding.accepted_until <= now
            )
            if finding.status == Finding.Status.RESOLVED or expired:
                before = _snap(finding)
                if finding.status == Finding.Status.RESOLVED:
                    finding.occurrence += 1
                finding.status, finding.resolved_at = Finding.Status.OPEN, None
                finding.save()
                record(
                    "finding.reopen",
                    obj=finding,
                    before=before,
                    after=_snap(finding),
                    extra={"rule": rule.id, "why": "acceptance expired" if expired else "hit again"},
                    actor=None,
                    actor_name=ACTOR,
                )
                queue_for(finding)
                report.reopened += 1
            else:
                finding.save(update_fields=["last_seen_at", "title", "details", "severity", "namespace"])
    for subject, finding in existing.items():
        if subject in by_subject or finding.status == Finding.Status.RESOLVED:
            continue
        set_status(finding, Finding.Status.RESOLVED, reason="rule no longer fires")
        report.resolved += 1


def run_rules(rule_ids: list[str] | None = None) -> RunReport:
    rules = all_rules()
    if rule_ids:
        unknown = set(rule_ids) - set(rules)
        if unknown:
            raise KeyError(f"unknown rule(s): {', '.join(sorted(unknown))}")
        rules = {rid: rules[rid] for rid in rule_ids}
    report = RunReport()
    context = Context(now=timezone.now())
    for rule in rules.values():
        report.rules.append(rule.id)
        try:
            hits = list(rule.evaluate(context))
        except Exception as exc:  # one broken rule must not hide the others' findings (nor resolve its own)
            logger.exception("audit rule %s failed", rule.id)
            report.errors[rule.id] = f"{type(exc).__name__}: {exc}"
            continue
        _apply(rule, hits, context.now, report)
    return report
