"""Lineage query latency: ``GET /api/v1/lineage?nodeId=dataset:NS:NAME&depth=N`` through HTTP on
generated graphs of 10k, 100k and 1M edges (bench/graphgen.py), at depth 5, 10 and 20, the same at
depth 10 with ``asOf``, and the hub node, each beside a raw recursive SQL query over the same edge
table at the same depth, measured in the same run and interleaved request by request.

    .venv/bin/python -m bench.lineage_query [--sizes 10000,100000,1000000] [--rounds 3] [--per-round 60]
                                            [--keep-graphs] [--reuse-graphs]

Depth counts edge hops, as the endpoint does (dataset→job and job→dataset are one hop each), and
both directions are followed (the endpoint's default ``withDownstream=true``). The baseline
returns the (kind, id) of every node within that depth up- and downstream, valid now (or as of the
instant), cut at the same node limit; it fetches no names or fields, so it is a floor, not a twin.
One keep-alive client; gunicorn with 2 workers as in production. p50/p95 per query are pooled over
all rounds; the per-round p95s are in the results file.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench import common, graphgen

TARGET_P95_MS = {10: 25.0, 20: 60.0}
FLOOR = "floor: GET /healthz (one SELECT 1)"
NODE_LIMIT = 5000

BASELINE_SQL = """
WITH RECURSIVE
up(kind, id, depth) AS (
    SELECT %(kind)s::text, %(start)s::bigint, 0
    UNION
    SELECT n.kind, n.id, up.depth + 1 FROM up CROSS JOIN LATERAL (
        SELECT 'j'::text AS kind, e.job_id AS id FROM lineage_jobdatasetedge e
        WHERE up.kind = 'd' AND e.dataset_id = up.id AND e.direction = 1 AND {valid}
        UNION ALL
        SELECT 'd'::text, e.dataset_id FROM lineage_jobdatasetedge e
        WHERE up.kind = 'j' AND e.job_id = up.id AND e.direction = 0 AND {valid}
    ) n
    WHERE up.depth < %(depth)s
),
down(kind, id, depth) AS (
    SELECT %(kind)s::text, %(start)s::bigint, 0
    UNION
    SELECT n.kind, n.id, down.depth + 1 FROM down CROSS JOIN LATERAL (
        SELECT 'j'::text AS kind, e.job_id AS id FROM lineage_jobdatasetedge e
        WHERE down.kind = 'd' AND e.dataset_id = down.id AND e.direction = 0 AND {valid}
        UNION ALL
        SELECT 'd'::text, e.dataset_id FROM lineage_jobdatasetedge e
        WHERE down.kind = 'j' AND e.job_id = down.id AND e.direction = 1 AND {valid}
    ) n
    WHERE down.depth < %(depth)s
)
SELECT DISTINCT kind, id FROM (SELECT kind, id FROM up UNION ALL SELECT kind, id FROM down) t
LIMIT %(limit)s
"""
VALID_NOW = "e.valid_to IS NULL"
VALID_AS_OF = "e.valid_from <= %(as_of)s AND (e.valid_to IS NULL OR e.valid_to > %(as_of)s)"


@dataclass
class Series:
    label: str
    http_ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    nodes: list[int] = field(default_factory=list)
    sql_nodes: list[int] = field(default_factory=list)
    truncated: int = 0
    errors: int = 0
    first_error: str = ""
    round_p95_http: list[float] = field(default_factory=list)
    round_p95_sql: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "requests": len(self.http_ms),
            "http_p50_ms": common.percentile(self.http_ms, 50),
            "http_p95_ms": common.percentile(self.http_ms, 95),
            "sql_p50_ms": common.percentile(self.sql_ms, 50),
            "sql_p95_ms": common.percentile(self.sql_ms, 95),
            "nodes_median": common.median([float(n) for n in self.nodes]),
            "nodes_max": max(self.nodes, default=0),
            "sql_nodes_median": common.median([float(n) for n in self.sql_nodes]),
            "truncated": self.truncated,
            "errors": self.errors,
            "first_error": self.first_error,
            "round_p95_http_ms": self.round_p95_http,
            "round_p95_sql_ms": self.round_p95_sql,
        }


class Client:
    def __init__(self, server: common.Server, token: str) -> None:
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def lineage(self, node_id: str, depth: int, as_of: str | None = None) -> tuple[float, int, bytes]:
        query = {"nodeId": node_id, "depth": str(depth)}
        if as_of:
            query["asOf"] = as_of
        path = "/api/v1/lineage?" + urllib.parse.urlencode(query)
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        return (time.perf_counter() - t0) * 1000, response.status, body

    def healthz(self) -> tuple[float, int]:
        t0 = time.perf_counter()
        self.conn.request("GET", "/healthz")
        response = self.conn.getresponse()
        response.read()
        return (time.perf_counter() - t0) * 1000, response.status

    def close(self) -> None:
        self.conn.close()


def _node_pk(conn: psycopg.Connection[Any], node_id: str) -> tuple[str, int]:
    """("d" or "j", primary key) of a ``dataset:NS:NAME`` or ``job:NS:NAME`` node id."""
    kind, namespace, name = node_id.split(":", 2)
    table = "lineage_dataset" if kind == "dataset" else "lineage_job"
    row = conn.execute(
        f"SELECT t.id FROM {table} t JOIN lineage_namespace n ON n.id = t.namespace_id "
        "WHERE n.name = %s AND t.name = %s",
        (namespace, name),
    ).fetchone()
    if row is None:
        raise LookupError(node_id)
    return kind[0], int(row[0])


def _baseline(
    conn: psycopg.Connection[Any], start: tuple[str, int], depth: int, as_of: str | None
) -> tuple[float, int]:
    sql = BASELINE_SQL.format(valid=VALID_AS_OF if as_of else VALID_NOW)
    params: dict[str, Any] = {
        "kind": start[0],
        "start": start[1],
        "depth": depth,
        "limit": NODE_LIMIT,
        "as_of": as_of,
    }
    t0 = time.perf_counter()
    rows = conn.execute(sql, params).fetchall()
    return (time.perf_counter() - t0) * 1000, len(rows)


def measure_graph(meta: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    database = meta["database"]
    common.migrate(database)
    token = common.create_token(database, f"bench{int(time.time() * 1000) % 10**8}")
    nodes: list[str] = meta["sample_nodes"][: args.per_round]
    as_of = "2025-01-10T00:00:00Z"  # after every pipeline edge opened, before any input change closed one
    with (
        common.Server(database, worker_class=args.worker_class, threads=args.threads) as server,
        psycopg.connect(common.db_url(database), autocommit=True) as pg,
    ):
        client = Client(server, token)
        extra = [meta["hub_node"], *([meta["hub_consumer_node"]] if meta.get("hub_consumer_node") else [])]
        starts = {node: _node_pk(pg, node) for node in [*nodes, *extra]}
        # warm up both sides (plans, caches, connections) on nodes not used for timing
        for node in meta["sample_nodes"][-20:]:
            client.lineage(node, 10)
            _baseline(pg, _node_pk(pg, node), 10, None)
        _, status, body = client.lineage(nodes[0], 5)
        if status in (404, 405, 501):
            client.close()
            raise SystemExit(f"GET /api/v1/lineage answered {status}: no read endpoint yet: {body[:200]!r}")
        plan: list[tuple[str, int, str | None, list[str]]] = [(f"depth {d}", d, None, nodes) for d in args.depths]
        plan.append(("depth 10 asOf", 10, as_of, nodes))
        plan.append(
            (
                f"hub depth {args.hub_depth} ({meta['hub_neighbours']:,} neighbours)",
                args.hub_depth,
                None,
                [meta["hub_node"]] * max(5, args.per_round // 4),
            )
        )
        if meta.get("hub_consumer_node"):
            # A job that reads the hub: its upstream is 2 nodes, but the level query reaches the hub.
            plan.append(
                (
                    f"hub consumer job depth {args.hub_depth}",
                    args.hub_depth,
                    None,
                    [meta["hub_consumer_node"]] * max(5, args.per_round // 4),
                )
            )
        series = {label: Series(label) for label, *_ in plan}
        floor = series[FLOOR] = Series(FLOOR)
        for round_no in range(args.rounds):
            # The per-request floor of this server on this machine right now: Django, one SELECT 1.
            round_floor = []
            for _ in range(args.per_round):
                ms, status = client.healthz()
                if status == 200:
                    floor.http_ms.append(ms)
                    round_floor.append(ms)
            floor.round_p95_http.append(common.percentile(round_floor, 95))
            for label, depth, when, targets in plan:
                s = series[label]
                round_http: list[float] = []
                round_sql: list[float] = []
                for i, node in enumerate(targets):
                    http_first = (i + round_no) % 2 == 0
                    if not http_first:
                        sql_ms, sql_n = _baseline(pg, starts[node], depth, when)
                    ms, status, body = client.lineage(node, depth, when)
                    if http_first:
                        sql_ms, sql_n = _baseline(pg, starts[node], depth, when)
                    if status != 200:
                        s.errors += 1
                        s.first_error = s.first_error or f"{status} {body[:300]!r}"
                        continue
                    doc = json.loads(body)
                    s.nodes.append(len(doc.get("graph", [])))
                    s.truncated += bool(doc.get("truncated"))
                    s.http_ms.append(ms)
                    s.sql_ms.append(sql_ms)
                    s.sql_nodes.append(sql_n)
                    round_http.append(ms)
                    round_sql.append(sql_ms)
                s.round_p95_http.append(common.percentile(round_http, 95))
                s.round_p95_sql.append(common.percentile(round_sql, 95))
                http_p95, sql_p95 = common.percentile(round_http, 95), common.percentile(round_sql, 95)
                common.log(
                    f"  {meta['edges']:>9,} edges  round {round_no + 1}  {label:38s} "
                    f"http p95 {http_p95:7.1f} ms  sql p95 {sql_p95:7.1f} ms"
                    f"  nodes~{common.median([float(n) for n in s.nodes[-len(targets) :]]):.0f}"
                    f" load={os.getloadavg()[0]:.2f}"
                )
        client.close()
    return {
        "graph": {k: v for k, v in meta.items() if k not in ("sample_nodes",)},
        "series": {k: v.summary() for k, v in series.items()},
        "server": server.describe(),
    }


def main() -> None:
    common.install_signal_handlers()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--depths", default="5,10,20")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=60, help="queries per depth per round (distinct nodes)")
    parser.add_argument("--hub-depth", type=int, default=10)
    parser.add_argument("--worker-class", default="gthread", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-graphs", action="store_true", help="keep the generated databases")
    parser.add_argument("--reuse-graphs", action="store_true", help="reuse kept graph databases when present")
    args = parser.parse_args()
    args.depths = [int(x) for x in args.depths.split(",") if x]
    results: dict[str, Any] = {}
    for size in [int(x) for x in args.sizes.split(",") if x]:
        name = f"{common.DB_PREFIX}_graph_{graphgen._size_label(size)}"
        meta_path = common.RESULTS_DIR / f"graph-{name}.json"
        if args.reuse_graphs and meta_path.exists() and common.database_exists(name):
            meta = json.loads(meta_path.read_text())
            common.log(f"reusing {name}")
        else:
            meta = graphgen.build(size, keep=args.keep_graphs or args.reuse_graphs)
        try:
            results[str(size)] = measure_graph(meta, args)
        finally:
            if not (args.keep_graphs or args.reuse_graphs):
                common.drop_database(meta["database"])
    report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    rows = []
    verdicts = []
    for size, result in results.items():
        graph = result["graph"]
        for label, s in result["series"].items():
            rows.append(
                [
                    f"{graph['edges']:,}",
                    label,
                    common.fmt(s["http_p50_ms"]),
                    common.fmt(s["http_p95_ms"]),
                    common.fmt(s["sql_p50_ms"]),
                    common.fmt(s["sql_p95_ms"]),
                    common.fmt(s["nodes_median"], 0),
                    common.fmt(s["sql_nodes_median"], 0),
                    f"{s['truncated']}/{s['requests']}",
                    str(s["errors"]),
                ]
            )
        if int(size) >= 1_000_000:
            for depth, target in TARGET_P95_MS.items():
                s = result["series"].get(f"depth {depth}")
                if s:
                    ok = s["http_p95_ms"] <= target
                    verdicts.append(
                        f"target depth {depth} p95 <= {target:.0f} ms at 1M edges: "
                        f"{'met' if ok else 'MISSED'} ({s['http_p95_ms']:.1f} ms)"
                    )
            hub = next((s for k, s in result["series"].items() if k.startswith("hub")), None)
            if hub:
                ok = hub["truncated"] == hub["requests"] and hub["nodes_max"] <= NODE_LIMIT and hub["requests"] > 0
                verdicts.append(
                    f"target hub bounded by the node limit and truncated: {'met' if ok else 'MISSED'} "
                    f"({hub['nodes_max']} nodes max, truncated {hub['truncated']}/{hub['requests']})"
                )
    print()
    print(
        f"Lineage queries — GET /api/v1/lineage through gunicorn 2 workers ({args.worker_class}); baseline: "
        "recursive SQL on lineage_jobdatasetedge, same depth and node limit"
    )
    print(
        common.table(
            [
                "edges",
                "query",
                "http p50",
                "http p95",
                "sql p50",
                "sql p95",
                "nodes",
                "sql nodes",
                "truncated",
                "errors",
            ],
            rows,
        )
    )
    for result in results.values():
        consumer = next((s for k, s in result["series"].items() if k.startswith("hub consumer")), None)
        if consumer and consumer["requests"]:
            exact = consumer["sql_nodes_median"]
            ok = consumer["truncated"] == 0 and consumer["nodes_median"] == exact
            verdicts.append(
                f"check hub consumer at {result['graph']['edges']:,} edges: {consumer['nodes_median']:.0f} nodes, "
                f"truncated {consumer['truncated']}/{consumer['requests']} (exact answer: {exact:.0f} nodes, "
                f"not truncated) -> {'ok' if ok else 'WRONG'}"
            )
    for line in verdicts:
        print(line)
    path = common.write_results("lineage_query", {"results": results, "node_limit": NODE_LIMIT})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
