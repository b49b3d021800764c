"""Notifications of new findings: e-mail (Django's e-mail backend) and signed webhooks.

One message per new finding occurrence and endpoint (a unique outbox row), queued in the finding's
transaction and sent by the ``deliver`` task after commit, retried with exponential backoff.

Webhook signature (documented in README.md)::

    X-Custody-Timestamp: <unix seconds>
    X-Custody-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body bytes>")>

A receiver recomputes the HMAC over the timestamp, a dot and the exact body, compares in constant
time, and rejects timestamps more than 5 minutes from its clock (replay)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.request
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from governance.compliance.models import Finding, Notification, NotificationEndpoint, severity_rank

SIGNATURE_HEADER = "X-Custody-Signature"
TIMESTAMP_HEADER = "X-Custody-Timestamp"
TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: str, signature: str, body: bytes, now: float | None = None) -> bool:
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((now or time.time()) - ts) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def endpoints_for(finding: Finding) -> list[NotificationEndpoint]:
    rows = NotificationEndpoint.objects.filter(active=True).filter(
        Q(namespace__isnull=True) | Q(namespace_id=finding.namespace_id)
    )
    rank = severity_rank(finding.severity)
    return [e for e in rows if severity_rank(e.min_severity) <= rank]


def queue_for(finding: Finding) -> list[int]:
    """Inside the finding's transaction: one outbox row per endpoint, sent after commit."""
    from governance.compliance.tasks import deliver

    ids = []
    for endpoint in endpoints_for(finding):
        note, created = Notification.objects.get_or_create(
            finding=finding,
            endpoint=endpoint,
            occurrence=finding.occurrence,
            defaults={"created_at": timezone.now()},
        )
        if created:
            ids.append(note.pk)
            deliver.delay_on_commit(note.pk)
    return ids


def payload(finding: Finding) -> dict[str, Any]:
    return {
        "type": "custody.finding",
        "id": finding.pk,
        "rule": finding.rule_id,
        "subject": finding.subject,
        "severity": finding.severity,
        "status": finding.status,
        "title": finding.title,
        "namespace": finding.namespace.name if finding.namespace else None,
        "first_seen_at": finding.first_seen_at.isoformat(),
        "occurrence": finding.occurrence,
        "details": finding.details,
    }


def deliver_one(notification_id: int) -> str:
    with transaction.atomic():
        note = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("endpoint", "finding__namespace")
            .get(pk=notification_id)
        )
        if note.state == Notification.State.SENT:
            return "already sent"
        Notification.objects.filter(pk=note.pk).update(attempts=note.attempts + 1)
    endpoint, finding = note.endpoint, note.finding
    try:
        if endpoint.kind == NotificationEndpoint.Kind.EMAIL:
            send_mail(
                subject=f"[Custody {finding.severity}] {finding.title}"[:250],
                message=json.dumps(payload(finding), indent=2, sort_keys=True),
                from_email=getattr(settings, "DEFAULT_FROM_EMAIL", None),
                recipient_list=[a.strip() for a in endpoint.target.split(",") if a.strip()],
            )
        else:
            body = json.dumps(payload(finding), sort_keys=True, separators=(",", ":")).encode()
            ts = int(time.time())
            request = urllib.request.Request(
                endpoint.target,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    TIMESTAMP_HEADER: str(ts),
                    SIGNATURE_HEADER: sign(endpoint.secret, ts, body),
                    "X-Custody-Delivery": str(note.pk),
                },
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status >= 300:
                    raise OSError(f"HTTP {response.status}")
    except Exception as exc:
        Notification.objects.filter(pk=note.pk).update(state=Notification.State.FAILED, last_error=str(exc)[:2000])
        raise
    Notification.objects.filter(pk=note.pk).update(state=Notification.State.SENT, sent_at=timezone.now(), last_error="")
    return "sent"
