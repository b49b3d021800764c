from __future__ import annotations

import uuid

from django.db import models

from lineage.models.fields import DocumentField
from lineage.models.namespace import Namespace


class Dataset(models.Model):
    """A dataset (namespace, name): its current state, projected from its versions and mentions."""

    namespace = models.ForeignKey(Namespace, on_delete=models.PROTECT, related_name="datasets")
    name = models.CharField(max_length=1024)
    type = models.CharField(max_length=32, default="DB_TABLE")
    physical_name = models.CharField(max_length=1024, blank=True, default="")
    source_name = models.CharField(max_length=1024, blank=True, default="")
    description = models.TextField(blank=True, default="")
    fields = DocumentField(default=list, help_text="Current schema: the newest version's fields.")
    tags = DocumentField(default=list)
    facets = DocumentField(default=dict, help_text="Newest value of every facet ever reported.")
    facet_times = DocumentField(default=dict)
    current_version = models.ForeignKey(
        "lineage.DatasetVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_deleted = models.BooleanField(default=False)
    lifecycle_state = models.CharField(max_length=32, blank=True, default="")
    lifecycle_event_time = models.DateTimeField(null=True, blank=True)
    renamed_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["namespace_id", "name"]
        constraints = [models.UniqueConstraint(fields=["namespace", "name"], name="uniq_dataset_ns_name")]
        indexes = [models.Index(fields=["updated_at"], name="dataset_updated_idx")]

    def __str__(self) -> str:
        return f"{self.namespace.name}:{self.name}"


class DatasetSymlink(models.Model):
    """Another identifier of the same dataset (`symlinks` facet) or its former name (RENAME)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="symlinks")
    namespace = models.CharField(max_length=1024)
    name = models.CharField(max_length=1024)
    type = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "namespace", "name"], name="uniq_symlink_per_dataset")
        ]
        indexes = [models.Index(fields=["namespace", "name"], name="symlink_ident_idx")]

    def __str__(self) -> str:
        return f"{self.namespace}:{self.name} ({self.type}) → {self.dataset_id}"


class DatasetVersion(models.Model):
    """One version of a dataset: what a run wrote, or what a `version` facet or DatasetEvent declared."""

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    uuid = models.UUIDField(unique=True, default=uuid.uuid4)
    version = models.CharField(max_length=1024, help_text="The producer's version id, else a content-derived id.")
    created_at = models.DateTimeField(help_text="Earliest event time that mentions this version.")
    run = models.ForeignKey(
        "lineage.Run", null=True, blank=True, on_delete=models.PROTECT, related_name="produced_versions"
    )
    fields = DocumentField(default=list)
    schema_digest = models.CharField(max_length=64, blank=True, default="")
    schema_event_time = models.DateTimeField(null=True, blank=True)
    facets = DocumentField(default=dict)
    facet_times = DocumentField(default=dict)
    lifecycle_state = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        ordering = ["dataset_id", "created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["dataset", "version"], name="uniq_dataset_version")]
        indexes = [models.Index(fields=["dataset", "created_at"], name="dsversion_timeline_idx")]

    def __str__(self) -> str:
        return f"{self.dataset_id}@{self.version}"


class SchemaChange(models.Model):
    """The difference between the schemas of two consecutive versions of a dataset."""

    class Level(models.TextChoices):
        MAJOR = "MAJOR", "Major (breaking)"
        MINOR = "MINOR", "Minor (additive)"
        PATCH = "PATCH", "Patch (documentation only)"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="schema_changes")
    from_version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="+")
    to_version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="schema_changes_in")
    level = models.CharField(max_length=8, choices=Level.choices)
    changes = DocumentField(default=list)
    explanation = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["dataset_id", "created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["from_version", "to_version"], name="uniq_schema_change_pair")]

    def __str__(self) -> str:
        return f"{self.level}: {self.explanation[:80]}"
