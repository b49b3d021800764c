"""Ingestion throughput: single-event POSTs with 1, 4 and 16 keep-alive clients and the batch
endpoint with batches of 100, through gunicorn (2 workers) on a fresh PostgreSQL database, each
beside a raw psycopg baseline measured in the same run (bench/rawsql.py).

    .venv/bin/python -m bench.ingest [--reps 3] [--duration 8] [--worker-class auto|sync|gthread]

Clients are separate processes (one per client, one keep-alive ``http.client`` connection each)
that pre-build their event bodies before a common start barrier, so the timed loop only sends and
reads. Repetitions interleave baseline and server runs (ABBA order) to spread machine noise over
both. Reported per configuration: events/s (median over repetitions, min..max), request latency
p50/p95 (all requests of all repetitions), and CPU: client processes, gunicorn workers and the
PostgreSQL backends serving them, as CPU-milliseconds per event. CPU per event is the figure that
survives a noisy shared machine best: 2 cores / (server+db CPU per event) is the capacity of an
otherwise idle 2-core box.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import multiprocessing as mp
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.synchronize import Barrier
from typing import Any

from bench import common
from bench.events import EventFactory
from bench.rawsql import RawWriter

TARGET_BATCH = 2000.0
TARGET_SINGLE_4 = 400.0


@dataclass
class ClientJob:
    mode: str  # "http" | "raw"
    stream: int
    seed: int
    events: int
    batch: int  # 1 = single-event requests / one transaction per event
    duration: float
    host: str = ""
    port: int = 0
    token: str = ""
    db_url: str = ""
    tx_events: int = 1  # raw mode: events per transaction


@dataclass
class ClientResult:
    stream: int
    started: float
    ended: float
    events: int
    requests: int
    errors: int
    cpu: float
    latencies_ms: list[float] = field(default_factory=list)
    first_error: str = ""
    retries: int = 0


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _client(job: ClientJob, barrier: Barrier, done: Barrier, out: Any) -> None:
    """One client process: build the events, connect, wait at the barrier, send until the
    deadline, report, and keep the connection open until the parent has read the CPU counters."""
    result = ClientResult(job.stream, 0.0, 0.0, 0, 0, 0, 0.0)
    try:
        _client_loop(job, barrier, done, out, result)
    except BaseException as exc:  # report instead of leaving the parent waiting
        result.errors += 1
        result.first_error = result.first_error or f"client crashed: {exc!r}"[:300]
        result.ended = result.ended or time.monotonic()
        result.started = result.started or result.ended
        out.put(asdict(result))
        with contextlib.suppress(Exception):
            barrier.abort()
            done.wait(timeout=60)


def _client_loop(job: ClientJob, barrier: Barrier, done: Barrier, out: Any, result: ClientResult) -> None:
    events = EventFactory(job.stream, job.seed).events(job.events)
    chunks = [events[i : i + job.batch] for i in range(0, len(events), job.batch)]
    if job.mode == "http":
        path = "/api/v1/lineage" if job.batch == 1 else "/api/v1/lineage/batch"
        bodies = [json.dumps(c[0] if job.batch == 1 else c).encode() for c in chunks]
        sizes = [len(c) for c in chunks]
        headers = {"Authorization": f"Bearer {job.token}", "Content-Type": "application/json"}
        conn = http.client.HTTPConnection(job.host, job.port, timeout=120)
        conn.connect()
        del events, chunks
        barrier.wait()
        cpu0 = _cpu_self()
        start = result.started = time.monotonic()
        deadline = start + job.duration
        for body, size in zip(bodies, sizes, strict=True):
            t0 = time.monotonic()
            if t0 >= deadline:
                break
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            result.latencies_ms.append((time.monotonic() - t0) * 1000)
            result.requests += 1
            ok = response.status == 201 if job.batch == 1 else response.status == 200 and b'"failed":0' in data
            if ok:
                result.events += size
            else:
                result.errors += 1
                result.first_error = result.first_error or f"{response.status} {data[:300]!r}"
        result.ended = time.monotonic()
        result.cpu = _cpu_self() - cpu0
        out.put(asdict(result))
        done.wait()
        conn.close()
    else:
        writer = RawWriter(job.db_url)
        barrier.wait()
        cpu0 = _cpu_self()
        start = result.started = time.monotonic()
        deadline = start + job.duration
        for chunk in chunks:
            t0 = time.monotonic()
            if t0 >= deadline:
                break
            if job.tx_events == 1 and job.batch > 1:
                for event in chunk:
                    result.retries += writer.write([event])
            else:
                result.retries += writer.write(chunk)
            result.latencies_ms.append((time.monotonic() - t0) * 1000)
            result.requests += 1
            result.events += len(chunk)
        result.ended = time.monotonic()
        result.cpu = _cpu_self() - cpu0
        out.put(asdict(result))
        done.wait()  # keep the connection (and its backend's CPU counters) until the parent has read them
        writer.close()


@dataclass
class RunStats:
    label: str
    clients: int
    batch: int
    events: int
    seconds: float
    errors: int
    latencies_ms: list[float]
    client_cpu: float
    server_cpu: float  # gunicorn workers (0 for raw)
    db_cpu: float
    first_error: str = ""
    retries: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _cpu_of(pids: list[int]) -> dict[int, float]:
    return {pid: common.cpu_seconds(pid) for pid in pids}


def _delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[p] - before.get(p, 0.0) for p in after)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.seed = int(time.time()) % 100_000
        self.stream_counter = 0
        self.ctx = mp.get_context("fork")

    def next_streams(self, n: int) -> list[int]:
        first = self.stream_counter
        self.stream_counter += n
        return list(range(first, first + n))

    def run_clients(
        self,
        label: str,
        jobs: list[ClientJob],
        worker_pids: list[int],
        database: str,
    ) -> RunStats:
        barrier = self.ctx.Barrier(len(jobs) + 1)
        done = self.ctx.Barrier(len(jobs) + 1)
        queue = self.ctx.Queue()
        procs = [self.ctx.Process(target=_client, args=(job, barrier, done, queue), daemon=True) for job in jobs]
        for proc in procs:
            proc.start()
        barrier.wait(timeout=300)  # every client has built its events and connected
        db_cpu = common.BackendCpu(database).start()
        web_before = _cpu_of(worker_pids)
        results = [ClientResult(**queue.get(timeout=jobs[0].duration + 600)) for _ in jobs]
        web_after = _cpu_of(worker_pids)
        db_seconds = db_cpu.stop()
        with contextlib.suppress(Exception):
            done.wait(timeout=60)
        for proc in procs:
            proc.join(timeout=30)
        start = min(r.started for r in results)
        end = max(r.ended for r in results)
        first_error = next((r.first_error for r in results if r.first_error), "")
        return RunStats(
            label=label,
            clients=len(jobs),
            batch=jobs[0].batch,
            events=sum(r.events for r in results),
            seconds=end - start,
            errors=sum(r.errors for r in results),
            latencies_ms=[x for r in results for x in r.latencies_ms],
            client_cpu=sum(r.cpu for r in results),
            server_cpu=_delta(web_before, web_after),
            db_cpu=db_seconds,
            first_error=first_error,
            retries=sum(r.retries for r in results),
        )

    def events_per_client(self, clients: int, batch: int) -> int:
        cap = self.args.max_rate_batch if batch > 1 else self.args.max_rate_single
        per = math.ceil(cap * self.args.duration / clients)
        return max(batch, math.ceil(per / batch) * batch)

    def http_jobs(self, server: common.Server, token: str, clients: int, batch: int) -> list[ClientJob]:
        n = self.events_per_client(clients, batch)
        return [
            ClientJob("http", s, self.seed, n, batch, self.args.duration, server.host, server.port, token)
            for s in self.next_streams(clients)
        ]

    def raw_jobs(self, url: str, clients: int, batch: int, tx_events: int) -> list[ClientJob]:
        n = self.events_per_client(clients, batch)
        return [
            ClientJob("raw", s, self.seed, n, batch, self.args.duration, db_url=url, tx_events=tx_events)
            for s in self.next_streams(clients)
        ]


def summarise(runs: list[RunStats]) -> dict[str, Any]:
    rates = [r.rate for r in runs]
    lat = [x for r in runs for x in r.latencies_ms]
    events = sum(r.events for r in runs) or 1
    return {
        "label": runs[0].label,
        "clients": runs[0].clients,
        "batch": runs[0].batch,
        "reps": len(runs),
        "events_per_s_median": common.median(rates),
        "events_per_s_min": min(rates),
        "events_per_s_max": max(rates),
        "latency_ms_p50": common.percentile(lat, 50),
        "latency_ms_p95": common.percentile(lat, 95),
        "latency_ms_p99": common.percentile(lat, 99),
        "requests": len(lat),
        "events": sum(r.events for r in runs),
        "errors": sum(r.errors for r in runs),
        "baseline_deadlock_retries": sum(r.retries for r in runs),
        "first_error": next((r.first_error for r in runs if r.first_error), ""),
        "client_cpu_ms_per_event": sum(r.client_cpu for r in runs) * 1000 / events,
        "server_cpu_ms_per_event": sum(r.server_cpu for r in runs) * 1000 / events,
        "db_cpu_ms_per_event": sum(r.db_cpu for r in runs) * 1000 / events,
        "client_cpu_cores": sum(r.client_cpu for r in runs) / sum(r.seconds for r in runs),
        "per_rep_events_per_s": rates,
    }


def compare_worker_classes(bench: Bench, database: str, token: str) -> tuple[str, dict[str, Any]]:
    """Short 4-client single-event runs with sync and gthread workers; the faster one is used."""
    found: dict[str, Any] = {}
    for worker_class in ("sync", "gthread"):
        with common.Server(database, worker_class=worker_class, threads=bench.args.threads) as server:
            runs = [
                bench.run_clients(
                    f"{server.describe()}", bench.http_jobs(server, token, 4, 1), server.worker_pids(), database
                )
                for _ in range(2)
            ]
        found[worker_class] = summarise(runs)
        common.log(
            f"  worker class {worker_class}: {found[worker_class]['events_per_s_median']:.0f} events/s "
            f"errors={found[worker_class]['errors']} {found[worker_class]['first_error'][:300]}"
        )
    best = max(found, key=lambda k: found[k]["events_per_s_median"])
    return best, found


def main() -> None:
    common.install_signal_handlers()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every configuration")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per repetition")
    parser.add_argument("--worker-class", default="auto", choices=["auto", "sync", "gthread"])
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--clients", default="1,4,16", help="single-event client counts")
    parser.add_argument("--batch-clients", default="1,2", help="batch-endpoint client counts")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--max-rate-single", type=float, default=1500.0, help="events pre-built per second (cap)")
    parser.add_argument("--max-rate-batch", type=float, default=4000.0, help="events pre-built per second (cap)")
    args = parser.parse_args()
    bench = Bench(args)
    single_clients = [int(x) for x in args.clients.split(",") if x]
    batch_clients = [int(x) for x in args.batch_clients.split(",") if x]

    common.log("creating databases ...")
    server_db = common.fresh_database("ingest_http")
    raw_db = common.fresh_database("ingest_raw")
    common.add_zero_defaults(raw_db)
    token = common.create_token(server_db)
    nodelay = common.check_nodelay(server_db)
    common.log(f"TCP_NODELAY on accepted connections: {nodelay}")

    worker_class = args.worker_class
    worker_compare: dict[str, Any] = {}
    if worker_class == "auto":
        worker_class, worker_compare = compare_worker_classes(bench, server_db, token)
    server = common.Server(server_db, worker_class=worker_class, threads=args.threads).start()
    common.log(f"server: {server.describe()} on port {server.port}")

    configs: list[tuple[str, int, int]] = [("single", c, 1) for c in single_clients]
    configs += [("batch", c, args.batch_size) for c in batch_clients]
    runs: dict[str, list[RunStats]] = {}
    raw_url = common.db_url(raw_db)
    try:
        for rep in range(args.reps):
            for kind, clients, batch in configs:
                key = f"{kind}-{clients}"
                order = ["raw", "http"] if rep % 2 == 0 else ["http", "raw"]
                if kind == "batch":
                    order = ["raw-tx100", *order] if rep % 2 == 0 else [*order, "raw-tx100"]
                for which in order:
                    if which == "http":
                        label = f"Custody {kind}" + (f" x{batch}" if batch > 1 else "")
                        stats = bench.run_clients(
                            label, bench.http_jobs(server, token, clients, batch), server.worker_pids(), server_db
                        )
                    else:
                        tx = batch if which == "raw-tx100" else 1
                        label = "raw psycopg, 1 tx/event" if tx == 1 else f"raw psycopg, 1 tx/{batch} events"
                        stats = bench.run_clients(label, bench.raw_jobs(raw_url, clients, batch, tx), [], raw_db)
                    runs.setdefault(f"{key}:{which}", []).append(stats)
                    common.log(
                        f"rep {rep + 1}/{args.reps} {key:10s} {which:9s} {stats.rate:8.1f} events/s "
                        f"errors={stats.errors} load={os.getloadavg()[0]:.2f} {stats.first_error[:300]}"
                    )
    finally:
        server.stop()

    summary = {key: summarise(value) for key, value in runs.items()}
    rows = []
    for kind, clients, _batch in configs:
        key = f"{kind}-{clients}"
        for which in ("http", "raw", "raw-tx100"):
            s = summary.get(f"{key}:{which}")
            if s is None:
                continue
            rows.append(
                [
                    f"{s['label']} ({clients} client{'s' if clients > 1 else ''})",
                    common.fmt(s["events_per_s_median"], 0),
                    f"{common.fmt(s['events_per_s_min'], 0)}..{common.fmt(s['events_per_s_max'], 0)}",
                    common.fmt(s["latency_ms_p50"], 1),
                    common.fmt(s["latency_ms_p95"], 1),
                    common.fmt(s["server_cpu_ms_per_event"], 2),
                    common.fmt(s["db_cpu_ms_per_event"], 2),
                    common.fmt(s["client_cpu_ms_per_event"], 2),
                    str(s["errors"]),
                ]
            )
    print()
    print(
        f"Ingestion — {server.describe()}, PostgreSQL, {args.reps} reps x {args.duration:.0f}s; "
        f"TCP_NODELAY on accepted sockets: " + ", ".join(f"{k}={v.get('tcp_nodelay')}" for k, v in nodelay.items())
    )
    print(
        common.table(
            [
                "configuration",
                "events/s",
                "min..max",
                "p50 ms",
                "p95 ms",
                "web cpu ms/ev",
                "db cpu ms/ev",
                "client cpu ms/ev",
                "errors",
            ],
            rows,
        )
    )
    if worker_compare:
        print(
            "worker class comparison (4 clients, single events): "
            + ", ".join(
                f"{k} {v['events_per_s_median']:.0f} events/s (p95 {v['latency_ms_p95']:.1f} ms)"
                for k, v in worker_compare.items()
            )
            + f" -> {worker_class}"
        )
    targets = {
        "batch >= 2000 events/s": max(
            (summary[f"batch-{c}:http"]["events_per_s_median"] for c in batch_clients), default=0.0
        )
        >= TARGET_BATCH,
        "single, 4 clients >= 400 events/s": summary.get("single-4:http", {}).get("events_per_s_median", 0.0)
        >= TARGET_SINGLE_4,
    }
    for name, ok in targets.items():
        print(f"target {name}: {'met' if ok else 'MISSED'}")
    path = common.write_results(
        "ingest",
        {
            "server": server.describe(),
            "tcp_nodelay": nodelay,
            "worker_class_comparison": worker_compare,
            "reps": args.reps,
            "duration_s": args.duration,
            "summary": summary,
            "targets": targets,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
