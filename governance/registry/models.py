"""The model registry: registered models (namespace, name) and their versions.

A model version records what was produced (artifact URI and sha256 digest, framework, params,
metrics, environment digest) and by which run, so its whole lineage is the producing run's
provenance. Versions come from the REST API and from OpenLineage run events carrying a
``custody_model`` dataset facet (``sdk/custody/schemas/custody_model.json``; see
:mod:`governance.registry.ingest`).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from lineage.models import DatasetVersion, Namespace, Run


class RegisteredModel(models.Model):
    namespace = models.ForeignKey(Namespace, on_delete=models.PROTECT, related_name="registered_models")
    name = models.CharField(max_length=512)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["namespace_id", "name"]
        constraints = [models.UniqueConstraint(fields=["namespace", "name"], name="uniq_registered_model")]
        indexes = [models.Index(fields=["name"], name="registered_model_name_idx")]

    def __str__(self) -> str:
        return f"{self.namespace.name}:{self.name}"


class ModelVersion(models.Model):
    class Source(models.TextChoices):
        API = "api", "REST API"
        LINEAGE = "lineage", "OpenLineage custody_model facet"

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=255, help_text="The version label (the SDK's `version`).")
    artifact_uri = models.CharField(max_length=2048, blank=True, default="")
    artifact_digest = models.CharField(max_length=71, blank=True, default="", help_text="sha256:<64 hex>")
    artifact_size = models.BigIntegerField(null=True, blank=True)
    framework = models.CharField(max_length=128, blank=True, default="")
    framework_version = models.CharField(max_length=128, blank=True, default="")
    model_class = models.CharField(max_length=512, blank=True, default="")
    hyperparameters = models.JSONField(default=dict, blank=True)
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    environment_digest = models.CharField(max_length=71, blank=True, default="")
    description = models.TextField(blank=True, default="")
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.PROTECT, related_name="model_versions", help_text="Producing run."
    )
    dataset_version = models.ForeignKey(
        DatasetVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The `models/<name>` output dataset version that carried the facet.",
    )
    facet = models.JSONField(default=dict, blank=True, help_text="The custody_model facet as last reported.")
    facet_event_time = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["model_id", "-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="uniq_model_version")]
        indexes = [models.Index(fields=["run"], name="model_version_run_idx")]

    def __str__(self) -> str:
        return f"{self.model} v{self.version}"


class RegisteredModelUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(
        RegisteredModel, on_delete=models.CASCADE, related_name="user_object_permissions"
    )

    class Meta(UserObjectPermissionBase.Meta):
        verbose_name = "model permission of a user"
        verbose_name_plural = "model permissions of users"


class RegisteredModelGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(
        RegisteredModel, on_delete=models.CASCADE, related_name="group_object_permissions"
    )

    class Meta(GroupObjectPermissionBase.Meta):
        verbose_name = "model permission of a group"
        verbose_name_plural = "model permissions of groups"
