"""Celery tasks of compliance. All are idempotent and acknowledged late (settings: acks_late,
reject_on_worker_lost, prefetch 1); failures retry with exponential backoff, at most 5 times.
Enqueue them with :func:`enqueue` (``delay_on_commit``: nothing is sent for a rolled-back change)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.utils import timezone

from governance.compliance.idempotency import RETRY_KWARGS, idempotent, requeue_stalled
from governance.compliance.models import TaskEffect


@shared_task(name="governance.compliance.tasks.run_audits", **RETRY_KWARGS)
def run_audits(rule: str | None = None) -> dict[str, Any]:
    """Run every audit rule (or one). Idempotent by construction: findings are upserted."""
    from governance.compliance.engine import run_rules

    return run_rules([rule] if rule else None).as_dict()


@shared_task(name="governance.compliance.tasks.retention", **RETRY_KWARGS)
def retention(apply: bool = True) -> dict[str, Any]:
    """Apply retention. Idempotent: a second run finds nothing left to delete."""
    from governance.compliance.retention import execute, plan

    p = plan()
    if apply:
        execute(p, actor_name="celery:retention")
    return p.summary()


@shared_task(name="governance.compliance.tasks.deliver", **RETRY_KWARGS)
def deliver(notification_id: int) -> str:
    """Send one notification; a sent one is not sent again. Raises (and so retries) on failure."""
    from governance.compliance.notify import deliver_one

    return deliver_one(notification_id)


@shared_task(name="governance.compliance.tasks.requeue_stalled", **RETRY_KWARGS)
def requeue_stalled_task(minutes: int = 15) -> int:
    return requeue_stalled(timedelta(minutes=minutes))


@shared_task(name="governance.compliance.tasks.selftest", **RETRY_KWARGS)
@idempotent("governance.compliance.tasks.selftest")
def selftest(key: str, sleep: float = 0.0, sleep_file: str = "") -> dict[str, Any]:
    """Operational self-test (and the redelivery test's subject): writes one TaskEffect row for
    ``key``. With ``sleep_file`` set, sleeps ``sleep`` seconds while that file exists (first attempt)."""
    TaskEffect.objects.create(key=key, created_at=timezone.now())
    if sleep_file:
        import os

        if os.path.exists(sleep_file):
            os.remove(sleep_file)  # the next delivery will not sleep
            with open(sleep_file + ".sleeping", "w") as marker:
                marker.write(str(os.getpid()))
            time.sleep(sleep)
    return {"key": key}
