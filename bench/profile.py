"""In-process profiles of the paths the benchmarks time, for finding hotspots when a target is missed.

    .venv/bin/python -m bench.profile ingest [--events 300]      # single-event POSTs, then batches of 100
    .venv/bin/python -m bench.profile query [--edges 10000] [--depth 20] [--queries 40]
    .venv/bin/python -m bench.profile rss                       # allocation profile of one 32 MB event

Requests go through Django's test client (URL routing, middleware, bearer-token auth, the view,
rendering), on PostgreSQL, without gunicorn or sockets. Prints CPU-ms and SQL statements per
operation (statements counted in a separate, unprofiled pass), the top functions by own CPU time
and by cumulative CPU time within Custody's code, and writes ``bench/results/profile-<what>.prof``
(``python -m pstats`` or snakeviz can open it). The profiler's clock is process CPU time, so
waiting on PostgreSQL is not counted; PostgreSQL's own CPU is in the benchmarks' "db cpu" column.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import os
import pstats
import re
import time
from collections.abc import Callable
from typing import Any

from bench import common

SHOW_SQL = os.environ.get("BENCH_SHOW_SQL", "")  # a regex over statement kinds: print one example of each


def _setup(database: str) -> None:
    os.environ.update(common.server_env(database, ALLOWED_HOSTS="testserver,127.0.0.1"))
    import django

    django.setup()


def _statement_kinds(run: Callable[[], Any], ops: int) -> tuple[int, list[tuple[str, int]]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        run()
    kinds: collections.Counter[str] = collections.Counter()
    shown: set[str] = set()
    for q in captured.captured_queries:
        sql = q["sql"] or ""  # None when the driver cannot show it (e.g. a prepared statement)
        if sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")):
            kinds[sql.split(' "')[0]] += 1
            continue
        m = re.match(r'(SELECT|INSERT INTO|UPDATE|DELETE FROM)\s.*?"(\w+)"', sql, re.S)
        kind = f"{m.group(1)} {m.group(2)}" if m else sql[:40]
        if m and m.group(1) == "SELECT" and re.search(r" FOR (NO KEY )?UPDATE", sql):
            kind += " FOR UPDATE"
        kinds[kind] += 1
        if SHOW_SQL and re.search(SHOW_SQL, kind) and kind not in shown:
            shown.add(kind)
            print(f"  [{kind}] {sql[:600]}")
    return len(captured.captured_queries), [(k, v) for k, v in kinds.most_common()]


def _profile(name: str, run: Callable[[], Any], ops: int, label: str) -> dict[str, Any]:
    profiler = cProfile.Profile(time.process_time)
    wall = time.perf_counter()
    profiler.enable()
    run()
    profiler.disable()
    wall = time.perf_counter() - wall
    path = common.RESULTS_DIR / f"profile-{name}.prof"
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(str(path))
    stats = pstats.Stats(profiler)
    total_cpu = stats.total_tt  # type: ignore[attr-defined]
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(r"/(lineage|governance)/", 35)
    print(
        f"\n=== {label}: {ops} operations, {total_cpu / ops * 1000:.1f} CPU-ms per operation under the profiler, "
        f"{wall / ops * 1000:.1f} ms wall; profile written to {path}"
    )
    text = out.getvalue()
    text = text.replace(str(common.REPO) + "/", "").replace(".venv/lib/python3.11/site-packages/", "")
    print(text)
    return {"ops": ops, "cpu_ms_per_op_profiled": total_cpu / ops * 1000, "prof": str(path)}


def profile_ingest(args: argparse.Namespace) -> None:
    database = common.fresh_database("profile_ingest")
    token = common.create_token(database)
    _setup(database)
    from django.test import Client

    from bench.events import EventFactory

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    factory = EventFactory(0, seed=1)

    def post_single(events: list[dict[str, Any]]) -> None:
        for event in events:
            response = client.post("/api/v1/lineage", data=json.dumps(event), content_type="application/json")
            assert response.status_code == 201, response.content[:300]

    def post_batches(events: list[dict[str, Any]]) -> None:
        for i in range(0, len(events), 100):
            response = client.post(
                "/api/v1/lineage/batch", data=json.dumps(events[i : i + 100]), content_type="application/json"
            )
            assert response.status_code == 200 and b'"failed":0' in response.content, response.content[:300]

    post_single(factory.events(200))  # warm the graph up: existing jobs and datasets, as in steady state
    cpu = time.process_time()
    sample = factory.events(args.events)
    post_single(sample)
    cpu_single = (time.process_time() - cpu) / len(sample) * 1000
    count, kinds = _statement_kinds(lambda: post_single(factory.events(20)), 20)
    print(
        f"single-event POST, unprofiled: {cpu_single:.1f} CPU-ms per event in the web process; "
        f"{count / 20:.1f} SQL statements per event:"
    )
    for kind, n in kinds:
        print(f"  {n / 20:6.2f}  {kind}")
    _profile("ingest-single", lambda: post_single(factory.events(args.events)), args.events, "single-event POSTs")
    batch = factory.events(args.events)
    cpu = time.process_time()
    post_batches(batch)
    cpu_batch = (time.process_time() - cpu) / len(batch) * 1000
    count, kinds = _statement_kinds(lambda: post_batches(factory.events(100)), 100)
    print(
        f"batch POST (100 per request), unprofiled: {cpu_batch:.1f} CPU-ms per event; "
        f"{count / 100:.1f} SQL statements per event:"
    )
    for kind, n in kinds[:25]:
        print(f"  {n / 100:6.2f}  {kind}")
    _profile("ingest-batch", lambda: post_batches(factory.events(args.events)), args.events, "batch POSTs (per event)")


def profile_query(args: argparse.Namespace) -> None:
    from bench import graphgen

    name = f"{common.DB_PREFIX}_graph_{graphgen._size_label(args.edges)}"
    _setup(name)  # settings before Django loads
    meta_path = common.RESULTS_DIR / f"graph-{name}.json"
    if args.reuse_graph and meta_path.exists() and common.database_exists(name):
        meta = json.loads(meta_path.read_text())
        common.migrate(name)
    else:
        meta = graphgen.build(args.edges)
    database = meta["database"]
    token = common.create_token(database)
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    nodes = meta["sample_nodes"][: args.queries]

    def query(targets: list[str]) -> None:
        for node in targets:
            response = client.get("/api/v1/lineage", {"nodeId": node, "depth": str(args.depth)})
            assert response.status_code == 200, response.content[:300]

    query(meta["sample_nodes"][-10:])
    sizes = [
        len(json.loads(client.get("/api/v1/lineage", {"nodeId": n, "depth": str(args.depth)}).content)["graph"])
        for n in nodes[:10]
    ]
    cpu = time.process_time()
    query(nodes)
    cpu_query = (time.process_time() - cpu) / len(nodes) * 1000
    count, kinds = _statement_kinds(lambda: query(nodes[:10]), 10)
    typical = sorted(sizes)[len(sizes) // 2]
    print(
        f"GET /api/v1/lineage depth {args.depth} on {meta['edges']:,} edges (~{typical} nodes), "
        f"unprofiled: {cpu_query:.1f} CPU-ms per query; {count / 10:.1f} SQL statements per query:"
    )
    for kind, n in kinds:
        print(f"  {n / 10:6.2f}  {kind}")
    _profile("query", lambda: query(nodes), len(nodes), f"lineage queries at depth {args.depth}")


def profile_rss(args: argparse.Namespace) -> None:
    """Python-heap memory by ingestion stage for one big event: live before, peak during, live after.

    tracemalloc sees Python objects only; libpq's send buffer (a copy of every query, so of the
    payload) and allocator fragmentation are on top of these figures in the worker's VmHWM."""
    import tracemalloc

    from bench.rss_32mb import big_event

    database = common.fresh_database("profile_rss")
    token = common.create_token(database)
    _setup(database)
    from django.test import Client

    from lineage.api import ingest_views
    from lineage.ingest import project, service

    stages: list[tuple[str, float, float, float]] = []
    child_peaks: list[int] = [0]  # a stack: the highest peak seen by nested stages, per open stage

    def staged(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **kw: Any) -> Any:
            live_before, running_peak = tracemalloc.get_traced_memory()
            child_peaks[-1] = max(child_peaks[-1], running_peak)  # what the enclosing stage saw so far
            tracemalloc.reset_peak()
            child_peaks.append(0)
            try:
                return fn(*a, **kw)
            finally:
                live_after, peak = tracemalloc.get_traced_memory()
                peak = max(peak, child_peaks.pop())
                child_peaks[-1] = max(child_peaks[-1], peak)
                stages.append((name, live_before / 2**20, peak / 2**20, live_after / 2**20))

        return wrapper

    # (owner, attribute, label): wrapped when present, so the profile follows the code as it changes
    points: list[tuple[Any, str, str]] = [
        (ingest_views, "read_limited", "read body (read_limited)"),
        (ingest_views, "decode_json", "json.loads (decode_json)"),
        (ingest_views, "ingest", "ingest() total"),
        (service, "prepare", "  prepare: parse + canonical JSON + digest"),
        (service, "_store_raw", "  store raw events (_store_raw)"),
        (service, "project", "  project() total"),
        (getattr(project, "Workspace", None), "load", "    workspace load"),
        (project.Projector, "apply", "    apply events in memory (Projector.apply)"),
        (getattr(project, "Workspace", None), "flush", "    workspace flush (bulk writes)"),
        (project.Projector, "finish", "    finish (versions, schema changes)"),
    ]
    for owner, attribute, label in points:
        if owner is not None and hasattr(owner, attribute):
            setattr(owner, attribute, staged(label, getattr(owner, attribute)))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", raise_request_exception=False)
    from bench.events import EventFactory

    small = EventFactory(0, seed=5).pair()[0]
    warm = client.post("/api/v1/lineage", data=json.dumps(small), content_type="application/json")
    assert warm.status_code == 201, warm.content[:300]
    stages.clear()
    body = json.dumps(big_event(int(args.mb * 2**20), args.kind)).encode()
    tracemalloc.start(1)
    base = tracemalloc.get_traced_memory()[0]
    response = client.post("/api/v1/lineage", data=body, content_type="application/json")
    total_peak = max(tracemalloc.get_traced_memory()[1], child_peaks[0])
    tracemalloc.stop()
    print(f"{args.kind} event, body {len(body) / 2**20:.1f} MiB -> {response.status_code} {response.content[:200]!r}")
    print("Python heap (tracemalloc), MiB, relative to before the request; the test client holds the body too:")
    print(
        common.table(
            ["stage", "live before", "peak during", "live after"],
            [
                [n, f"{b - base / 2**20:.0f}", f"{p - base / 2**20:.0f}", f"{a - base / 2**20:.0f}"]
                for n, b, p, a in stages
            ],
        )
    )
    print(f"peak over the whole request: {total_peak / 2**20 - base / 2**20:.0f} MiB above the baseline")


def main() -> None:
    common.install_signal_handlers()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["ingest", "query", "rss"])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--edges", type=int, default=10_000)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--reuse-graph", action="store_true", help="query: use a graph kept by lineage_query")
    parser.add_argument("--kind", default="custom", choices=["schema", "custom"], help="rss: big event variant")
    parser.add_argument("--mb", type=float, default=32.0, help="rss: event size")
    args = parser.parse_args()
    {"ingest": profile_ingest, "query": profile_query, "rss": profile_rss}[args.what](args)


if __name__ == "__main__":
    main()
