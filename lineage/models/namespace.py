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

    def __str__(self) -> str:
        return self.name
