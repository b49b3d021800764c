"""The Custody WSGI app behind a probe that reports TCP_NODELAY on the accepted connection.

Used only by :func:`bench.common.check_nodelay` (never while timing): gunicorn passes the accepted
socket to the app as ``environ["gunicorn.socket"]``, so the probe reads the option the server really
has on client connections, not on its listening socket.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterable
from typing import Any

from governance.wsgi import application as custody_app

StartResponse = Callable[..., Any]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != "/__bench__/nodelay":
        return custody_app(environ, start_response)  # type: ignore[no-any-return]
    sock = environ.get("gunicorn.socket")
    body: dict[str, Any] = {"socket": sock is not None}
    if isinstance(sock, socket.socket):
        body["tcp_nodelay"] = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        body["peer"] = list(sock.getpeername())
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
