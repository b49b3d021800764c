"""One JSON error shape for the whole API: ``{"error": ..., "detail": ...}``."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

_ERROR_NAMES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "throttled",
}


class ApiError(exceptions.APIException):
    """An API error with an explicit status, a short machine name and a human detail."""

    def __init__(self, status_code: int, detail: Any, error: str | None = None) -> None:
        self.status_code = status_code
        self.error = error or _ERROR_NAMES.get(status_code, "error")
        super().__init__(detail=detail)
        self.detail = detail  # keep dicts/lists as given, not coerced to ErrorDetail strings


def error_body(status_code: int, detail: Any, error: str | None = None) -> dict[str, Any]:
    return {"error": error or _ERROR_NAMES.get(status_code, "error"), "detail": detail}


def json_error(status_code: int, detail: Any, error: str | None = None) -> JsonResponse:
    """A plain Django JSON error response, for views outside DRF."""
    return JsonResponse(error_body(status_code, detail, error), status=status_code)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        response.data = error_body(exc.status_code, exc.detail, exc.error)
        return response
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        response.status_code = status.HTTP_401_UNAUTHORIZED
        response["WWW-Authenticate"] = 'Bearer realm="custody"'
    detail = response.data
    if isinstance(detail, dict) and set(detail) == {"detail"}:
        detail = detail["detail"]
    response.data = error_body(response.status_code, detail)
    return response
