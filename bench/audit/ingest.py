"""Ingestion throughput with the audit trail on and off, in the same run, on PostgreSQL.

    .venv/bin/python -m bench.audit.ingest [--reps 5] [--single 300] [--batches 6]

Events go through ``lineage.ingest.service.ingest([...])`` in-process (no HTTP: the audit cost is
not diluted by request handling), with the ``events_ingested`` receiver connected (on: one audit
entry per ingest() call, i.e. per POSTed event or per batch) or disconnected (off). Two shapes:

- single: ``ingest([event])`` per event, one transaction each (what ``POST /api/v1/lineage`` does);
- batch: ``ingest(100 events)`` per call (what ``POST /api/v1/lineage/batch`` does).

Rounds alternate on/off in ABBA order so that machine noise and the growing graph fall on both
sides. Reported: events/s (median of the rounds), and the ratio on/off (target >= 0.8).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench import common
from bench.audit import common as audit_common
from bench.events import EventFactory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--single", type=int, default=300, help="events per single-event round")
    parser.add_argument("--batches", type=int, default=6, help="batches of 100 per batch round")
    parser.add_argument("--prefill", type=int, default=100_000, help="audit entries already in the trail")
    args = parser.parse_args()
    common.install_signal_handlers()
    database = audit_common.fresh_database("ingest")
    if args.prefill:
        common.log(f"prefilling {args.prefill:,} audit entries ...")
        audit_common.generate_chain(database, args.prefill)
    audit_common.setup_django(database)

    from governance.audit import receivers
    from governance.audit.models import AuditEntry
    from governance.audit.verify import verify_chain
    from lineage.ingest.service import ingest

    streams = iter(range(10_000))

    def events(n: int) -> list[dict[str, Any]]:
        factory = EventFactory(next(streams), seed=7)
        out: list[dict[str, Any]] = []
        while len(out) < n:
            out.extend(factory.pair())
        return out[:n]

    def run(shape: str, audit: bool) -> float:
        if audit:
            receivers.connect_ingestion()
        else:
            receivers.disconnect_ingestion()
        if shape == "single":
            batch = events(args.single)
            before = AuditEntry.objects.count()
            started = time.perf_counter()
            for event in batch:
                outcome = ingest([event])[0]
                assert outcome.status == "created", outcome
            elapsed = time.perf_counter() - started
            added = AuditEntry.objects.count() - before
            assert added == (len(batch) if audit else 0), added
            return len(batch) / elapsed
        chunks = [events(100) for _ in range(args.batches)]
        started = time.perf_counter()
        for chunk in chunks:
            assert all(o.status == "created" for o in ingest(chunk))
        return 100 * args.batches / (time.perf_counter() - started)

    # warm up both paths (imports, caches, first namespaces)
    for audit in (True, False):
        receivers.connect_ingestion() if audit else receivers.disconnect_ingestion()
        ingest(events(20))
    results: dict[str, Any] = {}
    for shape in ("single", "batch"):
        rates: dict[str, list[float]] = {"on": [], "off": []}
        for rep in range(args.reps):
            order = (True, False) if rep % 2 == 0 else (False, True)
            for audit in order:
                rates["on" if audit else "off"].append(run(shape, audit))
            common.log(f"  {shape} round {rep + 1}: on {rates['on'][-1]:,.0f}/s, off {rates['off'][-1]:,.0f}/s")
        on, off = common.median(rates["on"]), common.median(rates["off"])
        results[shape] = {"on": rates["on"], "off": rates["off"], "median_on": on, "median_off": off, "ratio": on / off}
    receivers.connect_ingestion()
    check = verify_chain()
    assert check.ok, check.problem
    rows = [
        [
            shape,
            common.fmt(r["median_off"], 0),
            common.fmt(r["median_on"], 0),
            f"{r['ratio']:.2f}x",
            f"{min(r['on']):,.0f}..{max(r['on']):,.0f} / {min(r['off']):,.0f}..{max(r['off']):,.0f}",
        ]
        for shape, r in results.items()
    ]
    print(common.table(["ingest() shape", "audit off ev/s", "audit on ev/s", "on/off", "range on / off"], rows))
    print(f"chain verified after the run: {check.entries:,} entries")
    path = common.write_results("audit-ingest", {"prefill": args.prefill, **results})
    common.log(f"results: {path}")


if __name__ == "__main__":
    main()
