from __future__ import annotations

from django.conf import settings
from django.db import models

from lineage.models.fields import StoredJSONField


class RawEvent(models.Model):
    """An accepted OpenLineage event, stored verbatim before anything is derived from it.

    ``digest`` is the SHA-256 of the event's canonical JSON (sorted keys, no insignificant white
    space), so a re-sent event is recognised whatever its formatting, and the graph can be
    replayed from these rows and proven against them.
    """

    class Kind(models.TextChoices):
        RUN = "RunEvent"
        DATASET = "DatasetEvent"
        JOB = "JobEvent"

    digest = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    event_type = models.CharField(max_length=16, blank=True, default="", help_text="START, COMPLETE, ...")
    event_time = models.DateTimeField(db_index=True)
    received_at = models.DateTimeField(db_index=True)
    run_id = models.CharField(max_length=255, blank=True, default="", db_index=True)
    job_namespace = models.CharField(max_length=1024, blank=True, default="")
    job_name = models.CharField(max_length=1024, blank=True, default="")
    producer = models.TextField(blank=True, default="")
    schema_url = models.TextField(blank=True, default="")
    size_bytes = models.PositiveIntegerField()
    payload = StoredJSONField()
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["job_namespace", "job_name"], name="rawevent_job_idx")]

    def __str__(self) -> str:
        label = self.event_type or self.kind
        return f"{label} {self.job_namespace}:{self.job_name} @ {self.event_time:%Y-%m-%d %H:%M:%S}"
