"""Errors that ingestion reports to the producer, each with an HTTP status and a clear message."""

from __future__ import annotations


class IngestError(Exception):
    """A rejected event or body. ``status`` is the HTTP status; ``field`` names the offending field."""

    status = 400
    error = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def detail(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class MalformedBody(IngestError):
    status = 400
    error = "malformed_json"


class BodyTooLarge(IngestError):
    status = 413
    error = "payload_too_large"


class UnsupportedEncoding(IngestError):
    status = 415
    error = "unsupported_media_type"


class Forbidden(IngestError):
    status = 403
    error = "permission_denied"


class InvalidEvent(IngestError):
    status = 422
    error = "invalid_event"
