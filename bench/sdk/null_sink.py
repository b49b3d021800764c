"""A do-nothing lineage endpoint (stdlib HTTP, kept-alive connections): parses each batch and answers
the OpenLineage batch summary. Used to measure the SDK's own ceiling, without server ingestion."""

from __future__ import annotations

import gzip
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        events = json.loads(body)
        count = len(events) if isinstance(events, list) else 1
        answer = json.dumps(
            {
                "status": "success",
                "summary": {
                    "received": count,
                    "successful": count,
                    "failed": 0,
                    "retriable": 0,
                    "non_retriable": 0,
                    "duplicates": 0,
                },
                "failed_events": [],
            }
        ).encode()
        self.send_response(200 if isinstance(events, list) else 201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()
