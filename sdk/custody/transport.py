"""HTTP with the standard library: one kept-alive connection per transport, JSON in and out.

``urllib.request`` opens a connection per request; :mod:`http.client` keeps it, which is what a
producer sending batches wants. Proxies from the usual environment variables are honoured.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import ssl
import urllib.parse
import urllib.request
from typing import Any, Dict, Mapping, Optional, Tuple

from custody._version import __version__
from custody.errors import (
    AuthenticationError,
    Conflict,
    FeatureUnavailable,
    HTTPError,
    NotFound,
    PermissionDenied,
    ServerUnreachable,
)

USER_AGENT = f"custody-python/{__version__}"
GZIP_THRESHOLD = 64 * 1024


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def error_fields(self) -> Dict[str, Any]:
        """``{"error", "detail", "field"}`` from a JSON error body, else the text."""
        try:
            value = self.json()
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        text = self.body.decode("utf-8", "replace").strip()
        return {"detail": text[:500]} if text else {}


class Transport:
    """Not thread-safe: each thread that talks to the server uses its own."""

    def __init__(self, base_url: str, token: Optional[str], timeout: float) -> None:
        parts = urllib.parse.urlsplit(base_url.rstrip("/"))
        self.scheme = parts.scheme
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._conn: Optional[http.client.HTTPConnection] = None
        self._proxy: Optional[urllib.parse.SplitResult] = None
        proxy = urllib.request.getproxies().get(self.scheme)
        if proxy and not urllib.request.proxy_bypass(self.host):
            self._proxy = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")

    # --- connections ---------------------------------------------------------------------------
    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is not None:
            return self._conn
        conn: http.client.HTTPConnection
        if self._proxy is not None and self.scheme == "http":
            conn = http.client.HTTPConnection(self._proxy.hostname or "", self._proxy.port or 80, timeout=self.timeout)
        elif self.scheme == "https":
            context = ssl.create_default_context()
            if self._proxy is not None:
                conn = http.client.HTTPSConnection(
                    self._proxy.hostname or "", self._proxy.port or 80, timeout=self.timeout, context=context
                )
                conn.set_tunnel(self.host, self.port)
            else:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        conn.connect()
        if conn.sock is not None:
            try:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.prefix}{path}"

    # --- requests ------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        *,
        content_type: str = "application/json",
        compress: bool = True,
        auth: bool = True,
        timeout: Optional[float] = None,
    ) -> Response:
        """Send one request; raises :class:`ServerUnreachable` on network errors, never on a status."""
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["Content-Type"] = content_type
            if compress and len(body) >= GZIP_THRESHOLD:
                body = gzip.compress(body, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
        target = self.prefix + path
        if self._proxy is not None and self.scheme == "http":
            target = self.url(path)
        last: Optional[BaseException] = None
        for attempt in range(2):  # a kept-alive connection the server closed is retried once, fresh
            fresh = self._conn is None
            try:
                conn = self._connect()
                if timeout is not None and conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.request(method, target, body=body, headers=headers)
                raw = conn.getresponse()
                data = raw.read()
                if timeout is not None and conn.sock is not None:
                    conn.sock.settimeout(self.timeout)
                if raw.getheader("Content-Encoding", "") == "gzip":
                    data = gzip.decompress(data)
                if raw.will_close:
                    self.close()
                return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data)
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                last = exc
                stale = isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))
                if fresh or not stale or attempt:
                    break
        raise ServerUnreachable(f"{self.url(path)}: {type(last).__name__}: {last}") from last

    def call(self, method: str, path: str, payload: Any = None, *, what: str = "") -> Any:
        """A JSON API call for the synchronous operations; raises a typed error on a 4xx/5xx."""
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        response = self.request(method, path, body, compress=False)
        if 200 <= response.status < 300:
            return response.json()
        raise error_for(response, method, path, what)


def error_for(response: Response, method: str, path: str, what: str = "") -> HTTPError:
    fields = response.error_fields()
    detail = str(fields.get("detail") or fields.get("error") or "")
    where = f"{method} {path}"
    status = response.status
    kwargs: Dict[str, Any] = {
        "error": str(fields.get("error") or ""),
        "detail": detail,
        "field": fields.get("field"),
        "body": fields,
    }
    if status == 401:
        return AuthenticationError(
            status, f"{where}: 401 {detail or 'authentication required'} (check CUSTODY_TOKEN)", **kwargs
        )
    if status == 403:
        return PermissionDenied(status, f"{where}: 403 {detail or 'permission denied'}", **kwargs)
    if status == 404:
        # A route the server does not have: Django's JSON handler says "No such path", the debug page is HTML.
        if (
            not response.body
            or detail.startswith("No such path")
            or not isinstance(fields.get("error"), str)
            or ("<html" in response.body[:200].decode("utf-8", "replace").lower())
        ):
            feature = what or path
            return FeatureUnavailable(
                status,
                f"{where}: this Custody server does not provide {feature} (404 for the endpoint itself); "
                "it needs a server version with the governance API.",
                **kwargs,
            )
        return NotFound(status, f"{where}: 404 {detail}", **kwargs)
    if status == 409:
        return Conflict(status, f"{where}: 409 refused: {detail}", **kwargs)
    return HTTPError(status, f"{where}: {status} {detail}".rstrip(), **kwargs)


def split(response: Response) -> Tuple[int, Dict[str, Any]]:
    return response.status, response.error_fields()
