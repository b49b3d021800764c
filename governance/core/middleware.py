"""Request-scoped middleware: a request id on every request and response, and the current request
in a context variable so that code far from the view (the audit trail's signal receivers) can name
the actor, the source address and the request id."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# The request being handled by this thread/task, or None outside a request (commands, Celery).
current_request: ContextVar[HttpRequest | None] = ContextVar("custody_current_request", default=None)


class RequestIdMiddleware:
    """Accepts a sane incoming ``X-Request-ID`` or makes one; echoes it on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = current_request.set(request)
        try:
            response = self.get_response(request)
        finally:
            current_request.reset(token)
        response["X-Request-ID"] = request_id
        return response


def client_ip(request: HttpRequest) -> str | None:
    """The peer address of the request (proxies are trusted only when configured to be)."""
    return request.META.get("REMOTE_ADDR") or None
