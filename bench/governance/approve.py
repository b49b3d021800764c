"""Approve endpoint latency with 20 concurrent approvers on PostgreSQL, through gunicorn and real
HTTP. Target: p95 <= 50 ms, zero errors.

    .venv/bin/python -m bench.governance.approve [--approvers 20] [--rounds 40] [--workers 4] [--threads 8]

Twenty approver processes, each with its own keep-alive HTTP connection and token, are released
together by a barrier every round and each POSTs ``/api/v1/promotions/{id}/approve``:

- ``same request``: all twenty approve the same pending request (policy N = 20, so every approval
  counts and the twentieth approves it): the worst case, every approval queues on that request's
  row lock, and on the audit chain's lock;
- ``own requests``: each approves a different request (policy N = 1): only the audit chain's lock
  is shared;
- ``same request, within a second``: all twenty approve the same request (N = 20) but, as people
  do, not in the same millisecond: each waits a random 0-``--spread-ms`` (default 1000 ms) after
  the round starts. This is twenty approvers at work concurrently, without the artificial
  lock-step of the two burst cases.

Every approval is a real one: producing run with its lineage, separation of duties checked
(requester and run author differ from the approvers), evidence digest, audit entry.

Baselines in the same run, released the same way by the same twenty processes:

- ``GET /healthz`` (one ``SELECT 1``): the floor of an HTTP round trip through gunicorn and Django
  under the same concurrency;
- raw SQL: the approval's database work in one transaction on its own connection per process (lock
  the request row, insert the decision, update the count, take the audit chain's advisory lock and
  append a row), i.e. what the database alone costs under the same contention.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import random
import time
import uuid
from typing import Any

import psycopg

from bench import common
from bench.governance import dbs

TARGET_P95_MS = 50.0
NAMESPACE = "fraud"
MODEL = "fraud-detector"

BASELINE_DDL = """
CREATE TABLE IF NOT EXISTS bench_request (id bigint PRIMARY KEY, approvals int NOT NULL DEFAULT 0,
    state text NOT NULL DEFAULT 'pending', updated_at timestamptz);
CREATE TABLE IF NOT EXISTS bench_decision (id bigserial PRIMARY KEY, request_id bigint NOT NULL, user_id int NOT NULL,
    reason text, created_at timestamptz NOT NULL, UNIQUE (request_id, user_id));
CREATE TABLE IF NOT EXISTS bench_audit (id bigserial PRIMARY KEY, body jsonb NOT NULL, created_at timestamptz NOT NULL);
"""


def event(run_id: str, version: str, event_type: str, minute: int) -> dict[str, Any]:
    digest = "sha256:" + uuid.uuid5(uuid.NAMESPACE_URL, version).hex * 2
    model = {
        "_producer": "bench",
        "_schemaURL": "custody_model.json",
        "name": MODEL,
        "version": version,
        "artifactUri": f"s3://models/{version}.pkl",
        "artifactDigest": digest,
        "framework": "scikit-learn",
        "metrics": {"auc": 0.9},
        "environmentDigest": digest,
    }
    dataset_version = {"_producer": "bench", "_schemaURL": "x", "datasetVersion": version}
    return {
        "eventType": event_type,
        "eventTime": f"2026-01-01T00:{minute % 60:02d}:00Z",
        "producer": "bench",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent",
        "run": {"runId": run_id, "facets": {}},
        "job": {"namespace": NAMESPACE, "name": "train", "facets": {}},
        "inputs": [{"namespace": "warehouse", "name": "transactions", "facets": {}}],
        "outputs": [
            {
                "namespace": NAMESPACE,
                "name": f"models/{MODEL}",
                "facets": {"custody_model": model, "version": dataset_version},
            }
        ],
    }


class Api:
    def __init__(self, server: common.Server, token: str) -> None:
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None


def prepare(server: common.Server, tokens: dict[str, str], versions: int) -> None:
    admin = Api(server, tokens["admin"])
    for environment, n in (("production", 20), ("canary", 1)):
        status, body = admin.call(
            "POST",
            "/api/v1/policies/",
            {
                "environment": environment,
                "approvals_required": n,
                "eligible_roles": ["approver"],
                "required_checks": [],
            },
        )
        assert status == 201, body
    requester = Api(server, tokens["requester"])
    batch = []
    for i in range(versions):
        run_id = str(uuid.uuid4())
        batch += [event(run_id, f"v{i:04d}", "START", i), event(run_id, f"v{i:04d}", "COMPLETE", i + 1)]
        if len(batch) >= 200 or i == versions - 1:
            status, body = requester.call("POST", "/api/v1/lineage/batch", batch)
            assert status == 200 and body["summary"]["failed"] == 0, body
            batch = []


def open_requests(server: common.Server, token: str, labels: list[str], environment: str) -> list[int]:
    requester = Api(server, token)
    ids = []
    for label in labels:
        status, body = requester.call(
            "POST",
            "/api/v1/promotions/",
            {"model": MODEL, "version": label, "environment": environment, "namespace": NAMESPACE},
        )
        assert status == 201, body
        ids.append(body["id"])
    return ids


def worker(
    index: int,
    port: int,
    token: str,
    plan: list[tuple[str, str]],
    barrier: Any,
    out: Any,
    db_url: str,
    spread_ms: float,
) -> None:
    """One approver: per round, wait at the barrier, then do the round's call; report latencies."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sql = psycopg.connect(db_url, autocommit=False)
    rng = random.Random(index)
    results = []
    for kind, target in plan:
        barrier.wait(timeout=120)
        if kind == "spread":
            time.sleep(rng.uniform(0, spread_ms / 1000))
        t0 = time.perf_counter()
        status = 0
        try:
            if kind == "sql":
                with sql.transaction():
                    cur = sql.cursor()
                    cur.execute("SELECT approvals FROM bench_request WHERE id = %s FOR UPDATE", (int(target),))
                    cur.execute(
                        "INSERT INTO bench_decision (request_id, user_id, reason, created_at) "
                        "VALUES (%s, %s, '', now())",
                        (int(target), index),
                    )
                    cur.execute(
                        "UPDATE bench_request SET approvals = approvals + 1, updated_at = now() WHERE id = %s",
                        (int(target),),
                    )
                    cur.execute("SELECT pg_advisory_xact_lock(4242)")
                    cur.execute(
                        "INSERT INTO bench_audit (body, created_at) VALUES (%s, now())",
                        (json.dumps({"request": target, "user": index}),),
                    )
                status = 200
            elif kind == "healthz":
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                status = response.status
            else:
                conn.request(
                    "POST", f"/api/v1/promotions/{target}/approve", body=b'{"reason": "bench"}', headers=headers
                )
                response = conn.getresponse()
                response.read()
                status = response.status
        except Exception as exc:  # reported as an error
            status = -1
            results.append((kind, -1.0, repr(exc)[:200]))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            continue
        results.append((kind, (time.perf_counter() - t0) * 1000, status))
    out.put((index, results))
    sql.close()
    conn.close()


def main() -> None:
    common.install_signal_handlers()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--approvers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--worker-class", default="gthread", choices=("gthread", "sync"))
    parser.add_argument("--spread-ms", type=float, default=1000.0)
    args = parser.parse_args()
    n = args.approvers

    database = dbs.fresh("approve")
    tokens = {"admin": dbs.user_with_token(database, "gov-admin", "admin")}
    tokens["requester"] = dbs.user_with_token(database, "gov-requester", "data_scientist", "--namespace", NAMESPACE)
    approvers = [dbs.user_with_token(database, f"gov-approver-{i:02d}", "approver") for i in range(n)]
    with dbs.connect(database) as conn:
        for statement in BASELINE_DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO bench_request (id) SELECT g FROM generate_series(1, %s) g", (args.rounds * (n + 2),))

    server = common.Server(database, workers=args.workers, threads=args.threads, worker_class=args.worker_class).start()
    try:
        prepare(server, tokens, versions=args.rounds * (n + 2))
        labels = [f"v{i:04d}" for i in range(args.rounds * (n + 2))]
        same = open_requests(server, tokens["requester"], labels[: args.rounds], "production")
        spread = open_requests(server, tokens["requester"], labels[args.rounds : 2 * args.rounds], "production")
        own = open_requests(server, tokens["requester"], labels[2 * args.rounds :], "canary")
        # Per approver, the plan of calls: the kinds interleave round by round (ABCDE, then EDCBA...).
        kinds = ["same", "own", "spread", "healthz", "sql"]
        plans: list[list[tuple[str, str]]] = [[] for _ in range(n)]
        for r in range(args.rounds):
            order = kinds if r % 2 == 0 else list(reversed(kinds))
            for kind in order:
                for i in range(n):
                    target = {
                        "same": str(same[r]),
                        "own": str(own[r * n + i]),
                        "spread": str(spread[r]),
                        "healthz": "",
                        "sql": str(r + 1),
                    }[kind]
                    plans[i].append((kind, target))
        barrier = mp.Barrier(n)
        out: Any = mp.Queue()
        procs = [
            mp.Process(
                target=worker,
                args=(i, server.port, approvers[i], plans[i], barrier, out, common.db_url(database), args.spread_ms),
            )
            for i in range(n)
        ]
        cpu_before = {pid: common.cpu_seconds(pid) for pid in server.worker_pids()}
        started = time.perf_counter()
        for proc in procs:
            proc.start()
        collected = [out.get(timeout=1800) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        elapsed = time.perf_counter() - started
        cpu_web = sum(common.cpu_seconds(pid) - cpu_before.get(pid, 0.0) for pid in server.worker_pids())
        with dbs.connect(database) as conn:
            approved = conn.execute(
                "SELECT count(*) FROM promotions_promotionrequest WHERE state = 'approved'"
            ).fetchone()[0]
            decisions = conn.execute("SELECT count(*) FROM promotions_decision").fetchone()[0]
            entries = conn.execute(
                "SELECT count(*) FROM audit_auditentry WHERE action = 'promotion.approve'"
            ).fetchone()[0]
    finally:
        server.stop()

    latencies: dict[str, list[float]] = {k: [] for k in kinds}
    errors: dict[str, int] = {k: 0 for k in kinds}
    first_error: dict[str, str] = {}
    for _, results in collected:
        for kind, ms, status in results:
            if status == 200:
                latencies[kind].append(ms)
            else:
                errors[kind] += 1
                first_error.setdefault(kind, str(status))
    labels_out = {
        "same": "approve, 20 on the same request",
        "own": "approve, each its own request",
        "spread": "approve, 20 on the same request within 1 s",
        "healthz": "baseline: GET /healthz",
        "sql": "baseline: raw SQL approval",
    }
    rows = []
    summary: dict[str, Any] = {}
    for kind in kinds:
        values = latencies[kind]
        summary[kind] = {
            "label": labels_out[kind],
            "p50_ms": round(common.median(values), 2),
            "p95_ms": round(common.percentile(values, 95), 2),
            "max_ms": round(max(values), 2) if values else None,
            "requests": len(values),
            "errors": errors[kind],
            "first_error": first_error.get(kind, ""),
        }
        rows.append(
            [
                labels_out[kind],
                common.fmt(common.median(values)),
                common.fmt(common.percentile(values, 95)),
                common.fmt(max(values) if values else float("nan")),
                str(len(values)),
                str(errors[kind]),
            ]
        )
    approvals = len(latencies["same"]) + len(latencies["own"]) + len(latencies["spread"])
    print(f"\n{n} concurrent approvers x {args.rounds} rounds, {server.describe()}, PostgreSQL")
    print(common.table(["call", "p50 ms", "p95 ms", "max ms", "ok", "errors"], rows))
    app_errors = errors["same"] + errors["own"] + errors["spread"]
    verdicts = {}
    for kind in ("same", "own", "spread"):
        ok = summary[kind]["p95_ms"] <= TARGET_P95_MS and errors[kind] == 0
        verdicts[kind] = "OK" if ok else "MISSED"
        print(
            f"target: p95 <= {TARGET_P95_MS:.0f} ms, zero errors, {labels_out[kind]}: "
            f"{summary[kind]['p95_ms']:.1f} ms, {errors[kind]} errors -> {verdicts[kind]}"
        )
    verdict = "OK" if all(v == "OK" for v in verdicts.values()) else "MISSED"
    print(
        f"consistency: {decisions} decisions and {entries} audit entries for {approvals} successful approvals; "
        f"{approved} requests approved (expected {2 * args.rounds + args.rounds * n})"
    )
    print(
        f"web CPU per call: {cpu_web * 1000 / max(1, sum(len(v) for v in latencies.values())):.2f} ms; {elapsed:.0f}s"
    )
    path = common.write_results(
        "gov-approve",
        {
            "approvers": n,
            "rounds": args.rounds,
            "server": server.describe(),
            "series": summary,
            "decisions": decisions,
            "audit_entries": entries,
            "approved_requests": approved,
            "target_p95_ms": TARGET_P95_MS,
            "verdict": verdict,
            "verdicts": verdicts,
            "app_errors": app_errors,
            "spread_ms": args.spread_ms,
        },
    )
    common.log(f"results: {path}")


if __name__ == "__main__":
    main()
