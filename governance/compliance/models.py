"""Findings of audit rules, notification endpoints and their outbox, retention policies, legal holds,
privacy sign-offs, stale-ingestion expectations and the idempotency ledger of Celery tasks."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from lineage.models import Dataset, Namespace

SEVERITIES = ("low", "medium", "high", "critical")


def severity_rank(severity: str) -> int:
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        return 0


class Severity(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Finding(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"
        ACCEPTED = "accepted"

    rule_id = models.CharField(max_length=128)
    subject = models.CharField(max_length=512, help_text="Stable key of what the finding is about, e.g. deployment:12.")
    severity = models.CharField(max_length=16, choices=Severity.choices)
    namespace = models.ForeignKey(
        Namespace, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="Owner."
    )
    title = models.CharField(max_length=1024)
    details = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    accepted_reason = models.TextField(blank=True, default="")
    accepted_until = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    occurrence = models.PositiveIntegerField(default=1, help_text="Incremented each time a resolved finding re-opens.")

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["rule_id", "subject"], name="uniq_finding_rule_subject")]
        indexes = [
            models.Index(fields=["status", "rule_id"], name="finding_status_rule_idx"),
            models.Index(fields=["namespace", "status"], name="finding_ns_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id} {self.subject} ({self.status})"


class NotificationEndpoint(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email"
        WEBHOOK = "webhook"

    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    target = models.CharField(max_length=2048, help_text="E-mail address(es, comma separated) or webhook URL.")
    secret = models.CharField(max_length=255, blank=True, default="", help_text="HMAC-SHA256 key (webhooks).")
    namespace = models.ForeignKey(
        Namespace,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Empty: every namespace.",
    )
    min_severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.LOW)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Notification(models.Model):
    """The outbox: one message per (finding occurrence, endpoint); re-runs never add another."""

    class State(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    finding = models.ForeignKey(Finding, on_delete=models.CASCADE, related_name="notifications")
    endpoint = models.ForeignKey(NotificationEndpoint, on_delete=models.CASCADE, related_name="notifications")
    occurrence = models.PositiveIntegerField(default=1)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["finding", "endpoint", "occurrence"], name="uniq_notification_once")
        ]

    def __str__(self) -> str:
        return f"{self.endpoint_id} <- finding {self.finding_id}#{self.occurrence} ({self.state})"


class RetentionPolicy(models.Model):
    class Kind(models.TextChoices):
        RAW_EVENTS = "raw_events"
        RUNS = "runs"
        DATASET_VERSIONS = "dataset_versions"
        FINDINGS = "findings"
        AUDIT_ENTRIES = "audit_entries"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    namespace = models.ForeignKey(
        Namespace, null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="Empty: default."
    )
    keep_days = models.PositiveIntegerField()
    active = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "retention policies"
        constraints = [
            models.UniqueConstraint(fields=["kind", "namespace"], name="uniq_retention_kind_ns"),
            models.UniqueConstraint(
                fields=["kind"], condition=models.Q(namespace__isnull=True), name="uniq_retention_kind_default"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace or '*'}: {self.keep_days} days"


class LegalHold(models.Model):
    """Nothing matching an active hold is deleted (or redacted). Empty scope fields match everything,
    so a hold with only a window holds everything in that window."""

    name = models.CharField(max_length=255)
    reason = models.TextField()
    namespace = models.ForeignKey(Namespace, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    model = models.ForeignKey(
        "registry.RegisteredModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    released_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class PrivacySignoff(models.Model):
    """A privacy officer's sign-off that a model version may use the PII in its lineage."""

    model_version = models.ForeignKey("registry.ModelVersion", on_delete=models.CASCADE, related_name="+")
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"privacy sign-off of model version {self.model_version_id}"


class FreshnessExpectation(models.Model):
    """A dataset's expected update schedule (without one, the rule infers it from the dataset's history)."""

    dataset = models.OneToOneField(Dataset, on_delete=models.CASCADE, related_name="+")
    every_seconds = models.PositiveIntegerField()
    grace_seconds = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"dataset {self.dataset_id} every {self.every_seconds}s"


class TaskRun(models.Model):
    """Idempotency ledger of Celery tasks: a key is done once; its effect commits with ``done``."""

    key = models.CharField(max_length=255, unique=True)
    task = models.CharField(max_length=255)
    args = models.JSONField(default=dict)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)

    def __str__(self) -> str:
        return self.key


class TaskEffect(models.Model):
    """What the self-test task does (one row per key): lets tests prove 'no duplicate effect'."""

    key = models.CharField(max_length=255)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.key
