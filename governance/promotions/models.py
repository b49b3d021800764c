"""Promotion policies, promotion requests and their decisions, and deployments.

Every change to these rows goes through :mod:`governance.promotions.services` (the API and the
admin both call it), which also appends the audit entry in the same transaction.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models

from governance.registry.models import ModelVersion, RegisteredModel
from lineage.models import Namespace


class PromotionPolicy(models.Model):
    """What a promotion into ``environment`` needs. Policies are versioned: a change creates a new
    row with the next ``version`` for the same scope and deactivates the old one, which stays (and
    stays pinned by the requests decided under it).

    Scope: a model's policy wins over its namespace's, which wins over the environment's global
    policy (namespace and model empty)."""

    environment = models.CharField(max_length=64)
    namespace = models.ForeignKey(Namespace, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    model = models.ForeignKey(RegisteredModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    scope = models.CharField(max_length=128, editable=False, help_text="environment|namespace id|model id")
    version = models.PositiveIntegerField(default=1)
    active = models.BooleanField(default=True)
    approvals_required = models.PositiveSmallIntegerField(default=1, help_text="N approvals (0: none needed).")
    eligible_roles = models.JSONField(default=list, help_text="Roles whose members may approve or reject.")
    separation_of_duties = models.BooleanField(
        default=True,
        help_text="The requester, the producing run's author and the code commit's author may not approve.",
    )
    approval_ttl = models.DurationField(null=True, blank=True, help_text="An approval expires after this long.")
    request_ttl = models.DurationField(null=True, blank=True, help_text="A pending request expires after this long.")
    required_checks = models.JSONField(default=list, blank=True)
    require_approval_to_deploy = models.BooleanField(
        default=True, help_text="Deployments to this environment need a live approval (or break-glass)."
    )
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    superseded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["environment", "scope", "-version"]
        verbose_name_plural = "promotion policies"
        constraints = [
            models.UniqueConstraint(fields=["scope", "version"], name="uniq_policy_version"),
            models.UniqueConstraint(fields=["scope"], condition=models.Q(active=True), name="uniq_active_policy"),
        ]

    def __str__(self) -> str:
        where = "everywhere"
        if self.model_id:
            where = f"model {self.model}"
        elif self.namespace_id:
            where = f"namespace {self.namespace}"
        return f"{self.environment} policy v{self.version} ({where})"

    @staticmethod
    def scope_key(environment: str, namespace_id: int | None, model_id: int | None) -> str:
        return f"{environment}|{namespace_id or '*'}|{model_id or '*'}"


class PromotionRequest(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"
        WITHDRAWN = "withdrawn"
        STALE = "stale"

    OPEN_STATES = (State.PENDING, State.APPROVED)

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="promotion_requests")
    environment = models.CharField(max_length=64)
    policy = models.ForeignKey(PromotionPolicy, on_delete=models.PROTECT, related_name="requests")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_name = models.CharField(max_length=150, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    evidence_digest = models.CharField(max_length=64, help_text="SHA-256 of the version's lineage closure.")
    evidence = models.JSONField(default=dict)
    checks = models.JSONField(default=list, help_text="Results of the policy's required checks.")
    approvals_count = models.PositiveSmallIntegerField(default=0)
    break_glass = models.BooleanField(default=False)
    flagged_for_review = models.BooleanField(default=False)
    state_reason = models.TextField(blank=True, default="", help_text="Why the request left 'pending'.")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "environment"],
                condition=models.Q(state__in=["pending", "approved"]),
                name="uniq_open_promotion",
            )
        ]
        indexes = [
            models.Index(fields=["environment", "state"], name="promotion_env_state_idx"),
            models.Index(fields=["state", "expires_at"], name="promotion_expiry_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.model_version} → {self.environment} ({self.state})"

    def effective_state(self, now: datetime) -> str:
        """The state, with a passed deadline read as 'expired' before the sweep records it."""
        if self.state in self.OPEN_STATES and self.expires_at is not None and self.expires_at <= now:
            return self.State.EXPIRED
        return self.state

    def is_live(self, now: datetime) -> bool:
        return self.effective_state(now) == self.State.APPROVED


class Decision(models.Model):
    """One approver's approval or rejection. A decision made on evidence that later changed is
    marked ``stale`` and no longer counts."""

    class Kind(models.TextChoices):
        APPROVE = "approve"
        REJECT = "reject"

    request = models.ForeignKey(PromotionRequest, on_delete=models.PROTECT, related_name="decisions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    user_name = models.CharField(max_length=150)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    role = models.CharField(max_length=64, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    evidence_digest = models.CharField(max_length=64)
    policy_version = models.PositiveIntegerField()
    stale = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["request_id", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "user"], condition=models.Q(stale=False), name="uniq_live_decision_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} by {self.user_name} on #{self.request_id}"


class Comment(models.Model):
    request = models.ForeignKey(PromotionRequest, on_delete=models.PROTECT, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    author_name = models.CharField(max_length=150)
    text = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["request_id", "created_at", "id"]

    def __str__(self) -> str:
        return f"comment by {self.author_name} on #{self.request_id}"


class EvidenceRef(models.Model):
    """A run or dataset in an open request's lineage closure: new facts about one of them make
    the request's evidence digest worth recomputing (one indexed lookup per ingestion)."""

    request = models.ForeignKey(PromotionRequest, on_delete=models.CASCADE, related_name="evidence_refs")
    run_pk = models.BigIntegerField(null=True, blank=True)
    dataset_pk = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["run_pk"], name="evidence_run_idx"),
            models.Index(fields=["dataset_pk"], name="evidence_dataset_idx"),
        ]

    def __str__(self) -> str:
        what = f"run {self.run_pk}" if self.run_pk is not None else f"dataset {self.dataset_pk}"
        return f"{what} in the evidence of #{self.request_id}"


class Deployment(models.Model):
    """A model version running in an environment at a target since ``deployed_at``, until the
    next deployment to the same environment and target. A rollback is a deployment too."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    environment = models.CharField(max_length=64)
    target = models.CharField(max_length=512, blank=True, default="", help_text="Endpoint, cluster, service...")
    deployed_at = models.DateTimeField()
    recorded_at = models.DateTimeField()
    deployed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    deployed_by_name = models.CharField(max_length=150, blank=True, default="")
    replaces = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by")
    rollback_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="rolled_back_by"
    )
    promotion = models.ForeignKey(
        PromotionRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="deployments"
    )
    approval_required = models.BooleanField(default=False)
    break_glass = models.BooleanField(default=False)
    flagged_for_review = models.BooleanField(default=False)
    reason = models.TextField(blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-deployed_at", "-id"]
        indexes = [
            models.Index(fields=["environment", "target", "deployed_at"], name="deployment_timeline_idx"),
            models.Index(fields=["deployed_at"], name="deployment_time_idx"),
        ]

    def __str__(self) -> str:
        where = f"{self.environment}/{self.target}" if self.target else self.environment
        return f"{self.model_version} → {where} @ {self.deployed_at:%Y-%m-%d %H:%M}"
