"""Exceptions raised by the synchronous parts of the SDK (governance calls, configuration).

Recording lineage never raises: the background sender reports problems through the ``custody``
logger instead, so training goes on.
"""

from __future__ import annotations

from typing import Any, Optional


class CustodyError(Exception):
    """Base class of every error the SDK raises."""


class ConfigurationError(CustodyError):
    """The SDK is not configured well enough for the requested operation."""


class ServerUnreachable(CustodyError):
    """The Custody server could not be reached (network error or timeout)."""


class HTTPError(CustodyError):
    """The server answered with an error status; ``error``, ``detail`` and ``field`` come from its JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error: str = "",
        detail: str = "",
        field: Optional[str] = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field
        self.body = body


class AuthenticationError(HTTPError):
    """401: the token is missing or invalid (set ``CUSTODY_TOKEN``)."""


class PermissionDenied(HTTPError):
    """403: the token's user lacks the permission for this operation."""


class NotFound(HTTPError):
    """404 for an object the server knows how to look up (e.g. an unknown model version)."""


class FeatureUnavailable(NotFound):
    """404 for the endpoint itself: this server does not provide the feature (yet)."""


class Conflict(HTTPError):
    """409: the server refused the change; ``detail`` says why (e.g. no live approval)."""
