"""Marquez-compatible reads: namespaces, datasets and their versions, jobs and runs, search, events.

Paths, parameters and response shapes follow Marquez's ``openapi.yml``; additions are extra keys.
All of these views require authentication (the project's DRF defaults) and read through the
visibility policy of :mod:`lineage.access`:

- lists leave out what lives in namespaces the caller cannot see;
- a detail of something the caller cannot see answers **404**, exactly like something that does
  not exist, so that existence is not disclosed (we never answer 403 for hidden lineage objects);
- names of hidden datasets inside visible objects (a job's inputs, facets) are redacted.

Lists paginate with ``limit`` (default 100, at most 1000: larger values are clamped) and
``offset``, and report ``totalCount``. Bad parameters answer 400 with a message naming the
parameter. Namespaces and names may contain '/' and ':'; Marquez clients URL-encode them
(``%2F``), which arrives decoded, so ``/namespaces/...`` paths are parsed against existing rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from lineage.access import Visibility, visibility_for
from lineage.api.marquez import (
    RUN_RELATED,
    Redactor,
    dataset_versions_json,
    datasets_json,
    jobs_json,
    namespace_json,
    runs_json,
)
from lineage.graph import InvalidQuery, NotFound, PathMatch, ReadError, find_dataset_version, resolve_namespace_path
from lineage.models import Dataset, DatasetVersion, Job, Namespace, RawEvent, Run
from lineage.search import FILTERS, SORTS, SearchQuery, search

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# A page of raw events stops growing past this many bytes of payload (events may be 32 MB each).
EVENTS_PAGE_BYTES = 64 * 1024 * 1024
JOB_RUNS_IN_DETAIL = 10
JOB_IO_IN_LISTS = 100

_ERROR_NAMES = {400: "bad_request", 404: "not_found"}


# --- OpenAPI documentation (drf-spectacular) ---------------------------------------------------------


def read_schema(operation_id: str, summary: str, *parameters: OpenApiParameter) -> Any:
    """Document a read endpoint: JSON object responses (Marquez shapes) and the common errors."""
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        parameters=list(parameters),
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="Marquez-compatible JSON."),
            400: OpenApiResponse(description="A malformed parameter (the detail names it)."),
            401: OpenApiResponse(description="No or invalid bearer token."),
            404: OpenApiResponse(description="Unknown, or in a namespace the caller cannot see."),
        },
    )


def query_param(name: str, kind: Any, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description)


LIMIT = query_param("limit", OpenApiTypes.INT, "Page size (default 100, at most 1000).")
OFFSET = query_param("offset", OpenApiTypes.INT, "Rows to skip (default 0).")
AS_OF = query_param("asOf", OpenApiTypes.DATETIME, "Read the object as it was at this instant (ISO-8601).")
DEPTH = query_param("depth", OpenApiTypes.INT, "Edge hops from the node (default 20).")
NODE_LIMIT = query_param("limit", OpenApiTypes.INT, "Most nodes to return (capped by CUSTODY_LINEAGE_NODE_LIMIT).")
NODE_ID = query_param(
    "nodeId",
    OpenApiTypes.STR,
    "dataset:<ns>:<name>, job:<ns>:<name>, run:<id>, datasetVersion:..., datasetField:... "
    "(with governance: model:<ns>:<name>:<version>, deployment:<id>)",
)
WITH_DOWNSTREAM = query_param("withDownstream", OpenApiTypes.BOOL, "Include downstream lineage.")


# --- errors and parameters ---------------------------------------------------------------------------


def error_response(exc: ReadError) -> Response:
    return Response({"error": _ERROR_NAMES.get(exc.status, "error"), "detail": exc.detail}, status=exc.status)


class ReadView(APIView):
    """Base of the read views: turns :class:`ReadError` into the API's JSON error shape."""

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, ReadError):
            return error_response(exc)
        return super().handle_exception(exc)


def int_param(
    request: Request, name: str, default: int, *, minimum: int = 0, maximum: int | None = None, clamp: int | None = None
) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise InvalidQuery(f"{name} must be an integer; got {raw!r}.")
    if value < minimum:
        raise InvalidQuery(f"{name} must be at least {minimum}; got {value}.")
    if maximum is not None and value > maximum:
        raise InvalidQuery(f"{name} must be at most {maximum}; got {value}.")
    return min(value, clamp) if clamp is not None else value


def bool_param(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"true", "1", "yes", "on"}:
        return True
    if value in {"false", "0", "no", "off"}:
        return False
    raise InvalidQuery(f"{name} must be true or false; got {raw!r}.")


def parse_instant(raw: str, name: str) -> datetime:
    """An ISO-8601 date-time (a bare date means its midnight, UTC; no offset means UTC). A '+' left
    unencoded in a query string arrives as a space; that is undone."""
    text = raw.strip()
    for candidate in (text, text.replace(" ", "+")):
        try:
            parsed = parse_datetime(candidate)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    try:
        day = parse_date(text)
    except ValueError:
        day = None
    if day is not None:
        return datetime.combine(day, time.min, tzinfo=UTC)
    raise InvalidQuery(f"{name} must be an ISO-8601 date-time such as 2024-05-01T12:00:00Z; got {raw!r}.")


def time_param(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return None
    return parse_instant(raw, name)


def date_param(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        parsed = parse_date(raw.strip())
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidQuery(f"{name} must be a date YYYY-MM-DD; got {raw!r}.")
    return parsed


def paging(request: Request) -> tuple[int, int]:
    limit = int_param(request, "limit", DEFAULT_LIMIT, minimum=0, clamp=MAX_LIMIT)
    offset = int_param(request, "offset", 0, minimum=0)
    return limit, offset


def depth_param(request: Request, default: int) -> int:
    return int_param(request, "depth", default, minimum=0, maximum=settings.CUSTODY_LINEAGE_MAX_DEPTH)


def node_limit_param(request: Request) -> int:
    cap = settings.CUSTODY_LINEAGE_NODE_LIMIT
    return int_param(request, "limit", cap, minimum=1, clamp=cap)


# --- namespaces and everything under them ------------------------------------------------------------


class NamespaceListView(ReadView):
    """``GET /api/v1/namespaces``: the namespaces the caller can see (Marquez ``NamespaceList``)."""

    @read_schema("getNamespaces", "List namespaces", LIMIT, OFFSET)
    def get(self, request: Request) -> Response:
        visibility = visibility_for(request.user)
        limit, offset = paging(request)
        qs = visibility.filter(Namespace.objects.order_by("name"), "pk")
        rows = list(qs[offset : offset + limit])
        return Response({"namespaces": [namespace_json(ns) for ns in rows], "totalCount": qs.count()})


class NamespaceTreeView(ReadView):
    """Everything under ``GET /api/v1/namespaces/{namespace}``:

    - ``/{namespace}`` (Namespace), ``/datasets`` (DatasetList), ``/datasets/{dataset}`` (Dataset),
      ``/datasets/{dataset}/versions`` (DatasetVersionList, newest first),
      ``/datasets/{dataset}/versions/{version}`` (DatasetVersion; the version UUID or the
      producer's version label), ``/datasets/{dataset}/versions/{version}/provenance`` (ours),
      ``/jobs`` (JobList), ``/jobs/{job}`` (Job, with ``latestRuns``), ``/jobs/{job}/runs`` (RunList).
    - ``asOf=<ISO time>`` on dataset and job lists and details: the object as it was then (fields
      of the dataset version current then; a job's inputs and outputs from the edges valid then,
      its latest run then). Objects created after that instant answer 404.
    - Hidden namespaces and their contents answer 404.
    """

    @read_schema("getNamespaceTree", "A namespace, its datasets, versions, jobs and runs", LIMIT, OFFSET, AS_OF)
    def get(self, request: Request, rest: str) -> Response:
        visibility = visibility_for(request.user)
        match = resolve_namespace_path(rest, visibility)
        handler: Callable[[Request, PathMatch, Redactor], Response] = getattr(self, f"_{match.route}")
        return handler(request, match, Redactor(visibility))

    def _namespace(self, request: Request, match: PathMatch, redactor: Redactor) -> Response:
        return Response(namespace_json(match.namespace))

    def _datasets(self, request: Request, match: PathMatch, redactor: Redactor) -> Response:
        limit, offset = paging(request)
        as_of = time_param(request, "asOf")
        qs = Dataset.objects.filter(namespace=match.namespace).order_by("name")
        if as_of is not None:
            qs = qs.filter(created_at__lte=as_of)
        rows = list(qs.select_related("namespace", "current_version")[offset : offset + limit])
        return Response({"datasets": datasets_json(rows, redactor, as_of=as_of), "totalCount": qs.count()})

    def _dataset(self, request: Request, match: PathMatch, redactor: Redactor) -> Response:
        as_of = time_param(request, "asOf")
        dataset = _existing_at(match, as_of)
        assert isinstance(dataset, Dataset)
        return Response(datasets_json([dataset], redactor, as_of=as_of)[0])

    def _dataset_versions(self, request: Request, match: PathMatch, redactor: Redactor) -> Response:
        dataset = match.obj
        assert isinstance(dataset, Dataset)
        limit, offset = paging(request)
        qs = DatasetVersion.objects.filter(dataset=dataset).order_by("-created_at", "-uuid")
        rows = list(qs.select_related("dataset__namespace")[offset : offset + limit])
        return Response({"versions": dataset_versions_json(rows, redactor), "totalCount": qs.count()})

    def _dataset_version(self, request: Request, match: PathMatch, redactor: Redactor) -> Response:
        dataset = match.obj
        assert isinstance(dataset, Dataset)
        version = find_dataset_version(dataset, match.version)
        return Response(dataset_versions_json([version], redactor)[0])

    def _dataset_version_provenance(self, request: Request, match: PathMatch, redactor: Redactor) -> Response:
        from lineage.api.graph_views import dataset_version_provenance

        return dataset_version_provenance(request, match, redactor)

    def _jobs(self, request: Request, match: PathMatch, redactor: Redactor) -> Response:
        limit, offset = paging(request)
        as_of = time_param(request, "asOf")
        qs = Job.objects.filter(namespace=match.namespace).order_by("name")
        if as_of is not None:
            qs = qs.filter(created_at__lte=as_of)
        rows = list(qs.select_related("namespace", "parent")[offset : offset + limit])
        jobs = jobs_json(rows, redactor, as_of=as_of, per_job=JOB_IO_IN_LISTS)
        return Response({"jobs": jobs, "totalCount": qs.count()})

    def _job(self, request: Request, match: PathMatch, redactor: Redactor) -> Response:
        as_of = time_param(request, "asOf")
        job = _existing_at(match, as_of)
        assert isinstance(job, Job)
        rendered = jobs_json(
            [job],
            redactor,
            as_of=as_of,
            per_job=settings.CUSTODY_LINEAGE_NODE_LIMIT,
            latest_runs=JOB_RUNS_IN_DETAIL,
        )
        return Response(rendered[0])

    def _job_runs(self, request: Request, match: PathMatch, redactor: Redactor) -> Response:
        job = match.obj
        assert isinstance(job, Job)
        limit, offset = paging(request)
        qs = Run.objects.filter(job=job).order_by("-first_event_time", "-id")
        rows = list(qs.select_related(*RUN_RELATED)[offset : offset + limit])
        return Response({"runs": runs_json(rows, redactor), "totalCount": qs.count()})


def _existing_at(match: PathMatch, as_of: datetime | None) -> Dataset | Job:
    obj = match.obj
    assert obj is not None
    if as_of is not None and obj.created_at > as_of:
        kind = "Dataset" if isinstance(obj, Dataset) else "Job"
        raise NotFound(f"{kind} {obj.name!r} did not exist yet at {as_of.isoformat()}.")
    return obj


# --- runs ------------------------------------------------------------------------------------------


def visible_run(run_id: str, visibility: Visibility) -> Run:
    run = Run.objects.select_related(*RUN_RELATED, "job__parent").filter(run_id=run_id).first()
    if run is None or not visibility.sees(run.job.namespace_id):
        raise NotFound(f"No run {run_id!r}.")
    return run


class RunTreeView(ReadView):
    """``GET /api/v1/jobs/runs/{id}`` (Marquez ``Run``) and ``/jobs/runs/{id}/facets?type=run|job``
    (Marquez ``FacetsResult``; ``type`` defaults to run). Runs of hidden jobs answer 404."""

    @read_schema(
        "getRunOrFacets", "A run, or its run or job facets", query_param("type", OpenApiTypes.STR, "run or job")
    )
    def get(self, request: Request, rest: str) -> Response:
        visibility = visibility_for(request.user)
        redactor = Redactor(visibility)
        if rest.endswith("/facets") and not Run.objects.filter(run_id=rest).exists():
            run = visible_run(rest[: -len("/facets")], visibility)
            kind = (request.query_params.get("type") or "run").strip().lower()
            if kind not in ("run", "job"):
                raise InvalidQuery(f"type must be run or job; got {kind!r}.")
            facets = run.facets if kind == "run" else run.job.facets
            return Response({"runId": run.run_id, "facets": redactor.scrub(facets)})
        run = visible_run(rest, visibility)
        return Response(runs_json([run], redactor)[0])


# --- search ------------------------------------------------------------------------------------------


class SearchView(ReadView):
    """``GET /api/v1/search?q=&filter=DATASET|JOB&sort=NAME|UPDATE_AT&limit=&namespace=&before=&after=``
    (Marquez ``SearchResultList``): datasets and jobs whose name, description, namespace or (for
    datasets) field names match ``q``. Full-text on PostgreSQL, substring elsewhere. Only visible
    namespaces are searched."""

    @read_schema(
        "search",
        "Search datasets and jobs",
        query_param("q", OpenApiTypes.STR, "Text to search for."),
        query_param("filter", OpenApiTypes.STR, "DATASET or JOB."),
        query_param("sort", OpenApiTypes.STR, "NAME or UPDATE_AT."),
        LIMIT,
        query_param("namespace", OpenApiTypes.STR, "Only this namespace."),
        query_param("before", OpenApiTypes.DATE, "Updated before this date."),
        query_param("after", OpenApiTypes.DATE, "Updated after this date."),
    )
    def get(self, request: Request) -> Response:
        q = request.query_params.get("q")
        if q is None or not q.strip():
            raise InvalidQuery("q is required: the text to search for.")
        raw_filter = (request.query_params.get("filter") or "").strip().upper()
        if raw_filter and raw_filter not in FILTERS:
            raise InvalidQuery(f"filter must be DATASET or JOB; got {request.query_params.get('filter')!r}.")
        raw_sort = (request.query_params.get("sort") or "name").strip().upper()
        if raw_sort not in SORTS:
            raise InvalidQuery(f"sort must be NAME or UPDATE_AT; got {request.query_params.get('sort')!r}.")
        query = SearchQuery(
            q=q.strip()[:1024],
            kind=raw_filter or None,
            sort=SORTS[raw_sort],
            limit=int_param(request, "limit", DEFAULT_LIMIT, minimum=0, clamp=MAX_LIMIT),
            namespace=request.query_params.get("namespace") or None,
            before=date_param(request, "before"),
            after=date_param(request, "after"),
        )
        found = search(query, visibility_for(request.user))
        return Response({"totalCount": found.total, "results": found.results})


# --- raw events --------------------------------------------------------------------------------------


class LineageEventsView(ReadView):
    """``GET /api/v1/events/lineage?before=&after=&sortDirection=desc|asc&limit=&offset=``: the raw
    OpenLineage events as received (Marquez ``LineageEventList``), filtered and sorted by event
    time. Only events of visible namespaces (the job's, or the dataset's for a DatasetEvent); inside
    them, identifiers of hidden namespaces are redacted. A page also stops growing past 64 MB of
    payload: then it is shorter than ``limit`` and ``truncated`` is true (continue at
    ``offset + len(events)``)."""

    @read_schema(
        "getLineageEvents",
        "List received OpenLineage events",
        query_param("before", OpenApiTypes.DATETIME, "Events before this instant."),
        query_param("after", OpenApiTypes.DATETIME, "Events after this instant."),
        query_param("sortDirection", OpenApiTypes.STR, "asc or desc (default)."),
        LIMIT,
        OFFSET,
    )
    def get(self, request: Request) -> Response:
        visibility = visibility_for(request.user)
        limit, offset = paging(request)
        before = time_param(request, "before")
        after = time_param(request, "after")
        direction = (request.query_params.get("sortDirection") or "desc").strip().lower()
        if direction not in ("asc", "desc"):
            raise InvalidQuery(f"sortDirection must be asc or desc; got {direction!r}.")
        qs = RawEvent.objects.all()
        if before is not None:
            qs = qs.filter(event_time__lt=before)
        if after is not None:
            qs = qs.filter(event_time__gt=after)
        if not visibility.unrestricted:
            names = Namespace.objects.filter(pk__in=sorted(visibility.namespace_ids or ())).values("name")
            qs = qs.filter(Q(job_namespace__in=names))
        order = ("event_time", "id") if direction == "asc" else ("-event_time", "-id")
        qs = qs.order_by(*order)
        page = list(qs.values_list("pk", "size_bytes")[offset : offset + limit])
        chosen: list[int] = []
        budget, truncated = EVENTS_PAGE_BYTES, False
        for pk, size in page:
            if chosen and size > budget:
                truncated = True
                break
            chosen.append(pk)
            budget -= size
        payloads = dict(RawEvent.objects.filter(pk__in=chosen).values_list("pk", "payload"))
        redactor = Redactor(visibility)
        events = [redactor.scrub(payloads[pk]) for pk in chosen if pk in payloads]
        body: dict[str, Any] = {"events": events, "totalCount": qs.count()}
        if truncated:
            body["truncated"] = True
        return Response(body)
