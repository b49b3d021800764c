"""Custody SDK benchmarks, against a live Custody server started here (gunicorn -w 2; SQLite, or a
temporary PostgreSQL database with --postgres).

    .venv/bin/python bench/sdk/bench_sdk.py [--repeats 5] [--postgres]

1. Caller-thread time per ``log_metrics`` / ``input`` call while the sender is busy: it drains tens
   of thousands of queued events to a do-nothing endpoint (the SDK at full speed: the most
   contention for the caller's thread), and a few hundred to the live server; beside
   openlineage-python's synchronous ``emit`` to the live server, measured in the same run.
2. Sender throughput (events/s): to the live server (batched), beside openlineage-python's client
   (one request per event) in the same run; and to a do-nothing endpoint, which is the SDK's own
   ceiling (the live figure is bounded by the server's ingestion).
3. ``log_metrics`` calls/s end to end: a tight loop, then ``flush``; every metric point is then
   counted in the server's database (no loss).

Figures are medians over the repeats with p95 (p99 for per-call times). The machine is shared and
noisy: compare figures of the same run only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sdk"))
sys.path.insert(0, str(ROOT / "sdk" / "tests"))

from custody._util import iso  # noqa: E402
from custody.client import Client  # noqa: E402
from custody.config import Config  # noqa: E402
from livesrv import LiveServer, free_port  # noqa: E402

PRODUCER = "https://github.com/custody/custody/bench"
SCHEMA_URL = "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def event(namespace: str, i: int) -> dict[str, Any]:
    """A typical ~1 KB RunEvent: one input with an 8-field schema, one output; increasing times."""
    return {
        "eventType": "COMPLETE",
        "eventTime": iso(),
        "run": {"runId": str(uuid.uuid4()), "facets": {}},
        "job": {"namespace": namespace, "name": f"job-{i % 50}", "facets": {}},
        "inputs": [
            {
                "namespace": "s3://bench",
                "name": f"in-{i % 20}",
                "facets": {
                    "schema": {
                        "_producer": PRODUCER,
                        "_schemaURL": SCHEMA_URL,
                        "fields": [{"name": f"c{k}", "type": "int64"} for k in range(8)],
                    }
                },
            }
        ],
        "outputs": [{"namespace": "s3://bench", "name": f"out-{i % 20}", "facets": {}}],
        "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }


def client_for(url: str, token: str, namespace: str, spool: str) -> Client:
    config = Config.resolve({}, url=url, token=token, namespace=namespace, spool_dir=spool, disable_plugins="git")
    client = Client(config)
    client.start()
    return client


def raw_count(server: LiveServer, namespace: str) -> int:
    rows = server.query("SELECT COUNT(*) AS n FROM lineage_rawevent WHERE job_namespace = ?", namespace)
    return int(rows[0]["n"])


def ol_client(url: str, token: str) -> Any:
    try:
        from openlineage.client import OpenLineageClient
    except ImportError:
        return None
    auth = {"type": "api_key", "apiKey": token}
    return OpenLineageClient(config={"transport": {"type": "http", "url": url, "auth": auth}})


def ol_event(namespace: str, i: int) -> Any:
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import schema_dataset

    fields = [schema_dataset.SchemaDatasetFacetFields(name=f"c{k}", type="int64") for k in range(8)]
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=iso(),
        run=Run(runId=str(uuid.uuid4())),
        job=Job(namespace=namespace, name=f"job-{i % 50}"),
        inputs=[
            InputDataset(
                namespace="s3://bench",
                name=f"in-{i % 20}",
                facets={"schema": schema_dataset.SchemaDatasetFacet(fields=fields)},
            )
        ],
        outputs=[OutputDataset(namespace="s3://bench", name=f"out-{i % 20}")],
        producer=PRODUCER,
    )


# --- 1. caller-thread latency ------------------------------------------------------------------------
def bench_latency(url: str, token: str, tmp: str, label: str, calls: int, preload: int) -> dict[str, list[float]]:
    """Per-call times (µs) while the sender drains ``preload`` queued events."""
    ns = f"bench-lat-{label}-{uuid.uuid4().hex[:6]}"
    client = client_for(url, token, ns, os.path.join(tmp, f"lat-{label}"))
    for i in range(preload):
        client.emit(event(ns, i))
    clock = time.perf_counter_ns
    out: dict[str, list[float]] = {"log_metrics": [], "input": [], "input_df": []}
    busy = []
    with client.run("latency") as run:
        time.sleep(0.2)
        busy.append(client.status()["backlog"] + client.status()["queued"])
        for i in range(calls):
            t = clock()
            run.log_metrics({"loss": 1.0 / (i + 1), "acc": 0.5}, step=i)
            out["log_metrics"].append((clock() - t) / 1000)
        for i in range(calls // 4):
            t = clock()
            run.input("s3://bench", f"part-{i % 50}")
            out["input"].append((clock() - t) / 1000)
        try:
            import pandas as pd

            frame = pd.DataFrame({"a": range(100), "b": [float(x) for x in range(100)], "c": ["x"] * 100})
            for _ in range(200):
                t = clock()
                run.input("s3://bench", "frame", data=frame)
                out["input_df"].append((clock() - t) / 1000)
        except ImportError:
            pass
        busy.append(client.status()["backlog"] + client.status()["queued"])
    out["busy"] = [float(busy[-1])]
    client.shutdown(2)  # what the server has not taken yet stays in the (temporary) spool
    return out


def bench_ol_emit(server: LiveServer, label: str, calls: int) -> list[float]:
    client = ol_client(server.url, server.token)
    if client is None:
        return []
    ns = f"bench-ol-{label}-{uuid.uuid4().hex[:6]}"
    times = []
    for i in range(calls):
        ev = ol_event(ns, i)
        t = time.perf_counter_ns()
        client.emit(ev)
        times.append((time.perf_counter_ns() - t) / 1000)
    return times


# --- 2. throughput ---------------------------------------------------------------------------------------
def bench_throughput(url: str, token: str, tmp: str, label: str, n: int, server: LiveServer | None) -> float:
    ns = f"bench-tp-{label}-{uuid.uuid4().hex[:6]}"
    client = client_for(url, token, ns, os.path.join(tmp, f"tp-{label}"))
    events = [event(ns, i) for i in range(n)]
    start = time.perf_counter()
    for ev in events:
        client.emit(ev)
    assert client.flush(900), client.status()
    took = time.perf_counter() - start
    client.shutdown(5)
    if server is not None:
        landed = raw_count(server, ns)
        assert landed == n, f"{landed} of {n} events landed"
    return n / took


def bench_ol_throughput(server: LiveServer, label: str, n: int) -> float:
    client = ol_client(server.url, server.token)
    if client is None:
        return float("nan")
    ns = f"bench-oltp-{label}-{uuid.uuid4().hex[:6]}"
    events = [ol_event(ns, i) for i in range(n)]
    start = time.perf_counter()
    for ev in events:
        client.emit(ev)
    took = time.perf_counter() - start
    assert raw_count(server, ns) == n
    return n / took


# --- 3. log_metrics end to end --------------------------------------------------------------------------------
def bench_metrics(server: LiveServer, tmp: str, label: str, n: int) -> dict[str, float]:
    ns = f"bench-m-{label}-{uuid.uuid4().hex[:6]}"
    client = client_for(server.url, server.token, ns, os.path.join(tmp, f"m-{label}"))
    start = time.perf_counter()
    with client.run("metrics") as run:
        for i in range(n):
            run.log_metrics({"loss": 1.0 / (i + 1)}, step=i)
        loop = time.perf_counter() - start
    assert client.flush(900), client.status()
    total = time.perf_counter() - start
    client.shutdown(5)
    points = 0
    for row in server.query("SELECT payload FROM lineage_rawevent WHERE job_namespace = ?", ns):
        payload = row["payload"] if isinstance(row["payload"], dict) else json.loads(row["payload"])
        facet = payload["run"]["facets"].get("custody_metric_points")
        points += facet["count"] if facet else 0
    assert points == n, f"{points} of {n} metric points landed"
    return {"calls_per_s": n / total, "loop_calls_per_s": n / loop}


# --- report ------------------------------------------------------------------------------------------------------
def rate_line(name: str, values: list[float], unit: str) -> str:
    if not values or all(v != v for v in values):
        return f"   {name:<60} n/a"
    return (
        f"   {name:<60} median {statistics.median(values):9.0f} {unit}"
        f"   p95 {pct(values, 95):9.0f}   min {min(values):9.0f}"
    )


def call_line(name: str, runs: list[list[float]]) -> str:
    runs = [r for r in runs if r]
    if not runs:
        return f"   {name:<60} n/a"
    p50s = [pct(r, 50) for r in runs]
    p99s = [pct(r, 99) for r in runs]
    return (
        f"   {name:<60} p50 {statistics.median(p50s):10.2f} µs (p95 {pct(p50s, 95):9.2f})"
        f"   p99 {statistics.median(p99s):10.2f} µs (p95 {pct(p99s, 95):9.2f})"
    )


def postgres_database() -> tuple[str, Any]:
    import psycopg

    name = f"custody_bench_sdk_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--latency-calls", type=int, default=20000)
    parser.add_argument("--throughput-events", type=int, default=3000, help="events sent to the live server")
    parser.add_argument("--sink-events", type=int, default=30000, help="events sent to the do-nothing endpoint")
    parser.add_argument("--ol-events", type=int, default=300)
    parser.add_argument("--metrics-calls", type=int, default=100000)
    parser.add_argument("--postgres", action="store_true", help="temporary PostgreSQL database (BENCH_PG_ADMIN_URL)")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="custody-bench-sdk-")
    database_url, drop = postgres_database() if args.postgres else ("", lambda: None)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"starting a live server ({backend}, gunicorn -w 2) in {tmp} ...", flush=True)
    server = LiveServer(Path(tmp) / "server", database_url=database_url).setup().start()
    sink_port = free_port()
    sink_url = f"http://127.0.0.1:{sink_port}"
    sink = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("null_sink.py")), str(sink_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    lat: dict[str, list[list[float]]] = {}
    rates: dict[str, list[float]] = {"live": [], "sink": [], "ol": [], "metrics": [], "metrics_loop": []}
    busy: dict[str, list[float]] = {"sink": [], "live": []}
    try:
        for r in range(args.repeats):
            for key, out in (
                ("sink", bench_latency(sink_url, "x", tmp, f"sink{r}", args.latency_calls, preload=40000)),
                ("live", bench_latency(server.url, server.token, tmp, f"live{r}", args.latency_calls, preload=400)),
            ):
                for name, values in out.items():
                    if name == "busy":
                        busy[key] += values
                    else:
                        lat.setdefault(f"{name}/{key}", []).append(values)
            lat.setdefault("ol_emit", []).append(bench_ol_emit(server, str(r), 200))
            rates["live"].append(
                bench_throughput(server.url, server.token, tmp, f"live{r}", args.throughput_events, server)
            )
            rates["sink"].append(bench_throughput(sink_url, "x", tmp, f"sink{r}", args.sink_events, None))
            rates["ol"].append(bench_ol_throughput(server, str(r), args.ol_events))
            m = bench_metrics(server, tmp, str(r), args.metrics_calls)
            rates["metrics"].append(m["calls_per_s"])
            rates["metrics_loop"].append(m["loop_calls_per_s"])
            print(
                f"  repeat {r + 1}/{args.repeats}: log_metrics p50 {pct(lat['log_metrics/sink'][-1], 50):.2f} µs "
                f"p99 {pct(lat['log_metrics/sink'][-1], 99):.2f} µs; live {rates['live'][-1]:.0f} ev/s, "
                f"openlineage {rates['ol'][-1]:.0f} ev/s, sink {rates['sink'][-1]:.0f} ev/s; "
                f"log_metrics e2e {rates['metrics'][-1]:.0f} calls/s",
                flush=True,
            )
        print()
        print(
            f"Custody SDK benchmarks: {args.repeats} repeats, Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPUs, server on {backend}; load average now {os.getloadavg()[0]:.1f}"
        )
        print(
            "(events still waiting in the sender when the latency measurements ended, fewest over repeats: "
            f"do-nothing end {int(min(busy['sink']))}, live server {int(min(busy['live']))})"
        )
        print("1. caller-thread time per call: median over repeats of each repeat's p50 / p99")
        print(
            call_line("log_metrics({2 metrics}, step) - sender busy (do-nothing end)", lat.get("log_metrics/sink", []))
        )
        print(call_line("log_metrics({2 metrics}, step) - sender busy (live server)", lat.get("log_metrics/live", [])))
        print(call_line("input(namespace, name) - sender busy (do-nothing end)", lat.get("input/sink", [])))
        print(call_line("input(namespace, name) - sender busy (live server)", lat.get("input/live", [])))
        print(call_line("input(..., data=100x3 DataFrame): schema + digest", lat.get("input_df/sink", [])))
        print(call_line("openlineage-python client.emit(RunEvent), synchronous", lat.get("ol_emit", [])))
        print("2. sender throughput, events/s (median, p95 and min over repeats)")
        print(rate_line("custody -> live server (batched)", rates["live"], "ev/s"))
        print(rate_line("openlineage-python -> live server (one request per event)", rates["ol"], "ev/s"))
        print(rate_line("custody -> do-nothing endpoint (the SDK's ceiling)", rates["sink"], "ev/s"))
        print("3. log_metrics end to end into the server, every point counted in its database")
        label = f"log_metrics calls/s, {args.metrics_calls} calls: loop + flush"
        print(rate_line(label, rates["metrics"], "calls/s"))
        print(rate_line("  the caller's loop alone", rates["metrics_loop"], "calls/s"))
        print("(mlflow is not installed here: no mlflow.log_param comparison in this run)")
    finally:
        sink.terminate()
        server.stop()
        drop()


if __name__ == "__main__":
    main()
