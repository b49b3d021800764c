"""Idempotent Celery tasks: the key's ``done`` mark commits in the same transaction as the task's
effect, so a worker killed mid-run (SIGKILL) leaves nothing and the redelivered message does the
work once; a duplicate delivery after success is a no-op.

Redelivery itself is the broker's: RabbitMQ redelivers an unacknowledged message as soon as the
connection drops; Redis after ``visibility_timeout``. The kombu filesystem transport (the embedded
broker) removes a message file when it reads it, so it cannot redeliver: :func:`requeue_stalled`
(scheduled) re-sends every task whose ledger row was started but is not done after a grace period,
which covers every broker the same way."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from governance.compliance.models import TaskRun

RETRY_KWARGS: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (Exception,),
    "retry_backoff": 2,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 5,
}


def begin(key: str, task: str, args: dict[str, Any]) -> bool:
    """Mark ``key`` started (committed at once). False when it is already done."""
    with transaction.atomic():
        run, _ = TaskRun.objects.select_for_update().get_or_create(key=key, defaults={"task": task, "args": args})
        if run.done_at is not None:
            return False
        TaskRun.objects.filter(pk=run.pk).update(attempts=run.attempts + 1, started_at=timezone.now())
    return True


def finish(key: str, result: Any) -> bool:
    """Inside the effect's transaction: mark done. False if someone else finished first (roll back)."""
    run = TaskRun.objects.select_for_update().get(key=key)
    if run.done_at is not None:
        return False
    TaskRun.objects.filter(pk=run.pk).update(done_at=timezone.now(), result=result)
    return True


class AlreadyDone(Exception):
    pass


def idempotent(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a task body ``body(key, **kwargs)`` of task ``name``: at most once per key, effect and
    mark in one transaction."""
    return functools.partial(_wrap, name)


def _wrap(name: str, body: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(body)
    def wrapper(key: str, **kwargs: Any) -> Any:
        if not begin(key, name, kwargs):
            return {"skipped": "done"}
        try:
            with transaction.atomic():
                result = body(key, **kwargs)
                if not finish(key, result):
                    raise AlreadyDone
        except AlreadyDone:
            return {"skipped": "done"}
        return result

    return wrapper


def requeue_stalled(older_than: timedelta = timedelta(minutes=15)) -> int:
    """Re-send tasks started but not done for ``older_than`` (a worker died and the broker lost it)."""
    from governance.celery import app

    cutoff = timezone.now() - older_than
    count = 0
    for run in TaskRun.objects.filter(done_at__isnull=True, started_at__lt=cutoff):
        app.send_task(run.task, kwargs={"key": run.key, **run.args})
        TaskRun.objects.filter(pk=run.pk).update(started_at=timezone.now())
        count += 1
    return count
