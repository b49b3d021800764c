"""Audit trail API (read-only): list/export, one entry, checkpoints, verification, public key.

Reading is for the roles compliance_officer, auditor and admin (and superusers); everyone else gets
403. The public key is readable by any authenticated caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.accounts.permissions import TokenScopePermission
from governance.audit import export, signing
from governance.audit.models import AuditCheckpoint, AuditEntry
from governance.audit.verify import verify_chain
from governance.core.errors import ApiError

READER_ROLES = ("compliance_officer", "auditor", "admin")
MAX_LIMIT = 1000


def user_roles(user: Any) -> frozenset[str]:
    """The user's group names, cached on the user object for the rest of the request (the same
    attribute the lineage admin uses, so a page asks the database once)."""
    roles = getattr(user, "_custody_roles", None)
    if roles is None:
        roles = frozenset(user.groups.values_list("name", flat=True)) if user.is_authenticated else frozenset()
        user._custody_roles = roles
    return roles  # type: ignore[no-any-return]


def can_read_audit(user: Any) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or user_roles(user) & set(READER_ROLES))


class IsAuditReader(BasePermission):
    message = "Reading the audit trail needs the compliance_officer, auditor or admin role."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_read_audit(request.user)


class _FormatIsOurs(DefaultContentNegotiation):
    """``?format=jsonl|csv`` selects the export, not a DRF renderer: always render JSON."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> Any:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


def _param(name: str, kind: Any, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description)


ERRORS = {
    400: OpenApiResponse(description="A malformed parameter (the detail names it)."),
    401: OpenApiResponse(description="No or invalid bearer token."),
    403: OpenApiResponse(description="The caller lacks the compliance_officer, auditor or admin role."),
}


class AuditView(APIView):
    permission_classes = [IsAuthenticated, TokenScopePermission, IsAuditReader]
    content_negotiation_class = _FormatIsOurs


def _limit(request: Request, default: int = 100) -> int:
    raw = (request.query_params.get("limit") or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, f"limit must be a positive integer; got {raw!r}.")
    return min(int(raw), MAX_LIMIT)


class AuditListView(AuditView):
    @extend_schema(
        operation_id="audit_list",
        summary="List or export audit entries",
        parameters=[
            _param("since", OpenApiTypes.DATETIME, "Entries at or after this instant (or date)."),
            _param("until", OpenApiTypes.DATETIME, "Entries before this instant (a date means to its end)."),
            _param("actor", OpenApiTypes.STR, "Username (or user id) of the actor."),
            _param("action", OpenApiTypes.STR, "Action, comma-separated actions, or a prefix ending in '*'."),
            _param("object_type", OpenApiTypes.STR, "e.g. accounts.apitoken"),
            _param("object_id", OpenApiTypes.STR, "Object id (with object_type)."),
            _param("after_sequence", OpenApiTypes.INT, "Continue after this sequence (keyset pagination)."),
            _param("limit", OpenApiTypes.INT, "Page size for format=json (default 100, at most 1000)."),
            _param("format", OpenApiTypes.STR, "json (paginated, default), jsonl (verifiable export) or csv."),
        ],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="A page, or a streamed export."), **ERRORS},
    )
    def get(self, request: Request) -> Any:
        fmt = (request.query_params.get("format") or "json").strip().lower()
        if fmt not in {"json", "jsonl", "csv"}:
            raise ApiError(400, f"format must be json, jsonl or csv; got {fmt!r}.")
        try:
            filters = export.parse_filters(request.query_params)
        except export.BadFilter as exc:
            raise ApiError(400, str(exc)) from exc
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        if fmt == "jsonl":
            response = StreamingHttpResponse(export.iter_jsonl(filters), content_type="application/x-ndjson")
            response["Content-Disposition"] = f'attachment; filename="custody-audit-{stamp}.jsonl"'
            return response
        if fmt == "csv":
            response = StreamingHttpResponse(export.iter_csv(filters), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="custody-audit-{stamp}.csv"'
            return response
        limit = _limit(request)
        results, after = export.page(filters, limit)
        next_url = None
        if after is not None:
            params = request.query_params.copy()
            params["after_sequence"] = str(after)
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        return Response({"results": results, "next": next_url})


class AuditEntryView(AuditView):
    @extend_schema(operation_id="audit_entry", summary="One audit entry", responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, sequence: int) -> Response:
        entry = AuditEntry.objects.filter(sequence=sequence).first()
        if entry is None:
            raise ApiError(404, f"No audit entry {sequence}.")
        return Response(export.entry_dict(entry))


class CheckpointListView(AuditView):
    @extend_schema(
        operation_id="audit_checkpoints",
        summary="Signed checkpoints, newest first",
        parameters=[_param("limit", OpenApiTypes.INT, "How many (default 100, at most 1000).")],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        limit = _limit(request)
        rows = AuditCheckpoint.objects.order_by("-sequence", "-id")[:limit]
        return Response({"results": [signing.checkpoint_record(cp) for cp in rows]})


class VerifyView(AuditView):
    @extend_schema(
        operation_id="audit_verify",
        summary="Recompute the chain and check the signed checkpoints",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="ok, counts, first bad entry"), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(verify_chain().as_dict())


class PublicKeyView(APIView):
    permission_classes = [IsAuthenticated, TokenScopePermission]

    @extend_schema(
        operation_id="audit_public_key",
        summary="The Ed25519 public key that signs audit checkpoints",
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="key_id, algorithm, PEM, previous keys"),
            401: ERRORS[401],
            503: OpenApiResponse(description="No signing key is configured on the server."),
        },
    )
    def get(self, request: Request) -> Response:
        try:
            current = signing.current_public_key()
        except ImproperlyConfigured as exc:
            raise ApiError(503, str(exc), "signing_key_missing") from exc
        previous = [{"key_id": k.key_id, "pem": k.pem} for k in signing.trusted_public_keys().values() if not k.current]
        return Response({"key_id": current.key_id, "algorithm": "Ed25519", "pem": current.pem, "previous": previous})
