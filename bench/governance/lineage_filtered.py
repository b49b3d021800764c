"""Permission-filtered lineage: ``GET /api/v1/lineage?nodeId=dataset:NS:NAME&depth=10`` on a 1M-edge
graph spread over 1,000 namespaces, as a data scientist who may see half of them (hidden nodes come
back as redacted placeholders), beside the same query by an admin (unfiltered), interleaved request
by request in the same run. Target: filtered p95 <= 1.5x unfiltered p95.

    .venv/bin/python -m bench.governance.lineage_filtered [--edges 1000000] [--namespaces 1000]
        [--rounds 3] [--per-round 60] [--depth 10] [--keep] [--reuse]

The graph comes from bench/graphgen.py (pipelines 30 layers deep, a 100k-consumer hub); its
datasets and jobs are then spread over ``--namespaces`` namespaces ``team-0000``...  by a hash of
their id, so a depth-10 traversal crosses many namespaces (about half of them hidden from the
data scientist: the redaction path is exercised on every request, not a corner case). A third
series, a data scientist granted *every* namespace, separates the cost of the permission lookup
from the effect of redaction. Start nodes are middle-layer datasets in namespaces the data
scientist can see. One keep-alive client; gunicorn 2 workers (gthread), DEBUG off.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import time
import urllib.parse
from typing import Any

from bench import common, graphgen
from bench.governance import dbs

SERIES = ("unfiltered (admin)", "filtered (sees 50%)", "filtered (sees 100%)")
TARGET_RATIO = 1.5


def spread_namespaces(database: str, count: int) -> None:
    """Move every dataset and job into one of ``count`` team namespaces (by a hash of its id)."""
    with dbs.connect(database) as conn:
        conn.execute(
            "INSERT INTO lineage_namespace (name, owner_name, description, created_at, updated_at) "
            "SELECT 'team-' || lpad(g::text, 4, '0'), '', '', now(), now() FROM generate_series(0, %s - 1) g "
            "ON CONFLICT (name) DO NOTHING",
            (count,),
        )
        teams = (
            "(SELECT id, (row_number() OVER (ORDER BY name)) - 1 AS k FROM lineage_namespace WHERE name LIKE 'team-%%')"
        )
        for table in ("lineage_dataset", "lineage_job"):
            conn.execute(
                f"UPDATE {table} t SET namespace_id = n.id FROM {teams} n WHERE n.k = (t.id * 7919) %% %s",
                (count,),
            )
        conn.execute("ANALYZE lineage_dataset")
        conn.execute("ANALYZE lineage_job")
        conn.execute("ANALYZE lineage_namespace")


def grant_view(database: str, username: str, every: int) -> int:
    """View on every ``every``-th team namespace (1: all of them), as guardian rows. Returns how many."""
    with dbs.connect(database) as conn:
        user_id = conn.execute("SELECT id FROM auth_user WHERE username = %s", (username,)).fetchone()[0]
        perm_id = conn.execute(
            "SELECT p.id FROM auth_permission p JOIN django_content_type c ON c.id = p.content_type_id "
            "WHERE c.app_label = 'lineage' AND p.codename = 'view_namespace'"
        ).fetchone()[0]
        rows = conn.execute(
            "INSERT INTO permissions_namespaceuserobjectpermission (permission_id, user_id, content_object_id) "
            "SELECT %s, %s, id FROM (SELECT id, (row_number() OVER (ORDER BY name)) - 1 AS k "
            "FROM lineage_namespace WHERE name LIKE 'team-%%') n WHERE n.k %% %s = 0 "
            "ON CONFLICT DO NOTHING RETURNING id",
            (perm_id, user_id, every),
        ).fetchall()
    return len(rows)


def start_nodes(database: str, username: str, wanted: int, seed: int = 7) -> list[str]:
    """Middle-layer datasets in namespaces ``username`` may see."""
    with dbs.connect(database) as conn:
        rows = conn.execute(
            """
            SELECT n.name, d.name FROM lineage_dataset d JOIN lineage_namespace n ON n.id = d.namespace_id
            WHERE d.name ~ 'layer_1[3-6]' AND n.id IN (
                SELECT g.content_object_id FROM permissions_namespaceuserobjectpermission g
                JOIN auth_user u ON u.id = g.user_id WHERE u.username = %s)
            ORDER BY d.id LIMIT 5000
            """,
            (username,),
        ).fetchall()
    rng = random.Random(seed)
    picked = rng.sample(rows, min(wanted, len(rows)))
    return [f"dataset:{ns}:{name}" for ns, name in picked]


class Client:
    def __init__(self, server: common.Server, token: str) -> None:
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def lineage(self, node_id: str, depth: int) -> tuple[float, int, bytes]:
        path = "/api/v1/lineage?" + urllib.parse.urlencode({"nodeId": node_id, "depth": str(depth)})
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        return (time.perf_counter() - t0) * 1000, response.status, body


def shape(body: bytes) -> tuple[int, int]:
    graph = json.loads(body)["graph"]
    return len(graph), sum(1 for node in graph if node.get("data", {}).get("redacted"))


def main() -> None:
    common.install_signal_handlers()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--namespaces", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=60)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept database")
    args = parser.parse_args()

    suffix = f"graph_{args.edges // 1000}k_{args.namespaces}ns"
    database = dbs.PREFIX + suffix
    meta: dict[str, Any] = {}
    if args.reuse and common.database_exists(database):
        common.migrate(database)
        common.log(f"reusing {database}")
    else:
        database = dbs.fresh(suffix, keep=args.keep)
        with common.timed(f"graph of {args.edges:,} edges"):
            meta = graphgen.generate(database, args.edges, graphgen.default_hub(args.edges))
        with common.timed(f"spread over {args.namespaces} namespaces"):
            spread_namespaces(database, args.namespaces)
    tokens = {}
    with dbs.connect(database) as conn:
        conn.execute("DELETE FROM accounts_apitoken WHERE label = 'bench'")
    for series, (user, role, every) in zip(
        SERIES,
        (("gov-admin", "admin", 0), ("gov-ds-half", "data_scientist", 2), ("gov-ds-all", "data_scientist", 1)),
        strict=True,
    ):
        tokens[series] = dbs.user_with_token(database, user, role)
        if every:
            granted = grant_view(database, user, every)
            common.log(f"{user}: view on {granted} new namespaces")
    nodes = start_nodes(database, "gov-ds-half", args.per_round)
    samples: dict[str, list[float]] = {s: [] for s in SERIES}
    round_p95: dict[str, list[float]] = {s: [] for s in SERIES}
    sizes: dict[str, list[int]] = {s: [] for s in SERIES}
    redacted: dict[str, list[int]] = {s: [] for s in SERIES}
    errors = {s: 0 for s in SERIES}
    mismatches = 0
    with common.Server(database) as server:
        clients = {s: Client(server, tokens[s]) for s in SERIES}
        for node in nodes[:5]:  # warm-up
            for s in SERIES:
                clients[s].lineage(node, args.depth)
        for rnd in range(args.rounds):
            this_round: dict[str, list[float]] = {s: [] for s in SERIES}
            for i, node in enumerate(nodes):
                order = list(SERIES) if (i + rnd) % 2 == 0 else list(reversed(SERIES))
                answers = {}
                for s in order:
                    ms, status, body = clients[s].lineage(node, args.depth)
                    if status != 200:
                        errors[s] += 1
                        continue
                    samples[s].append(ms)
                    this_round[s].append(ms)
                    answers[s] = shape(body)
                for s, (total, hidden) in answers.items():
                    sizes[s].append(total)
                    redacted[s].append(hidden)
                if len({total for total, _ in answers.values()}) > 1:
                    mismatches += 1
            for s in SERIES:
                round_p95[s].append(common.percentile(this_round[s], 95))
            common.log(f"round {rnd + 1}: " + ", ".join(f"{s} p95 {round_p95[s][-1]:.1f} ms" for s in SERIES))
    base = common.percentile(samples[SERIES[0]], 95)
    rows = []
    summary: dict[str, Any] = {}
    for s in SERIES:
        p95 = common.percentile(samples[s], 95)
        summary[s] = {
            "p50_ms": round(common.median(samples[s]), 2),
            "p95_ms": round(p95, 2),
            "round_p95_ms": [round(x, 2) for x in round_p95[s]],
            "ratio_p95_to_unfiltered": round(p95 / base, 3),
            "median_nodes": common.median(sizes[s]),
            "median_redacted_nodes": common.median(redacted[s]),
            "requests": len(samples[s]),
            "errors": errors[s],
        }
        rows.append(
            [
                s,
                common.fmt(common.median(samples[s])),
                common.fmt(p95),
                common.fmt(p95 / base, 2) + "x",
                common.fmt(common.median(sizes[s]), 0),
                common.fmt(common.median(redacted[s]), 0),
                str(errors[s]),
            ]
        )
    ratio = summary[SERIES[1]]["ratio_p95_to_unfiltered"]
    print(
        f"\nlineage depth {args.depth}, {args.edges:,} edges, {args.namespaces} namespaces, {len(nodes)} start nodes "
        f"x {args.rounds} rounds, {server.describe()}"
    )
    print(common.table(["series", "p50 ms", "p95 ms", "p95 vs unfiltered", "nodes", "redacted", "errors"], rows))
    verdict = "OK" if ratio <= TARGET_RATIO and not any(errors.values()) else "MISSED"
    print(f"target: filtered p95 <= {TARGET_RATIO}x unfiltered p95: {ratio:.2f}x -> {verdict}")
    print(f"graphs of different sizes for the same node: {mismatches} (expected 0: same traversal, redacted or not)")
    path = common.write_results(
        "gov-lineage-filtered",
        {
            "database": database,
            "edges": meta.get("edges", args.edges),
            "namespaces": args.namespaces,
            "depth": args.depth,
            "rounds": args.rounds,
            "start_nodes": len(nodes),
            "series": summary,
            "size_mismatches": mismatches,
            "target_ratio": TARGET_RATIO,
            "verdict": verdict,
        },
    )
    common.log(f"results: {path}")


if __name__ == "__main__":
    main()
