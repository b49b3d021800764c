"""Celery tasks of the audit trail (scheduled in settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import logging

from celery import shared_task

from governance.audit.signing import create_checkpoint

logger = logging.getLogger(__name__)


@shared_task(name="governance.audit.tasks.checkpoint", ignore_result=True)
def checkpoint() -> int | None:
    """Sign the head of the audit chain (skipped when it has not moved since the last checkpoint)."""
    made = create_checkpoint()
    if made is not None:
        logger.info("audit checkpoint %s: entry %s %s", made.pk, made.sequence, made.head_hash)
        return made.sequence
    return None
