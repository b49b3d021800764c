"""Cost of the audit append on PostgreSQL, and the chain-locking strategies compared.

    .venv/bin/python -m bench.audit.append [--pairs 1000] [--prefill 100000] [--threads 4]

Part 1, added latency of the append to an action: a governance-like action (in one transaction:
lock a row with SELECT ... FOR UPDATE, change it, save) timed with and without
``governance.audit.services.record(...)`` of the change (before/after values), interleaved
A/B/A/B in one process on a trail already holding ``--prefill`` entries. Reported: p50/p95 of both,
the difference of the p95s, and the p50/p95 of the ``record()`` call alone.

Part 2, how to keep one linear chain under concurrent writers, each strategy appending the same
entries (same hashing, same raw INSERT) from 1 and from ``--threads`` threads, each append its own
transaction; the trail is verified after each run:

- advisory_fn: ``custody_audit_append()``, one round trip: advisory lock, head, link, insert in
  PL/pgSQL (what Custody does);
- advisory: the same three steps as three statements from Python (three round trips);
- head row: ``SELECT ... FOR UPDATE`` on a one-row head table, INSERT, UPDATE the head row;
- optimistic: read the head without a lock, INSERT in a savepoint, retry on the primary-key clash.

(A "sequencer" that seals entries after commit was not built: it needs UPDATEs of entries, which
the append-only triggers exist to refuse, and leaves a window in which committed changes have no
sealed entry.)
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from typing import Any

from bench import common
from bench.audit import common as audit_common

STRATEGIES = ("advisory_fn", "advisory", "head_row", "optimistic")


def part1(pairs: int) -> dict[str, Any]:
    from django.db import transaction
    from django.utils import timezone

    from governance.audit.services import record
    from lineage.models import Namespace

    now = timezone.now()
    ns = Namespace.objects.create(name="bench-audit", created_at=now, updated_at=now)

    def action(audit: bool, i: int) -> tuple[float, float]:
        started = time.perf_counter()
        with transaction.atomic():
            row = Namespace.objects.select_for_update().get(pk=ns.pk)
            before = row.description
            row.description = f"revision {i}"
            row.updated_at = timezone.now()
            row.save(update_fields=["description", "updated_at"])
            append = 0.0
            if audit:
                t = time.perf_counter()
                record(
                    "bench.namespace.describe",
                    obj=row,
                    before={"description": before},
                    after={"description": row.description},
                    actor=None,
                    actor_name="bench",
                )
                append = time.perf_counter() - t
        return time.perf_counter() - started, append

    for i in range(100):  # warm up both paths
        action(i % 2 == 0, i)
    plain, audited, appends = [], [], []
    for i in range(pairs):
        first = i % 2 == 0  # alternate which goes first
        for audit in (first, not first):
            total, append = action(audit, i)
            (audited if audit else plain).append(total * 1000)
            if audit:
                appends.append(append * 1000)
    p = common.percentile
    return {
        "pairs": pairs,
        "action_ms": {"p50": p(plain, 50), "p95": p(plain, 95)},
        "action_with_audit_ms": {"p50": p(audited, 50), "p95": p(audited, 95)},
        "added_p95_ms": p(audited, 95) - p(plain, 95),
        "added_p50_ms": p(audited, 50) - p(plain, 50),
        "record_call_ms": {"p50": p(appends, 50), "p95": p(appends, 95), "p99": p(appends, 99)},
    }


# --- part 2: locking strategies -------------------------------------------------------------------
def _appender(strategy: str) -> Callable[[int, int], None]:
    from django.db import IntegrityError, connection, transaction
    from django.utils import timezone

    from governance.audit import chain
    from governance.audit.services import CHAIN_LOCK_KEY

    insert = (
        "INSERT INTO audit_auditentry (sequence, timestamp, actor_id, actor_name, action, object_type, object_id, "
        "object_repr, before, after, extra, request_id, source_ip, prev_hash, hash) "
        "VALUES (%s, %s, NULL, 'bench', 'bench.append', 'bench.thing', %s, %s, NULL, %s, NULL, '', '', %s, %s)"
    )

    def compute(head: tuple[int, str], writer: int, i: int) -> tuple[Any, ...]:
        sequence, prev = head[0] + 1, head[1]
        now = timezone.now()
        after = {"writer": writer, "i": i}
        body = chain.body_digest(
            time=chain.format_time(now),
            actor_id=None,
            actor_name="bench",
            action="bench.append",
            object_type="bench.thing",
            object_id=f"{writer}:{i}",
            object_repr=f"thing {writer}:{i}",
            before=None,
            after=after,
            extra_json="null",
            request_id="",
            source_ip="",
        )
        return (
            sequence,
            now,
            f"{writer}:{i}",
            f"thing {writer}:{i}",
            chain.canonical_json(after),
            prev,
            chain.link_hash(prev, body),
        )

    head_sql = "SELECT sequence, hash FROM audit_auditentry ORDER BY sequence DESC LIMIT 1"

    def advisory(writer: int, i: int) -> None:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
            cur.execute(head_sql)
            cur.execute(insert, compute(cur.fetchone(), writer, i))

    def head_row(writer: int, i: int) -> None:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SELECT sequence, hash FROM bench_audit_head WHERE id = 1 FOR UPDATE")
            row = compute(cur.fetchone(), writer, i)
            cur.execute(insert, row)
            cur.execute("UPDATE bench_audit_head SET sequence = %s, hash = %s WHERE id = 1", [row[0], row[-1]])

    def optimistic(writer: int, i: int) -> None:
        with transaction.atomic(), connection.cursor() as cur:
            while True:
                cur.execute(head_sql)
                row = compute(cur.fetchone(), writer, i)
                try:
                    with transaction.atomic():
                        cur.execute(insert, row)
                    return
                except IntegrityError:
                    continue

    def advisory_fn(writer: int, i: int) -> None:
        row = compute((0, chain.GENESIS), writer, i)  # only the body is used: the function links
        body = chain.body_digest(
            time=chain.format_time(row[1]),
            actor_id=None,
            actor_name="bench",
            action="bench.append",
            object_type="bench.thing",
            object_id=row[2],
            object_repr=row[3],
            before=None,
            after={"writer": writer, "i": i},
            extra_json="null",
            request_id="",
            source_ip="",
        )
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(
                "SELECT * FROM custody_audit_append(%s, %s, NULL, 'bench', 'bench.append', 'bench.thing', %s, %s, "
                "NULL, %s, NULL, '', '', %s)",
                [CHAIN_LOCK_KEY, row[1], row[2], row[3], row[4], body],
            )

    return {
        "advisory_fn": advisory_fn,
        "advisory": advisory,
        "head_row": head_row,
        "optimistic": optimistic,
    }[strategy]


def _prepare_head_table() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS bench_audit_head (id int PRIMARY KEY, sequence bigint, hash text)")
        cur.execute("DELETE FROM bench_audit_head")
        cur.execute(
            "INSERT INTO bench_audit_head SELECT 1, sequence, hash FROM audit_auditentry ORDER BY sequence DESC LIMIT 1"
        )


def _run(strategy: str, count: int, per_thread: int) -> tuple[float, list[float]]:
    """``count`` threads each appending ``per_thread`` entries; (seconds, latencies in ms)."""
    from django.db import connection

    append = _appender(strategy)
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def work(writer: int) -> None:
        mine = []
        try:
            barrier.wait()
            for i in range(per_thread):
                t = time.perf_counter()
                append(writer, i)
                mine.append((time.perf_counter() - t) * 1000)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)

    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(w,)) for w in range(count)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed, latencies


def part2(threads: int, per_thread: int, reps: int) -> list[dict[str, Any]]:
    from django.db import connection

    from governance.audit.verify import verify_chain

    rows = []
    for count in (1, threads):
        runs: dict[str, list[tuple[float, list[float]]]] = {s: [] for s in STRATEGIES}
        for rep in range(reps):
            order = STRATEGIES if rep % 2 == 0 else tuple(reversed(STRATEGIES))
            for strategy in order:
                _prepare_head_table()
                runs[strategy].append(_run(strategy, count, per_thread))
        result = verify_chain()
        for strategy in STRATEGIES:
            rates = [count * per_thread / elapsed for elapsed, _ in runs[strategy]]
            latencies = [x for _, lat in runs[strategy] for x in lat]
            rows.append(
                {
                    "strategy": strategy,
                    "threads": count,
                    "appends_per_s": common.median(rates),
                    "appends_per_s_all": rates,
                    "p50_ms": common.percentile(latencies, 50),
                    "p95_ms": common.percentile(latencies, 95),
                    "chain_ok": result.ok,
                }
            )
            common.log(
                f"  {strategy:10s} x{count}: {rows[-1]['appends_per_s']:,.0f}/s, "
                f"p95 {rows[-1]['p95_ms']:.2f} ms, chain ok={result.ok}"
            )
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_audit_head")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--prefill", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--per-thread", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    common.install_signal_handlers()
    database = audit_common.fresh_database("append")
    if args.prefill:
        common.log(f"prefilling {args.prefill:,} entries ...")
        audit_common.generate_chain(database, args.prefill)
    audit_common.setup_django(database)
    common.log("part 1: added latency of the append ...")
    one = part1(args.pairs)
    common.log("part 2: locking strategies ...")
    two = part2(args.threads, args.per_thread, args.reps)
    f = common.fmt
    print(
        common.table(
            ["action (one transaction)", "p50 ms", "p95 ms"],
            [
                ["lock + update a row (baseline)", f(one["action_ms"]["p50"], 2), f(one["action_ms"]["p95"], 2)],
                [
                    "same + record() of the change",
                    f(one["action_with_audit_ms"]["p50"], 2),
                    f(one["action_with_audit_ms"]["p95"], 2),
                ],
                ["added by the audit append", f(one["added_p50_ms"], 2), f(one["added_p95_ms"], 2)],
                ["record() call alone", f(one["record_call_ms"]["p50"], 2), f(one["record_call_ms"]["p95"], 2)],
            ],
        )
    )
    print()
    print(
        common.table(
            ["chain lock strategy", "threads", "appends/s", "p50 ms", "p95 ms", "chain verifies"],
            [
                [
                    r["strategy"],
                    str(r["threads"]),
                    f(r["appends_per_s"], 0),
                    f(r["p50_ms"], 2),
                    f(r["p95_ms"], 2),
                    str(r["chain_ok"]),
                ]
                for r in two
            ],
        )
    )
    path = common.write_results("audit-append", {"prefill": args.prefill, "latency": one, "strategies": two})
    common.log(f"results: {path}")


if __name__ == "__main__":
    main()
