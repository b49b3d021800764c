"""Graph reads: ``GET /api/v1/lineage``, ``/column-lineage``, and version-level provenance.

``GET /api/v1/lineage?nodeId=...&depth=N`` (Marquez ``LineageGraph`` plus ``truncated``):

- ``nodeId``: ``dataset:<ns>:<name>`` or ``job:<ns>:<name>`` (namespaces and names may contain
  ':'; a dataset may also be named by one of its symlinks), ``run:<runId>`` or
  ``datasetVersion:<ns>:<name>:<uuid>`` for version-level provenance.
- ``depth``: edge hops from the node (each job→dataset or dataset→job step is one; Marquez counts
  job-to-job steps, so its depth d is our 2d). Default 20, at most CUSTODY_LINEAGE_MAX_DEPTH.
- ``withDownstream``: default true, as Marquez always includes downstream lineage; false gives
  upstream only. Traversal is directed: upstream follows data backwards, downstream forwards
  (jobs that merely share an input are not pulled in, unlike Marquez's connected component).
- ``limit``: node limit, capped by CUSTODY_LINEAGE_NODE_LIMIT; when the graph is cut there,
  ``truncated`` is true and at most ``limit`` nodes come back.
- ``asOf``: the graph as of an ISO-8601 instant (edges valid then; dataset fields of the version
  current then). Without it, the current graph. Not accepted for run/version nodes, whose
  provenance is already historical.

For ``run:`` and ``datasetVersion:`` nodes the graph has RUN, DATASET_VERSION (and DATASET, for an
input whose version is unknown) nodes; edges carry ``type`` CONSUMED (``resolution`` declared or
inferred) / PRODUCED, and the root run brings its parent run (PARENT) and code commit
(CODE_COMMIT node, EXECUTED). Kinds registered with ``lineage.graph.register_node_kind`` join
these graphs and can be start nodes too: with governance installed, ``model:<ns>:<name>:<version>``
(MODEL_VERSION, produced by its run) and ``deployment:<id>`` (DEPLOYMENT, edge DEPLOYED from its
model version).

Visibility (``lineage.access``): a start node the caller cannot see answers 404; hidden nodes met
on the way come back as placeholders (type and opaque id only) and the traversal continues
through them. Unknown nodes answer 404; malformed parameters 400.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.http import HttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from rest_framework.request import Request
from rest_framework.response import Response

from lineage.access import redacted_node_id, visibility_for
from lineage.api.marquez import (
    Redactor,
    column_graph_json,
    lineage_graph_json,
    provenance_runs_json,
    runs_json,
    ts,
    version_graph_json,
)
from lineage.api.read_views import (
    AS_OF,
    DEPTH,
    NODE_ID,
    NODE_LIMIT,
    WITH_DOWNSTREAM,
    ReadView,
    bool_param,
    depth_param,
    error_response,
    node_limit_param,
    query_param,
    read_schema,
    time_param,
    visible_run,
)
from lineage.api.renderers import FastJSONRenderer
from lineage.graph import (
    DATASET,
    FIELD,
    JOB,
    RUN,
    VERSION,
    InvalidQuery,
    NodeRef,
    PathMatch,
    ReadError,
    column_lineage,
    dataset_field_names,
    entity_lineage,
    find_dataset_version,
    node_kinds,
    resolve_node_id,
    run_provenance,
    version_lineage,
)
from lineage.models import Dataset, Run

DEFAULT_DEPTH = 20

# For LineageView.get (in ingest_views), which answers GET /api/v1/lineage with lineage_graph_response.
lineage_graph_schema = read_schema(
    "getLineage", "Lineage graph around a node", NODE_ID, DEPTH, WITH_DOWNSTREAM, NODE_LIMIT, AS_OF
)


def lineage_graph_response(request: Request) -> HttpResponseBase:
    """``GET /api/v1/lineage`` (called by ``LineageView.get``); see the module docstring."""
    try:
        return _lineage_graph(request)
    except ReadError as exc:
        return error_response(exc)


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """No cyclic garbage collection inside the block (unless it was already off).

    A large graph answer allocates tens of thousands of dicts and lists that all stay alive
    until it is sent. Each 700 allocations start a collection that walks them again, and their
    survival pushes Python into full collections of the worker's whole heap: at depth 20 on a
    1M-edge graph those took up to a quarter of a second and made the slowest answers five times
    slower than the median. The answer holds no reference cycles; they are freed by reference
    counting once sent, and collection resumes right after the block.

    The collector is one switch for the whole process and a threaded worker answers several
    requests at once: the first block to enter turns it off and the last to leave turns it back
    on (if it was on), under a lock, so no interleaving can leave it off for good."""
    global _gc_blocks, _gc_was_enabled
    with _gc_lock:
        if _gc_blocks == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_blocks += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_blocks -= 1
            if _gc_blocks == 0 and _gc_was_enabled:
                gc.enable()


_gc_lock = threading.Lock()
_gc_blocks = 0  # blocks inside _without_cycle_collection, across the worker's threads
_gc_was_enabled = True


def _lineage_graph(request: Request) -> HttpResponseBase:
    """The answer is also written out while collection is paused, and dropped before it resumes:
    freed by reference counting, its objects never reach a collection (which, with the answer
    still alive during DRF's rendering, cost ~10 ms in one request of twelve)."""
    with _without_cycle_collection():
        answer = _lineage_graph_answer(request)
        renderer = FastJSONRenderer()
        if renderer.get_indent(request.accepted_media_type or "", {}) is not None:
            return answer
        body = renderer.render(answer.data)
        del answer
    return HttpResponse(body, content_type="application/json")


def _lineage_graph_answer(request: Request) -> Response:
    visibility = visibility_for(request.user)
    kinds = (DATASET, JOB, RUN, VERSION, *node_kinds())
    node = resolve_node_id(request.query_params.get("nodeId", ""), visibility, kinds)
    depth = depth_param(request, DEFAULT_DEPTH)
    limit = node_limit_param(request)
    as_of = time_param(request, "asOf")
    downstream = bool_param(request, "withDownstream", True)
    redactor = Redactor(visibility)
    if node.kind in (DATASET, JOB):
        traversal = entity_lineage(node, depth=depth, limit=limit, as_of=as_of, downstream=downstream)
        return Response(lineage_graph_json(traversal, redactor, as_of=as_of))
    if as_of is not None:
        raise InvalidQuery("asOf applies to dataset and job nodes; the provenance of runs and versions is historical.")
    traversal = version_lineage(node, depth=depth, limit=limit, downstream=downstream)
    return Response(version_graph_json(traversal, redactor, root_run=node.pk if node.kind == RUN else None))


class ColumnLineageView(ReadView):
    """``GET /api/v1/column-lineage?nodeId=datasetField:<ns>:<dataset>:<field>|dataset:<ns>:<name>
    &depth=N&withDownstream=false`` (Marquez's column-lineage ``LineageGraph``, plus ``truncated``).

    Upstream only unless ``withDownstream=true`` (Marquez's default). A ``dataset:`` node starts
    from all its fields. ``depth`` counts field-to-field hops (default 20); ``limit`` as for
    ``/lineage``. Column lineage is not versioned, so ``asOf`` is refused (400)."""

    renderer_classes = [FastJSONRenderer]

    @read_schema("getColumnLineage", "Column lineage graph", NODE_ID, DEPTH, WITH_DOWNSTREAM, NODE_LIMIT)
    def get(self, request: Request) -> Response:
        visibility = visibility_for(request.user)
        node = resolve_node_id(request.query_params.get("nodeId", ""), visibility, (FIELD, DATASET))
        depth = depth_param(request, DEFAULT_DEPTH)
        limit = node_limit_param(request)
        downstream = bool_param(request, "withDownstream", False)
        if request.query_params.get("asOf"):
            raise InvalidQuery("asOf is not supported for column lineage: column lineage is not versioned.")
        truncated = False
        if node.kind == FIELD:
            starts = [node.key]
        else:
            names = dataset_field_names(node.pk)
            truncated = len(names) > limit
            starts = [(FIELD, node.pk, name) for name in names[:limit]]
        if not starts:
            return Response({"graph": [], "truncated": False})
        traversal = column_lineage(starts, depth=depth, limit=limit, downstream=downstream)
        traversal.truncated |= truncated
        return Response(column_graph_json(traversal, Redactor(visibility)))


def _provenance_depth(request: Request) -> int:
    return depth_param(request, DEFAULT_DEPTH)


class RunProvenanceView(ReadView):
    """``GET /api/v1/runs/{id}/provenance?depth=N`` (ours): exactly which dataset versions the run
    consumed (``resolution`` declared by the producer, or inferred: the dataset's newest version
    when the run started) and produced, which runs produced those inputs and what they consumed,
    ``depth`` runs deep (default 20), with parent runs and code commits.

    ``{"run": <Marquez Run>, "runs": [<UpstreamRunLineage entries, extended>], "truncated"}``.
    Runs of hidden jobs answer 404; hidden ancestors are redacted placeholders."""

    @read_schema("getRunProvenance", "Version-level provenance of a run", DEPTH, NODE_LIMIT)
    def get(self, request: Request, rest: str) -> Response:
        if not rest.endswith("/provenance"):
            return error_response(InvalidQuery("Expected /api/v1/runs/{id}/provenance."))
        visibility = visibility_for(request.user)
        run = visible_run(rest[: -len("/provenance")], visibility)
        depth = _provenance_depth(request)
        limit = node_limit_param(request)
        redactor = Redactor(visibility)
        traversal = run_provenance(NodeRef(RUN, run.pk, run.job.namespace_id), depth=depth, limit=limit)
        return Response(
            {
                "run": runs_json([run], redactor)[0],
                "runs": provenance_runs_json(traversal, redactor),
                "truncated": traversal.truncated,
            }
        )


class RunLineageUpstreamView(ReadView):
    """``GET /api/v1/runlineage/upstream?runId=&depth=`` (Marquez ``UpstreamRunLineage``): the run
    and the runs upstream of it, each with the dataset versions it consumed."""

    @read_schema(
        "getRunLineageUpstream", "Upstream runs of a run", query_param("runId", OpenApiTypes.STR, "The run."), DEPTH
    )
    def get(self, request: Request) -> Response:
        visibility = visibility_for(request.user)
        run_id = request.query_params.get("runId") or ""
        if not run_id:
            raise InvalidQuery("runId is required.")
        run = visible_run(run_id, visibility)
        traversal = run_provenance(
            NodeRef(RUN, run.pk, run.job.namespace_id),
            depth=_provenance_depth(request),
            limit=node_limit_param(request),
        )
        return Response(
            {"runs": provenance_runs_json(traversal, Redactor(visibility)), "truncated": traversal.truncated}
        )


def dataset_version_provenance(request: Request, match: PathMatch, redactor: Redactor) -> Response:
    """``GET /api/v1/namespaces/{ns}/datasets/{name}/versions/{version}/provenance?depth=N`` (ours):
    the run that produced the version and, recursively ``depth`` runs deep, the versions that run
    consumed and the runs that produced them."""
    dataset = match.obj
    assert isinstance(dataset, Dataset)
    version = find_dataset_version(dataset, match.version)
    depth = _provenance_depth(request)
    limit = node_limit_param(request)
    start = NodeRef(VERSION, version.pk, dataset.namespace_id)
    traversal = version_lineage(start, depth=2 * depth, limit=limit, upstream=True, downstream=False)
    producer_id = None
    if version.run_id is not None:
        run_id, ns_id = Run.objects.filter(pk=version.run_id).values_list("run_id", "job__namespace_id").get()
        producer_id = run_id if redactor.visibility.sees(ns_id) else redacted_node_id(RUN, version.run_id)
    return Response(
        {
            "version": {
                "namespace": dataset.namespace.name,
                "name": dataset.name,
                "version": str(version.uuid),
                "versionLabel": version.version,
                "createdAt": ts(version.created_at),
            },
            "producedByRunId": producer_id,
            "runs": provenance_runs_json(traversal, redactor),
            "truncated": traversal.truncated,
        }
    )
