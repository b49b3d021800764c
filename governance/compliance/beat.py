"""Load ``settings.CELERY_BEAT_SCHEDULE`` into django-celery-beat's database scheduler.

Entries are created once and then belong to the admin: a compliance officer may disable (pause) or
reschedule them there and a later sync (every ``migrate``) leaves those edits alone. An entry
removed from the settings is disabled, not deleted."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.conf import settings

STATIC_MARK = "custody:static"


def sync_schedule(using: str = "default") -> dict[str, int]:
    from celery.schedules import crontab
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    created = disabled = 0
    schedule: dict[str, dict[str, Any]] = dict(getattr(settings, "CELERY_BEAT_SCHEDULE", {}) or {})
    for name, entry in schedule.items():
        if PeriodicTask.objects.using(using).filter(name=name).exists():
            continue
        every = entry["schedule"]
        fields: dict[str, Any] = {}
        if isinstance(every, int | float | timedelta):
            seconds = int(every.total_seconds() if isinstance(every, timedelta) else every)
            fields["interval"], _ = IntervalSchedule.objects.using(using).get_or_create(
                every=max(seconds, 1), period=IntervalSchedule.SECONDS
            )
        elif isinstance(every, crontab):
            fields["crontab"] = CrontabSchedule.from_schedule(every)
            if fields["crontab"].pk is None:
                fields["crontab"].save(using=using)
        else:
            continue
        PeriodicTask.objects.using(using).create(
            name=name,
            task=entry["task"],
            args=json.dumps(list(entry.get("args", []))),
            kwargs=json.dumps(dict(entry.get("kwargs", {}))),
            description=STATIC_MARK,
            **fields,
        )
        created += 1
    stale = (
        PeriodicTask.objects.using(using).filter(description=STATIC_MARK, enabled=True).exclude(name__in=list(schedule))
    )
    disabled = stale.update(enabled=False)
    return {"created": created, "disabled": disabled}


def sync_after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    from django.db import connections

    if "django_celery_beat_periodictask" not in connections[using].introspection.table_names():
        return
    sync_schedule(using)
