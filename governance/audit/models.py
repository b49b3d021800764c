"""Audit entries (one hash chain) and signed checkpoints of its head.

Both tables are append-only in the database (triggers, migration 0002). ``before``, ``after`` and
``extra`` are stored as canonical JSON *text*, not as jsonb: the hash covers exact values, and jsonb
would normalise numbers (``1e+100`` comes back as an integer) and so break verification.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import models

from governance.audit.chain import canonical_json


class CanonicalJSONField(models.TextField):
    """A JSON value kept as its canonical text (sorted keys, compact, UTF-8)."""

    description = "JSON stored as canonical text"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else json.loads(value)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def get_prep_value(self, value: Any) -> Any:
        return None if value is None else canonical_json(value)

    def value_to_string(self, obj: Any) -> str:
        return str(self.get_prep_value(self.value_from_object(obj)) or "")


class AuditEntry(models.Model):
    sequence = models.BigIntegerField(primary_key=True)
    timestamp = models.DateTimeField(db_index=True)
    # No database constraint and no cascade: an entry outlives its actor, and an append-only row can
    # neither be nulled nor deleted when the user goes.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=200, blank=True, default="")
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100, blank=True, default="")
    object_id = models.CharField(max_length=255, blank=True, default="")
    object_repr = models.TextField(blank=True, default="")
    before = CanonicalJSONField(null=True, blank=True)
    after = CanonicalJSONField(null=True, blank=True)
    extra = CanonicalJSONField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True, default="")
    source_ip = models.CharField(max_length=100, blank=True, default="")
    # Paths of personal fields replaced by their digest (not covered by the hash; see chain.py).
    redacted = CanonicalJSONField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["sequence"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
            models.Index(fields=["actor"], name="audit_actor_idx"),
        ]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.object_type}:{self.object_id}"


class AuditCheckpoint(models.Model):
    """A signed statement "the chain's entry ``sequence`` has hash ``head_hash``" at ``created_at``."""

    sequence = models.BigIntegerField(db_index=True)
    head_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=64)
    algorithm = models.CharField(max_length=16, default="Ed25519")
    signature = models.TextField(help_text="Base64 of the Ed25519 signature over the canonical message.")

    class Meta:
        ordering = ["sequence", "id"]
        get_latest_by = "id"
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"checkpoint #{self.sequence} {self.head_hash[:12]}… ({self.created_at:%Y-%m-%d %H:%M})"
