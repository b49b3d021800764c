"""API tokens. Only a SHA-256 digest of each token is stored; the token itself is shown once."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.utils import timezone

TOKEN_PREFIX = "cust_"
# last_used_at is refreshed at most this often, so authentication does not write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)

ROLE_NAMES = ("data_scientist", "approver", "compliance_officer", "auditor", "admin")


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def live(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    class Scope(models.TextChoices):
        FULL = "full", "Full (the user's own permissions)"
        INGEST = "ingest", "Ingest only (POST lineage events)"
        READ = "read", "Read only"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    label = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=16, help_text="First characters of the token, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.FULL)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    namespaces = models.ManyToManyField(
        "lineage.Namespace",
        blank=True,
        related_name="+",
        help_text="When set, the token reads and writes only these namespaces (e.g. a CI pipeline's token).",
    )

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user}{', ' + self.label if self.label else ''})"

    @classmethod
    def issue(
        cls,
        user: object,
        label: str = "",
        scope: str = "full",
        expires_at: object = None,
        namespaces: Iterable[Any] = (),
    ) -> tuple[ApiToken, str]:
        """Create a token; returns the row and the raw token, which is never stored. ``namespaces``
        (Namespace rows) limits what the token can read and write."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        limits = list(namespaces)
        with transaction.atomic():
            token = cls.objects.create(
                user=user, label=label, prefix=raw[:12], key_hash=hash_token(raw), scope=scope, expires_at=expires_at
            )
            if limits:
                from governance.audit.services import record

                token.namespaces.set(limits)
                record(
                    "token.limit",
                    obj=token,
                    after={"namespaces": sorted(str(ns) for ns in limits)},
                    extra={"user_id": token.user_id},
                )
        return token, raw

    @classmethod
    def authenticate(cls, raw: str) -> ApiToken | None:
        """The live token with this secret, its user attached (``token.user``) and ``limited`` set
        (does it carry namespace limits? saves permission checks a query); None if there is none.

        Runs on every request: one plain SQL statement rather than a compiled queryset."""
        from lineage.ingest.rows import Table, bound_cursor

        tokens, users = Table.of(cls), Table.of(get_user_model())
        limits = Table.of(cls.namespaces.through)
        now = timezone.now()
        sql = (
            f"SELECT {tokens.columns}, {users.columns}, EXISTS(SELECT 1 FROM {limits.name} "
            f"WHERE {limits.column('apitoken_id')} = {tokens.column('id')}) FROM {tokens.name} "
            f"JOIN {users.name} ON {users.column('id')} = {tokens.column('user_id')} "
            f"WHERE {tokens.column('key_hash')} = %s AND {tokens.column('revoked_at')} IS NULL "
            f"AND ({tokens.column('expires_at')} IS NULL OR {tokens.column('expires_at')} > %s)"
        )
        with bound_cursor(tokens.connection) as cursor:
            cursor.execute(sql, [hash_token(raw), tokens.prep("expires_at", now)])
            row = cursor.fetchone()
        if row is None:
            return None
        width = len(tokens.fields)
        (token,) = tokens.instances([row[:width]], track=False)
        (user,) = users.instances([row[width:-1]], track=False)
        if not user.is_active:
            return None
        token.user = user
        token.limited = bool(row[-1])  # type: ignore[attr-defined]
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        return token

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])
