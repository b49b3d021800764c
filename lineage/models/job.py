from __future__ import annotations

from django.db import models

from lineage.models.code import CodeCommit
from lineage.models.fields import DocumentField
from lineage.models.namespace import Namespace


class Job(models.Model):
    """A job (namespace, name); its inputs and outputs over time are JobDatasetEdge rows."""

    namespace = models.ForeignKey(Namespace, on_delete=models.PROTECT, related_name="jobs")
    name = models.CharField(max_length=1024)
    type = models.CharField(max_length=32, default="BATCH")
    description = models.TextField(blank=True, default="")
    location = models.CharField(max_length=2048, blank=True, default="")
    facets = DocumentField(default=dict)
    facet_times = DocumentField(default=dict)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    parent_rank = models.CharField(
        max_length=2100, blank=True, default="", help_text="Event time and identity of the newest parent reference."
    )
    latest_run = models.ForeignKey("lineage.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["namespace_id", "name"]
        constraints = [models.UniqueConstraint(fields=["namespace", "name"], name="uniq_job_ns_name")]
        indexes = [models.Index(fields=["updated_at"], name="job_updated_idx")]

    def __str__(self) -> str:
        return f"{self.namespace.name}:{self.name}"


class Run(models.Model):
    """One run of a job. Its state is a function of the set of events received, not of their order."""

    class State(models.TextChoices):
        NEW = "NEW"
        RUNNING = "RUNNING"
        COMPLETED = "COMPLETED"
        ABORTED = "ABORTED"
        FAILED = "FAILED"

    TERMINAL_STATES = frozenset({State.COMPLETED, State.ABORTED, State.FAILED})

    run_id = models.CharField(max_length=255, unique=True, help_text="The producer's runId (usually a UUID).")
    job = models.ForeignKey(Job, on_delete=models.PROTECT, related_name="runs")
    state = models.CharField(max_length=16, choices=State.choices, default=State.NEW)
    state_rank = DocumentField(default=list, help_text="Sort key of the event that set the state.")
    first_event_time = models.DateTimeField(db_index=True)
    last_event_time = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    nominal_start_time = models.DateTimeField(null=True, blank=True)
    nominal_end_time = models.DateTimeField(null=True, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    parent_run_id = models.CharField(max_length=255, blank=True, default="", db_index=True)
    parent_job_namespace = models.CharField(max_length=1024, blank=True, default="")
    parent_job_name = models.CharField(max_length=1024, blank=True, default="")
    code_commit = models.ForeignKey(CodeCommit, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    facets = DocumentField(default=dict)
    facet_times = DocumentField(default=dict)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-first_event_time", "-id"]
        indexes = [models.Index(fields=["job", "first_event_time"], name="run_job_timeline_idx")]

    def __str__(self) -> str:
        return f"{self.run_id} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in self.TERMINAL_STATES
