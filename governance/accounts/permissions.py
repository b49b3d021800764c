"""Limits that a token's scope puts on what its bearer may call."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from governance.accounts.models import ApiToken


class TokenScopePermission(BasePermission):
    """An ingest-only token may only call views that declare ``ingest_endpoint = True``;
    a read-only token may only use safe methods. Session users and full tokens pass."""

    message = "This API token's scope does not allow this request."

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return True
        if token.scope == ApiToken.Scope.INGEST:
            if not getattr(view, "ingest_endpoint", False) or request.method != "POST":
                self.message = "This token is ingest-only: it may only post lineage events."
                return False
            return True
        if token.scope == ApiToken.Scope.READ and request.method not in SAFE_METHODS:
            self.message = "This token is read-only."
            return False
        return True
