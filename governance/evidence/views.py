"""``GET /api/v1/models/{name}/versions/{v}/evidence?format=json|prov|html[&namespace=]`` and the
admin download.

Who may read a pack: users who can see the model (404 otherwise, as for the rest of the model API)
and who hold the ``compliance_officer``, ``auditor``, ``approver`` or ``admin`` role, or may write
to the model (its namespace's or the model's own write permission); others get 403. Every read is
recorded in the audit trail (``evidence.read``, with the format and the pack's digest).

The registry already answers ``.../evidence`` (without ``format``) with the version's promotion
evidence (closure, checks, history); that answer is kept: the pack is served when ``format`` is
given, and always at ``.../evidence/pack``.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from governance.audit.services import record
from governance.core.errors import ApiError
from governance.evidence import pack as packs
from governance.evidence import provenance
from governance.permissions import access
from governance.registry import services
from governance.registry.models import ModelVersion

FORMATS = {"json": "application/json", "prov": "application/json", "html": "text/html; charset=utf-8"}
READER_ROLES = frozenset({access.ADMIN, access.COMPLIANCE_OFFICER, access.AUDITOR, access.APPROVER})


def may_read(user: Any, version: ModelVersion) -> bool:
    """The caller sees the model (checked by the lookup) and has a reading role or write access."""
    model = version.model
    if not access.sees_model(user, model):
        return False
    return access.has_role(user, READER_ROLES) or access.is_admin(user) or access.writes_model(user, model)


def render(user: Any, version: ModelVersion, fmt: str, http_request: Any) -> tuple[HttpResponse, dict[str, Any]]:
    pack = packs.build(user, version)
    if fmt == "json":
        body = json.dumps(pack, sort_keys=True, ensure_ascii=False, indent=1)
    elif fmt == "prov":
        body = provenance.serialize(pack)
    else:
        body = render_to_string("evidence/pack.html", {"pack": pack}, request=http_request)
    response = HttpResponse(body, content_type=FORMATS[fmt])
    response["X-Evidence-Digest"] = "sha256:" + pack["digest"]["value"]
    record(
        "evidence.read",
        obj=version,
        request=http_request,
        extra={"format": fmt, "digest": pack["digest"]["value"]},
    )
    return response, pack


def filename(version: ModelVersion, fmt: str) -> str:
    ext = {"json": "json", "prov": "prov.json", "html": "html"}[fmt]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{version.model.name}-{version.version}")
    return f"evidence-{safe}.{ext}"


class EvidencePackView(APIView):
    # ``format`` is this view's own parameter, not DRF's renderer override.
    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        return (JSONRenderer(), "application/json")

    @extend_schema(
        operation_id="model_versions_evidence_pack",
        summary="Evidence pack of a model version (JSON, W3C PROV-JSON or printable HTML)",
        description=__doc__,
        parameters=[
            OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH),
            OpenApiParameter("version", OpenApiTypes.STR, OpenApiParameter.PATH),
            OpenApiParameter(
                "format", OpenApiTypes.STR, enum=sorted(FORMATS), description="json (default), prov, html"
            ),
            OpenApiParameter("namespace", OpenApiTypes.STR, description="The model's namespace when ambiguous."),
        ],
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiResponse(), 403: OpenApiResponse(), 404: OpenApiResponse()},
    )
    def get(self, request: Request, name: str, version: str) -> HttpResponse:
        fmt = (request.query_params.get("format") or "json").strip().lower()
        if fmt not in FORMATS:
            raise ApiError(400, f"format must be one of {', '.join(sorted(FORMATS))}.")
        model = services.find_model(request.user, name, request.query_params.get("namespace"))
        row = services.find_version(model, version)
        if not may_read(request.user, row):
            raise ApiError(
                403,
                "Evidence packs are for compliance officers, auditors, approvers, admins and the model's writers.",
            )
        response, _ = render(request.user, row, fmt, request._request)
        return response


class EvidenceView(EvidencePackView):
    """``.../evidence``: the pack when ``format`` is given, else the registry's evidence answer."""

    @extend_schema(
        operation_id="model_versions_evidence",
        summary="Evidence of a model version: with format=, the evidence pack; without, closure and digest, "
        "checks, promotions, deployments (as the registry answers)",
        description=__doc__,
        parameters=[
            OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH),
            OpenApiParameter("version", OpenApiTypes.STR, OpenApiParameter.PATH),
            OpenApiParameter("format", OpenApiTypes.STR, enum=sorted(FORMATS), description="json, prov, html"),
            OpenApiParameter("namespace", OpenApiTypes.STR, description="The model's namespace when ambiguous."),
        ],
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiResponse(), 403: OpenApiResponse(), 404: OpenApiResponse()},
    )
    def get(self, request: Request, name: str, version: str) -> HttpResponse:
        if "format" not in request.query_params:
            from governance.registry.api import VersionEvidenceView

            legacy = VersionEvidenceView()
            legacy.request = request
            legacy.format_kwarg = None
            return legacy.get(request, name, version)
        return super().get(request, name, version)


def admin_download(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    """The admin's download (staff session; same rules as the API)."""
    if fmt not in FORMATS:
        return HttpResponse("Unknown format.", status=400, content_type="text/plain")
    version = get_object_or_404(ModelVersion.objects.select_related("model__namespace"), pk=pk)
    if not access.sees_model(request.user, version.model):
        return HttpResponse("Not found.", status=404, content_type="text/plain")
    if not may_read(request.user, version):
        return HttpResponse("Forbidden.", status=403, content_type="text/plain")
    response, _ = render(request.user, version, fmt, request)
    disposition = "inline" if fmt == "html" else "attachment"
    response["Content-Disposition"] = f'{disposition}; filename="{filename(version, fmt)}"'
    return response


admin_download_view = admin.site.admin_view(admin_download)
