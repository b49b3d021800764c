"""POST /api/v1/lineage and /api/v1/lineage/batch: OpenLineage ingestion (Marquez-compatible).

GET /api/v1/lineage (the lineage graph) shares the path and is answered by the graph view.
"""

from __future__ import annotations

import gc
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from lineage.api.graph_views import lineage_graph_response, lineage_graph_schema
from lineage.api.renderers import FastJSONRenderer
from lineage.ingest.body import read_limited
from lineage.ingest.errors import BodyTooLarge, IngestError, MalformedBody
from lineage.ingest.service import LARGE_EVENT, Outcome, decode_json, ingest

MAX_BATCH_EVENTS = 10_000


def _read_json(request: Request, limit: int) -> tuple[Any, int]:
    django_request: HttpRequest = request._request
    length = django_request.META.get("CONTENT_LENGTH")
    body = read_limited(
        django_request,
        limit,
        content_encoding=django_request.headers.get("Content-Encoding", ""),
        content_length=int(length) if length and length.isdigit() else None,
    )
    size = len(body)
    value = decode_json(body)
    del body
    return value, size


def _release(size: int) -> None:
    """After a large body: collect the projection's objects now. Its model instances refer to one
    another (and to the event), so only a full collection frees them, and a worker would otherwise
    hold a large event's hundreds of megabytes until one happens to run."""
    if size >= LARGE_EVENT:
        gc.collect()


def _error_response(exc: IngestError) -> Response:
    return Response({"error": exc.error, "detail": exc.detail, "field": exc.field}, status=exc.status)


@method_decorator(csrf_exempt, name="dispatch")
class LineageView(APIView):
    """One OpenLineage event in; or, with GET, the lineage graph around a node."""

    ingest_endpoint = True
    parser_classes: list[Any] = []
    renderer_classes = [FastJSONRenderer]  # the lineage graph can be large

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={
            201: OpenApiResponse(description="Accepted (or already known: duplicates change nothing)."),
            400: OpenApiResponse(description="Malformed JSON."),
            413: OpenApiResponse(description="Body larger than the limit."),
            422: OpenApiResponse(description="A required field is missing or has the wrong type; names the field."),
        },
        summary="Post one OpenLineage event (RunEvent, DatasetEvent or JobEvent)",
    )
    def post(self, request: Request) -> Response:
        try:
            value, size = _read_json(request, settings.CUSTODY_MAX_EVENT_BYTES)
            (outcome,) = ingest([value], user=request.user, sizes=[size], auth=request.auth)
            del value
            _release(size)
        except IngestError as exc:
            return _error_response(exc)
        if outcome.error is not None:
            return _error_response(outcome.error)
        return Response({"status": outcome.status, "digest": outcome.digest}, status=201)

    @lineage_graph_schema
    def get(self, request: Request) -> HttpResponseBase:
        return lineage_graph_response(request)


@method_decorator(csrf_exempt, name="dispatch")
class LineageBatchView(APIView):
    """A JSON array of OpenLineage events; answers per the OpenLineage HTTP API spec."""

    ingest_endpoint = True
    parser_classes: list[Any] = []

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: OpenApiResponse(description="Summary of received / successful / failed events.")},
        summary="Post a batch of OpenLineage events",
    )
    def post(self, request: Request) -> Response:
        try:
            values, size = _read_json(request, settings.CUSTODY_MAX_BATCH_BYTES)
            if not isinstance(values, list):
                raise MalformedBody(f"A batch must be a JSON array of events, not a {type(values).__name__}.")
            if len(values) > MAX_BATCH_EVENTS:
                raise BodyTooLarge(f"A batch may hold at most {MAX_BATCH_EVENTS} events; this one has {len(values)}.")
            outcomes = ingest(values, user=request.user, auth=request.auth)
            del values
            _release(size)
        except IngestError as exc:
            return _error_response(exc)
        return Response(_batch_summary(outcomes), status=200)


def _batch_summary(outcomes: list[Outcome]) -> dict[str, Any]:
    failed = [o for o in outcomes if o.status == "failed"]
    return {
        "status": "partial_success" if failed else "success",
        "summary": {
            "received": len(outcomes),
            "successful": len(outcomes) - len(failed),
            "failed": len(failed),
            "retriable": sum(1 for o in failed if o.retriable),
            "non_retriable": sum(1 for o in failed if not o.retriable),
            "duplicates": sum(1 for o in outcomes if o.status == "duplicate"),
        },
        "failed_events": [
            {
                "index": o.index,
                "reason": o.error.detail if o.error else "Server error",
                "retriable": o.retriable,
            }
            for o in failed
        ],
    }
