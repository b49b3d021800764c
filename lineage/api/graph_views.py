"""GET /api/v1/lineage: the lineage graph around a node (implemented in the read-API work)."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response


def lineage_graph_response(request: Request) -> Response:
    return Response({"error": "not_implemented", "detail": "Lineage graph reads are not implemented yet."}, status=501)
