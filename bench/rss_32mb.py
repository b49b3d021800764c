"""Peak RSS of a gunicorn web worker while it ingests one 32 MB OpenLineage event.

    .venv/bin/python -m bench.rss_32mb [--mb 32] [--variants schema,custom,schema-gzip]

For each variant a fresh gunicorn (2 workers) on a fresh database gets one warm-up event and then
the big one; the peak is ``VmHWM`` from ``/proc/<pid>/status`` of the worker that served it (the
other worker's is the idle figure). Baselines in the same run: the worker's own peak after the
warm-up event, and a bare Python process that only reads the same body and ``json.loads`` it —
the floor for any Python server that decodes the event.

Variants: ``schema`` — the output dataset's schema facet has ~150k fields (name, type,
description, nullable), the realistic way events get this big (wide tables, nested structs);
``custom`` — a large custom run facet (``custody_profile``: nested records of metrics);
``schema-gzip`` — the schema event sent with ``Content-Encoding: gzip``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from bench import common
from bench.events import EventFactory

TARGET_MB = 300.0


def _pad_to(event: dict[str, Any], target: int, make: Any, holder: list[Any]) -> dict[str, Any]:
    base = len(json.dumps(event))
    one = len(json.dumps(make(0))) + 2
    n = max(1, (target - base) // one)
    holder.extend(make(i) for i in range(n))
    size = len(json.dumps(event))
    while size > target and holder:  # trim to the target (items differ a little in length)
        size -= len(json.dumps(holder.pop())) + 2
    while size + one <= target:  # top up
        holder.append(make(len(holder)))
        size += len(json.dumps(holder[-1])) + 2
    return event


def big_event(target_bytes: int, kind: str = "schema") -> dict[str, Any]:
    """A realistic RunEvent of about ``target_bytes`` of JSON."""
    event = EventFactory(0, seed=3).pair()[1]
    if kind == "schema":
        fields: list[dict[str, Any]] = []
        event["outputs"][0]["facets"]["schema"]["fields"] = fields

        def field(i: int) -> dict[str, Any]:
            return {
                "name": f"feature_{i:07d}_value",
                "type": ("DOUBLE", "BIGINT", "VARCHAR", "BOOLEAN")[i % 4],
                "description": f"Engineered feature {i}: rolling 30-day aggregate over the source column.",
                "nullable": bool(i % 3),
            }

        return _pad_to(event, target_bytes, field, fields)
    records: list[dict[str, Any]] = []
    event["run"]["facets"]["custody_profile"] = {
        "_producer": "https://github.com/custody/custody/sdk",
        "_schemaURL": "https://custody.example/spec/facets/ProfileRunFacet.json",
        "columns": records,
    }

    def record(i: int) -> dict[str, Any]:
        return {
            "column": f"col_{i:07d}",
            "stats": {"min": i * 0.5, "max": i * 2.25, "mean": i * 1.125, "nulls": i % 97, "distinct": i % 1013},
            "histogram": [i % 7, i % 11, i % 13, i % 17],
        }

    return _pad_to(event, target_bytes, record, records)


def _bare_python_peak(body: bytes) -> int:
    """VmHWM (kB) of a bare interpreter that reads the body from a file and json.loads it."""
    with tempfile.NamedTemporaryFile(suffix=".json") as fh:
        fh.write(body)
        fh.flush()
        code = (
            "import json,sys\n"
            f"data=open({fh.name!r},'rb').read()\n"
            "value=json.loads(data)\n"
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
        )
        out = subprocess.run([common.PYTHON, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    return int(out.stdout.strip())


def _post(server: common.Server, token: str, body: bytes, gzip_it: bool) -> tuple[int, bytes, float]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if gzip_it:
        body = gzip.compress(body, 6)
        headers["Content-Encoding"] = "gzip"
    conn = http.client.HTTPConnection(server.host, server.port, timeout=300)
    t0 = time.perf_counter()
    conn.request("POST", "/api/v1/lineage", body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data, time.perf_counter() - t0


def measure(variant: str, mb: float, worker_class: str) -> dict[str, Any]:
    kind = variant.split("-")[0]
    body = json.dumps(big_event(int(mb * 1024 * 1024), kind)).encode()
    database = common.fresh_database(f"rss_{kind}")
    token = common.create_token(database)
    bare_kb = _bare_python_peak(body)
    with common.Server(database, worker_class=worker_class) as server:
        workers = server.worker_pids()
        warm = json.dumps(EventFactory(1, seed=4).pair()[0]).encode()
        for _ in range(4):  # reach both workers
            status, data, _ = _post(server, token, warm, False)
            assert status == 201, data[:300]
        before = {pid: common.status_kb(pid, "VmHWM") for pid in workers}
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError, KeyError):
                    samples.append(max(common.status_kb(pid, "VmRSS") for pid in workers))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        status, data, seconds = _post(server, token, body, variant.endswith("gzip"))
        stop.set()
        sampler.join()
        after = {pid: common.status_kb(pid, "VmHWM") for pid in workers}
        rss_after = {pid: common.status_kb(pid, "VmRSS") for pid in workers}
    served = max(workers, key=lambda pid: after[pid] - before[pid])
    return {
        "variant": variant,
        "body_mb": len(body) / 2**20,
        "status": status,
        "response": data[:200].decode(errors="replace"),
        "seconds": seconds,
        "peak_rss_mb": after[served] / 1024,
        "worker_peak_before_mb": before[served] / 1024,
        "worker_rss_after_mb": rss_after[served] / 1024,
        "other_worker_peak_mb": max((after[p] for p in workers if p != served), default=0) / 1024,
        "bare_python_json_loads_mb": bare_kb / 1024,
        "sampled_max_rss_mb": max(samples, default=0) / 1024,
    }


def main() -> None:
    common.install_signal_handlers()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=32.0)
    parser.add_argument("--variants", default="schema,custom,schema-gzip")
    parser.add_argument("--worker-class", default="gthread", choices=["sync", "gthread"])
    args = parser.parse_args()
    results = []
    for variant in [v for v in args.variants.split(",") if v]:
        common.log(f"{variant}: building and sending a {args.mb:.0f} MB event ...")
        results.append(measure(variant, args.mb, args.worker_class))
        common.log(f"  {results[-1]}")
    rows = [
        [
            r["variant"],
            f"{r['body_mb']:.1f}",
            str(r["status"]),
            f"{r['seconds']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['worker_peak_before_mb']:.0f}",
            f"{r['bare_python_json_loads_mb']:.0f}",
            f"{r['worker_rss_after_mb']:.0f}",
        ]
        for r in results
    ]
    print()
    print(f"Peak RSS of the gunicorn worker (VmHWM) ingesting one {args.mb:.0f} MB event; target <= {TARGET_MB:.0f} MB")
    print(
        common.table(
            [
                "variant",
                "body MiB",
                "status",
                "seconds",
                "peak MiB",
                "before MiB",
                "bare json.loads MiB",
                "RSS after MiB",
            ],
            rows,
        )
    )
    ok = all(r["peak_rss_mb"] <= TARGET_MB and r["status"] == 201 for r in results)
    print(f"target peak RSS <= {TARGET_MB:.0f} MB (and 201): {'met' if ok else 'MISSED'}")
    path = common.write_results("rss_32mb", {"results": results, "target_mb": TARGET_MB})
    print(f"results: {path}")
    sys.exit(0)


if __name__ == "__main__":
    main()
