"""``/api/v1/findings/`` (list, detail, accept/resolve/reopen) and ``/api/v1/legal-holds/``.

Findings are filtered by the caller's namespace visibility (``lineage.access.visibility_for``); a
finding without an owner namespace (e.g. the audit chain) is visible to roles that read everything.
Changing a status or managing holds needs the compliance_officer or admin role."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.audit.services import record, snapshot
from governance.compliance import engine
from governance.compliance.models import Finding, LegalHold
from governance.permissions.access import has_role, reads_everything
from lineage.access import visibility_for

OFFICER_ROLES = ("compliance_officer", "admin")


def is_officer(user: Any) -> bool:
    return bool(user.is_superuser) or has_role(user, OFFICER_ROLES)


class FindingSerializer(serializers.ModelSerializer):
    namespace = serializers.CharField(source="namespace.name", default=None, read_only=True)

    class Meta:
        model = Finding
        fields = [
            "id",
            "rule_id",
            "subject",
            "severity",
            "status",
            "namespace",
            "title",
            "details",
            "first_seen_at",
            "last_seen_at",
            "resolved_at",
            "accepted_reason",
            "accepted_until",
            "occurrence",
        ]


def visible_findings(user: Any) -> Any:
    qs = Finding.objects.select_related("namespace")
    vis = visibility_for(user)
    if vis.unrestricted:
        return qs
    return vis.filter(qs)  # unowned findings (e.g. the audit chain) only for unrestricted callers


class FindingList(APIView):
    serializer_class = FindingSerializer  # documents the API schema

    @extend_schema(operation_id="findings_list", responses=FindingSerializer(many=True))
    def get(self, request: Request) -> Response:
        qs = visible_findings(request.user)
        for name in ("status", "severity", "rule_id"):
            if request.query_params.get(name):
                qs = qs.filter(**{name: request.query_params[name]})
        if request.query_params.get("namespace"):
            qs = qs.filter(namespace__name=request.query_params["namespace"])
        limit = min(int(request.query_params.get("limit", 100)), 1000)
        offset = int(request.query_params.get("offset", 0))
        total = qs.count()
        return Response({"count": total, "results": FindingSerializer(qs[offset : offset + limit], many=True).data})


class FindingDetail(APIView):
    serializer_class = FindingSerializer  # documents the API schema

    def get(self, request: Request, pk: int) -> Response:
        finding = visible_findings(request.user).filter(pk=pk).first()
        if finding is None:
            return Response({"error": "not_found", "detail": "no such object"}, status=404)
        return Response(FindingSerializer(finding).data)

    def post(self, request: Request, pk: int) -> Response:
        """Body: {"status": "accepted"|"resolved"|"open", "reason": "...", "until": ISO date-time}."""
        finding = visible_findings(request.user).filter(pk=pk).first()
        if finding is None:
            return Response({"error": "not_found", "detail": "no such object"}, status=404)
        if not is_officer(request.user):
            return Response({"error": "forbidden", "detail": "compliance_officer or admin only"}, status=403)
        data: Any = request.data
        new = data.get("status")
        reason = str(data.get("reason") or "")
        until = parse_datetime(str(data["until"])) if data.get("until") else None
        if new not in Finding.Status.values:
            return Response({"error": "bad_request", "detail": "status: open, resolved or accepted"}, status=400)
        if new == Finding.Status.ACCEPTED and not reason:
            return Response({"error": "bad_request", "detail": "accepting needs a reason"}, status=400)
        finding = engine.set_status(finding, new, actor=request.user, reason=reason, until=until)
        return Response(FindingSerializer(finding).data)


class OfficerOnly(BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return bool(is_officer(request.user) or reads_everything(request.user))
        return is_officer(request.user)


class LegalHoldSerializer(serializers.ModelSerializer):
    class Meta:
        model = LegalHold
        fields = [
            "id",
            "name",
            "reason",
            "namespace",
            "dataset",
            "model",
            "window_start",
            "window_end",
            "active",
            "created_at",
            "released_at",
        ]
        read_only_fields = ["created_at", "released_at"]


class LegalHoldList(APIView):
    serializer_class = LegalHoldSerializer  # documents the API schema
    permission_classes = [*APIView.permission_classes, OfficerOnly]

    @extend_schema(operation_id="legal_holds_list", responses=LegalHoldSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(LegalHoldSerializer(LegalHold.objects.order_by("-id"), many=True).data)

    def post(self, request: Request) -> Response:
        ser = LegalHoldSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        with transaction.atomic():
            hold = ser.save(created_at=timezone.now(), created_by=request.user)
            record("legal_hold.create", obj=hold, after=snapshot(hold))
        return Response(LegalHoldSerializer(hold).data, status=status.HTTP_201_CREATED)


class LegalHoldRelease(APIView):
    serializer_class = LegalHoldSerializer  # documents the API schema
    permission_classes = [*APIView.permission_classes, OfficerOnly]

    def post(self, request: Request, pk: int) -> Response:
        with transaction.atomic():
            hold = LegalHold.objects.select_for_update().filter(pk=pk).first()
            if hold is None:
                return Response({"error": "not_found", "detail": "no such object"}, status=404)
            before = snapshot(hold)
            hold.active, hold.released_at = False, timezone.now()
            hold.save()
            record(
                "legal_hold.release",
                obj=hold,
                before=before,
                after=snapshot(hold),
                extra={"reason": str(getattr(request.data, "get", lambda *_: "")("reason") or "")[:500]},
            )
        return Response(LegalHoldSerializer(hold).data)
