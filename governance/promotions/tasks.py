"""Celery tasks of promotions."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="governance.promotions.tasks.expire_promotions")
def expire_promotions() -> int:
    """Record open promotion requests whose deadline passed as expired (audited)."""
    from governance.promotions.services import expire_due

    return expire_due()
