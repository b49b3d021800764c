from __future__ import annotations

from django.db import models


class Namespace(models.Model):
    """An OpenLineage namespace; also the unit of access control (a team or a project)."""

    name = models.CharField(max_length=1024, unique=True)
    owner_name = models.CharField(max_length=255, blank=True, default="")
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        # Object permissions on a namespace (granted per namespace with django-guardian by
        # governance): view_namespace reads it; write_namespace writes to it (ingest lineage,
        # register models, request promotions, record deployments).
        permissions = [("write_namespace", "Can write to the namespace (ingest, register, promote, deploy)")]

    def __str__(self) -> str:
        return self.name
