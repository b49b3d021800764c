"""Unauthenticated health endpoint and JSON error pages."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse

from governance.core.errors import json_error


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness plus a database round trip; the only endpoint that needs no authentication."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # pragma: no cover - exercised only when the database is down
        return JsonResponse({"status": "error", "database": str(exc.__class__.__name__)}, status=503)
    return JsonResponse({"status": "ok", "database": connection.vendor})


def not_found(request: HttpRequest, exception: Any = None) -> JsonResponse:
    return json_error(404, f"No such path: {request.path}")


def server_error(request: HttpRequest) -> JsonResponse:
    return json_error(500, "Internal server error; the request id is in the X-Request-ID header.", "server_error")


def bad_request(request: HttpRequest, exception: Any = None) -> JsonResponse:
    return json_error(400, "Bad request.")


def permission_denied(request: HttpRequest, exception: Any = None) -> JsonResponse:
    return json_error(403, "Permission denied.")
