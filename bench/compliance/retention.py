"""Retention on PostgreSQL: rows deleted per second, with ingestion running at the same time.

    .venv/bin/python -m bench.compliance.retention [--runs 60000]

Seeds (SQL, fast) ``--runs`` old runs, each with one raw event, one output dataset version and its
RunOutput edge, plus a production model whose 3-run lineage is just as old (protected). A probe
process ingests one START/COMPLETE pair at a time through the ingestion service and records latency:
first idle (8 s), then while ``retention --apply`` runs. Reports deleted rows/s (runs, versions, raw
events, edges) and ingestion p95 idle vs during retention (target: >= 20,000 rows/s; p95 <= 2x idle)."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from typing import Any

from bench import common


def _setup(database: str) -> None:
    os.environ.update(common.server_env(database))
    import django

    django.setup()


def probe(database: str, stop: Any, phase: Any, out: Any) -> None:
    _setup(database)
    from bench.events import EventFactory
    from lineage.ingest.service import ingest

    factory = EventFactory(stream=7, seed=3)
    lat: dict[int, list[float]] = {0: [], 1: []}
    while not stop.is_set():
        start, complete = factory.pair()
        t0 = time.perf_counter()
        ingest([start, complete])
        lat[phase.value].append(time.perf_counter() - t0)
        time.sleep(0.01)
    out.put(lat)


def seed(runs: int) -> dict[str, int]:
    from django.db import connection
    from django.utils import timezone

    from governance.compliance.models import RetentionPolicy
    from tests.test_compliance_graph import ago, approve, dataset, deploy, model_version, run

    old = timezone.now() - timezone.timedelta(days=400)
    src = dataset("bench-src")
    load = run("bench-load", ago(300), outputs=[src])
    train = run("bench-train", ago(299), inputs=[load.new_versions[0]])
    mv = model_version("bench-model", train)
    from django.contrib.auth.models import User

    approver = User.objects.create(username="bench-approver")
    deploy(mv, approve(mv, approver, at=ago(298)), at=ago(297))
    with connection.cursor() as cur:
        cur.execute("SELECT id, namespace_id FROM lineage_job WHERE name='bench-load'")
        job_id, ns_id = cur.fetchone()
        cur.execute(
            "INSERT INTO lineage_dataset (namespace_id, name, type, physical_name, source_name, description, fields,"
            " tags, facets, facet_times, is_deleted, lifecycle_state, created_at, updated_at)"
            " SELECT %s, 'sink-' || g, 'DB_TABLE', '', '', '', '[]', '[]', '{}', '{}', false, '', %s, %s"
            " FROM generate_series(1, 200) g",
            [ns_id, old, old],
        )
        cur.execute(
            "INSERT INTO lineage_run (run_id, job_id, state, state_rank, first_event_time, last_event_time,"
            " parent_run_id, parent_job_namespace, parent_job_name, facets, facet_times, created_at, updated_at)"
            " SELECT 'bench-' || g, %s, 'COMPLETE', '[]', %s, %s, '', '', '', '{}', '{}', %s, %s"
            " FROM generate_series(1, %s) g",
            [job_id, old, old, old, old, runs],
        )
        cur.execute(
            "INSERT INTO lineage_datasetversion (dataset_id, uuid, version, created_at, run_id, fields, schema_digest,"
            " facets, facet_times, lifecycle_state)"
            " SELECT d.id, gen_random_uuid(), r.run_id, %s, r.id, '[]', '', '{}', '{}', ''"
            " FROM lineage_run r JOIN lineage_dataset d ON d.name = 'sink-' || (1 + r.id %% 200)"
            " WHERE r.run_id LIKE 'bench-%%'",
            [old],
        )
        cur.execute(
            "INSERT INTO lineage_runoutput (run_id, dataset_id, version_id, first_seen_at, facets, facet_times)"
            " SELECT v.run_id, v.dataset_id, v.id, %s, '{}', '{}' FROM lineage_datasetversion v"
            " JOIN lineage_run r ON r.id = v.run_id WHERE r.run_id LIKE 'bench-%%'",
            [old],
        )
        # Each sink's current version: a young one (kept).
        cur.execute(
            "INSERT INTO lineage_datasetversion (dataset_id, uuid, version, created_at, fields, schema_digest,"
            " facets, facet_times, lifecycle_state)"
            " SELECT id, gen_random_uuid(), 'current', now(), '[]', '', '{}', '{}', '' FROM lineage_dataset"
            " WHERE name LIKE 'sink-%%'"
        )
        cur.execute(
            "UPDATE lineage_dataset d SET current_version_id = v.id FROM lineage_datasetversion v"
            " WHERE v.dataset_id = d.id AND v.version = 'current'"
        )
        cur.execute(
            "INSERT INTO lineage_rawevent (digest, kind, event_type, event_time, received_at, run_id, job_namespace,"
            " job_name, producer, schema_url, size_bytes, payload)"
            " SELECT md5(run_id) || md5(run_id || 'x'), 'RunEvent', 'COMPLETE', %s, %s, run_id, 'ns', 'bench-load',"
            " '', '', 100, '{}' FROM lineage_run WHERE run_id LIKE 'bench-%%'",
            [old, old],
        )
        cur.execute("ANALYZE")
    for kind in ("raw_events", "runs", "dataset_versions"):
        RetentionPolicy.objects.create(kind=kind, keep_days=90)
    return {"runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=60_000)
    parser.add_argument("--idle-seconds", type=float, default=8.0)
    args = parser.parse_args()
    common.install_signal_handlers()
    database = common.fresh_database("compliance_retention")
    _setup(database)
    sys.path.insert(0, str(common.REPO))
    t0 = time.perf_counter()
    seed(args.runs)
    common.log(f"seeded {args.runs} runs in {time.perf_counter() - t0:.1f}s")
    from governance.audit.verify import verify_chain
    from governance.compliance.retention import execute, plan
    from governance.promotions.evidence import closure
    from governance.registry.models import ModelVersion

    mv = ModelVersion.objects.get(model__name="bench-model")
    before = closure(mv).digest
    ctx = mp.get_context("spawn")
    stop, phase, out = ctx.Event(), ctx.Value("i", 0), ctx.Queue()
    proc = ctx.Process(target=probe, args=(database, stop, phase, out))
    proc.start()
    time.sleep(args.idle_seconds)
    phase.value = 1
    t_plan = time.perf_counter()
    p = plan()
    t_exec = time.perf_counter()
    from governance.compliance.retention import Plan

    done: dict[str, int] = {}
    per_kind: dict[str, float] = {}
    for kind in ("raw_events", "findings", "dataset_versions", "runs", "audit_entries"):
        t_kind = time.perf_counter()
        sub = Plan(now=p.now, items={kind: p.items.get(kind, [])})
        if os.environ.get("BENCH_PROFILE") == kind:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            done.update(prof.runcall(execute, sub, actor_name="bench"))
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        else:
            done.update(execute(sub, actor_name="bench"))
        per_kind[kind] = round(time.perf_counter() - t_kind, 2)
    t_end = time.perf_counter()
    time.sleep(0.5)
    stop.set()
    lat = out.get(timeout=60)
    proc.join(30)
    from lineage.models import RunOutput

    edges = args.runs  # one RunOutput per deleted version, removed with it
    rows = sum(done.values()) + edges
    assert not RunOutput.objects.filter(run__run_id__startswith="bench-").exists()
    result = {
        "rows_deleted": rows,
        "by_kind": done,
        "seconds_by_kind": per_kind,
        "plan_seconds": round(t_exec - t_plan, 2),
        "delete_seconds": round(t_end - t_exec, 2),
        "rows_per_second_delete": round(rows / (t_end - t_exec)),
        "rows_per_second_including_plan": round(rows / (t_end - t_plan)),
        "ingest_p95_idle_ms": round(common.percentile(lat[0], 95) * 1000, 1),
        "ingest_p95_during_ms": round(common.percentile(lat[1], 95) * 1000, 1),
        "ingest_samples": [len(lat[0]), len(lat[1])],
        "evidence_unchanged": closure(mv).digest == before,
        "audit_chain_ok": verify_chain().ok,
    }
    result["p95_ratio"] = round(result["ingest_p95_during_ms"] / max(result["ingest_p95_idle_ms"], 0.001), 2)
    common.log(result)
    common.write_results("compliance_retention", {"result": result, "machine": common.machine()})


if __name__ == "__main__":
    main()
