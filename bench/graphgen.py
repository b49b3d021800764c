"""Synthetic lineage graphs written straight into the Custody tables with COPY.

    .venv/bin/python -m bench.graphgen --edges 1000000 [--db custody_bench_graph_1m] [--hub 100000] [--keep]

Shape (consistent with the models, so the read API and the admin work on it):

- ``P`` pipelines, each ``LAYERS`` dataset layers deep and ``WIDTH`` datasets wide. Job ``(p, l, i)``
  reads datasets ``(p, l, i)`` and ``(p, l, i+1)`` and writes ``(p, l+1, i)``: every dataset in a
  middle layer has paths of 20+ edge hops both upstream and downstream, and the neighbourhood
  widens by about one node per job hop (a realistic lineage cone, not an exponential one).
- ~1% of jobs read their second input from another pipeline, so the pipelines form one graph.
- ~2% of jobs changed an input once: the old edge is closed (``valid_to`` set), the new one opens
  then (``valid_from``), and the job has two runs; ``asOf`` before the change sees the old input.
- One hub dataset read by ``--hub`` consumer jobs (default 100k at 1M edges, 10% of the edges in
  smaller graphs), each with one run: a node whose neighbourhood must be cut by the node limit.
  The hub's edges count towards ``--edges``.
- Every job has a completed run (``latest_run``), each run its RunInput/RunOutput rows and a
  DatasetVersion for its output; datasets carry a 10-field schema.

Rows are written with ``COPY`` (FK triggers off via ``session_replication_role = replica``, ids
assigned here, sequences moved past them afterwards); secondary indexes are dropped before the
load and recreated from their own definitions after it, then the tables are analysed.
Writes ``bench/results/graph-<db>.json`` with the counts and sample node ids for queries.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench import common

LAYERS = 30  # dataset layers per pipeline (29 job layers): paths of up to 58 edge hops
WIDTH = 24
EDGES_PER_PIPELINE = (LAYERS - 1) * WIDTH * 3
CROSS_LINK = 0.01
CHANGED_INPUT = 0.02
BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)
TABLES = (
    "lineage_namespace",
    "lineage_dataset",
    "lineage_job",
    "lineage_run",
    "lineage_datasetversion",
    "lineage_runinput",
    "lineage_runoutput",
    "lineage_jobdatasetedge",
)
VERSION_NS = uuid.UUID("6f2b1c3e-8f0a-5d5e-9c1b-2a7e4d9f0c11")
WORDS = ("id", "amount", "customer", "merchant", "ts", "status", "score", "region", "label", "currency", "device")
TYPES = ("BIGINT", "VARCHAR", "DOUBLE", "TIMESTAMP", "BOOLEAN", "DECIMAL(18,2)", "DATE")


def _schemas(n: int = 64) -> list[str]:
    rng = random.Random(7)
    out = []
    for _ in range(n):
        fields = [
            {"name": f"{rng.choice(WORDS)}_{j}", "type": rng.choice(TYPES), "description": None, "tags": []}
            for j in range(10)
        ]
        out.append(json.dumps(fields))
    return out


class Ids:
    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def take(self, table: str) -> int:
        value = self.next.get(table, 1)
        self.next[table] = value + 1
        return value


def _ts(minutes: float) -> datetime:
    return BASE_TIME + timedelta(minutes=minutes)


class Generator:
    def __init__(self, edges: int, hub: int, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.pipelines = max(1, round((edges - hub) / EDGES_PER_PIPELINE))
        self.hub = hub
        self.ids = Ids()
        self.schemas = _schemas()
        self.counts: dict[str, int] = {}
        self.namespaces = [f"warehouse-{k:02d}" for k in range(20)]
        self.job_namespaces = ["airflow-prod", "airflow-ml", "dbt-finance"]

    # ids are dense and deterministic: dataset (p, l, i) and job (p, l, i) map to arithmetic ids
    def dataset_id(self, p: int, layer: int, i: int) -> int:
        return 1 + (p * LAYERS + layer) * WIDTH + i

    def job_id(self, p: int, layer: int, i: int) -> int:
        return 1 + (p * (LAYERS - 1) + layer) * WIDTH + i

    def dataset_ns(self, p: int) -> int:
        return 1 + p % len(self.namespaces)

    def dataset_name(self, p: int, layer: int, i: int) -> str:
        return f"p{p:04d}.layer_{layer:02d}.table_{i:02d}"

    def node_id(self, p: int, layer: int, i: int) -> str:
        return f"dataset:{self.namespaces[p % len(self.namespaces)]}:{self.dataset_name(p, layer, i)}"

    @property
    def n_datasets(self) -> int:
        return self.pipelines * LAYERS * WIDTH

    @property
    def n_jobs(self) -> int:
        return self.pipelines * (LAYERS - 1) * WIDTH

    # --- row streams ------------------------------------------------------------------------------
    def namespace_rows(self) -> Iterator[tuple[Any, ...]]:
        t = _ts(0)
        for k, name in enumerate([*self.namespaces, *self.job_namespaces]):
            yield (k + 1, name, "", "", t, t)

    def dataset_rows(self) -> Iterator[tuple[Any, ...]]:
        for p in range(self.pipelines):
            ns = self.dataset_ns(p)
            for layer in range(LAYERS):
                t = _ts(p + layer)
                for i in range(WIDTH):
                    name = self.dataset_name(p, layer, i)
                    yield (self.dataset_id(p, layer, i), ns, name, name, self.schemas[(p + layer + i) % 64], t, t)
        t = _ts(0)
        yield (self.n_datasets + 1, 1, "shared.calendar_hub", "shared.calendar_hub", self.schemas[0], t, t)

    def job_rows(self) -> Iterator[tuple[Any, ...]]:
        njobns = len(self.job_namespaces)
        first_job_ns = len(self.namespaces) + 1
        for p in range(self.pipelines):
            for layer in range(LAYERS - 1):
                t = _ts(p + layer)
                for i in range(WIDTH):
                    job = self.job_id(p, layer, i)
                    yield (job, first_job_ns + job % njobns, f"p{p:04d}.etl_{layer:02d}.task_{i:02d}", t, t)
        for h in range(self.hub):
            yield (self.n_jobs + 1 + h, first_job_ns, f"reports.dashboard_{h:06d}", _ts(0), _ts(0))

    def graph_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Runs, versions, run inputs/outputs and job edges (built together: they share ids)."""
        rng = self.rng
        runs: list[tuple[Any, ...]] = []
        versions: list[tuple[Any, ...]] = []
        run_inputs: list[tuple[Any, ...]] = []
        run_outputs: list[tuple[Any, ...]] = []
        edges: list[tuple[Any, ...]] = []
        latest: list[tuple[int, int]] = []
        self.history_examples: list[dict[str, Any]] = []
        self.closed_edges = 0
        edge_id = run_id = version_id = ri_id = ro_id = 0
        for p in range(self.pipelines):
            for layer in range(LAYERS - 1):
                for i in range(WIDTH):
                    job = self.job_id(p, layer, i)
                    t0 = _ts(p + layer + i / WIDTH)
                    first = self.dataset_id(p, layer, i)
                    if rng.random() < CROSS_LINK and self.pipelines > 1:
                        q = rng.randrange(self.pipelines)
                        second = self.dataset_id(q, layer, rng.randrange(WIDTH))
                        if second == first:
                            second = self.dataset_id(p, layer, (i + 1) % WIDTH)
                    else:
                        second = self.dataset_id(p, layer, (i + 1) % WIDTH)
                    output = self.dataset_id(p, layer + 1, i)
                    changed = rng.random() < CHANGED_INPUT
                    run_times = [t0]
                    inputs_per_run = [[first, second]]
                    if changed:
                        old = self.dataset_id(p, layer, (i + 2) % WIDTH)
                        if old == second:
                            old = self.dataset_id(p, layer, (i + 3) % WIDTH)
                        t1 = t0 + timedelta(days=30)
                        run_times = [t0, t1]
                        inputs_per_run = [[first, old], [first, second]]
                        edge_id += 1
                        edges.append((edge_id, job, old, 0, 0, t0, t1))
                        self.closed_edges += 1
                        edge_id += 1
                        edges.append((edge_id, job, second, 0, 0, t1, None))
                        if len(self.history_examples) < 20 and 8 <= layer <= 20:
                            self.history_examples.append(
                                {
                                    "job": f"p{p:04d}.etl_{layer:02d}.task_{i:02d}",
                                    "old_input": old,
                                    "changed_at": t1.isoformat(),
                                    "dataset_node": self.node_id(p, layer + 1, i),
                                }
                            )
                    else:
                        edge_id += 1
                        edges.append((edge_id, job, second, 0, 0, t0, None))
                    edge_id += 1
                    edges.append((edge_id, job, first, 0, 0, t0, None))
                    edge_id += 1
                    edges.append((edge_id, job, output, 1, 0, t0, None))
                    for t, ins in zip(run_times, inputs_per_run, strict=True):
                        run_id += 1
                        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                        end = t + timedelta(minutes=5)
                        runs.append(
                            (run_id, rid, job, "COMPLETED", json.dumps([2, end.isoformat(), 1]), t, end, t, end, t, t)
                        )
                        for ds in ins:
                            ri_id += 1
                            run_inputs.append((ri_id, run_id, ds, t))
                        version_id += 1
                        vuuid = uuid.uuid5(VERSION_NS, f"{p}\x00{layer + 1}\x00{i}\x00{rid}")
                        versions.append((version_id, vuuid, str(vuuid), end, output, run_id))
                        ro_id += 1
                        run_outputs.append((ro_id, run_id, output, version_id, t))
                    latest.append((job, run_id))
        hub_dataset = self.n_datasets + 1
        for h in range(self.hub):
            job = self.n_jobs + 1 + h
            t = _ts(h / 1000)
            edge_id += 1
            edges.append((edge_id, job, hub_dataset, 0, 0, t, None))
            run_id += 1
            rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            end = t + timedelta(minutes=1)
            runs.append((run_id, rid, job, "COMPLETED", json.dumps([2, end.isoformat(), 1]), t, end, t, end, t, t))
            ri_id += 1
            run_inputs.append((ri_id, run_id, hub_dataset, t))
            latest.append((job, run_id))
        self.latest = latest
        return {
            "lineage_run": runs,
            "lineage_datasetversion": versions,
            "lineage_runinput": run_inputs,
            "lineage_runoutput": run_outputs,
            "lineage_jobdatasetedge": edges,
        }


# The columns each row stream supplies, in order; every other column gets its model default.
COLUMNS: dict[str, tuple[str, ...]] = {
    "lineage_namespace": ("id", "name", "owner_name", "description", "created_at", "updated_at"),
    "lineage_dataset": ("id", "namespace_id", "name", "physical_name", "fields", "created_at", "updated_at"),
    "lineage_job": ("id", "namespace_id", "name", "created_at", "updated_at"),
    "lineage_run": (
        "id",
        "run_id",
        "job_id",
        "state",
        "state_rank",
        "first_event_time",
        "last_event_time",
        "started_at",
        "ended_at",
        "created_at",
        "updated_at",
    ),
    "lineage_datasetversion": ("id", "uuid", "version", "created_at", "dataset_id", "run_id"),
    "lineage_runinput": ("id", "run_id", "dataset_id", "first_seen_at"),
    "lineage_runoutput": ("id", "run_id", "dataset_id", "version_id", "first_seen_at"),
    "lineage_jobdatasetedge": ("id", "job_id", "dataset_id", "direction", "source", "valid_from", "valid_to"),
}


def _model_defaults(database: str) -> dict[str, tuple[tuple[str, ...], tuple[Any, ...]]]:
    """For each loaded table: the columns not in COLUMNS and the model's default for each, so the
    rows stay consistent with the models as they evolve (read from Django's model metadata)."""
    if "DJANGO_SETTINGS_MODULE" not in os.environ:
        os.environ.update(common.server_env(database))
    import django
    from django.apps import apps

    django.setup()
    out: dict[str, tuple[tuple[str, ...], tuple[Any, ...]]] = {}
    for model in apps.get_app_config("lineage").get_models():
        table = model._meta.db_table
        if table not in COLUMNS:
            continue
        names: list[str] = []
        values: list[Any] = []
        for f in model._meta.concrete_fields:
            if f.column in COLUMNS[table]:
                continue
            if f.has_default():
                value = f.get_default()
            elif f.null:
                value = None
            else:
                raise RuntimeError(f"{table}.{f.column} is NOT NULL without a default: teach bench/graphgen.py it")
            if isinstance(value, dict | list):
                value = json.dumps(value)
            elif isinstance(value, uuid.UUID):
                value = str(value)
            names.append(f.column)
            values.append(value)
        out[table] = (tuple(names), tuple(values))
    missing = set(COLUMNS) - set(out)
    if missing:
        raise RuntimeError(f"tables not found among the lineage models: {sorted(missing)}")
    return out


def _secondary_indexes(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(name, definition) of the indexes on the loaded tables that back no constraint."""
    rows = conn.execute(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        WHERE i.schemaname = 'public' AND i.tablename = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
        """,
        (list(TABLES),),
    ).fetchall()
    return [(str(name), str(defn)) for name, defn in rows]


def _copy(
    conn: psycopg.Connection[Any],
    table: str,
    rows: Any,
    defaults: dict[str, tuple[tuple[str, ...], tuple[Any, ...]]],
) -> int:
    extra, tail = defaults[table]
    columns = ", ".join([*COLUMNS[table], *extra])
    n = 0
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row + tail)
            n += 1
    return n


def generate(database: str, edges: int, hub: int) -> dict[str, Any]:
    started = time.perf_counter()
    defaults = _model_defaults(database)
    gen = Generator(edges, hub)
    timings: dict[str, float] = {}
    counts: dict[str, int] = {}
    with psycopg.connect(common.db_url(database)) as conn:
        conn.execute("SET session_replication_role = replica")  # no FK triggers during the load
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET synchronous_commit = off")
        indexes = _secondary_indexes(conn)
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.commit()
        t = time.perf_counter()
        counts["lineage_namespace"] = _copy(conn, "lineage_namespace", gen.namespace_rows(), defaults)
        counts["lineage_dataset"] = _copy(conn, "lineage_dataset", gen.dataset_rows(), defaults)
        counts["lineage_job"] = _copy(conn, "lineage_job", gen.job_rows(), defaults)
        conn.commit()
        timings["entities"] = time.perf_counter() - t
        t = time.perf_counter()
        graph = gen.graph_rows()
        timings["build_rows"] = time.perf_counter() - t
        t = time.perf_counter()
        for table in (
            "lineage_run",
            "lineage_datasetversion",
            "lineage_runinput",
            "lineage_runoutput",
            "lineage_jobdatasetedge",
        ):
            counts[table] = _copy(conn, table, graph[table], defaults)
            conn.commit()
            common.log(f"  {table}: {counts[table]:,} rows")
        del graph
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE bench_latest (job_id bigint, run_id bigint)")
            with cur.copy("COPY bench_latest FROM STDIN") as copy:
                for row in gen.latest:
                    copy.write_row(row)
            cur.execute("UPDATE lineage_job j SET latest_run_id = l.run_id FROM bench_latest l WHERE j.id = l.job_id")
            cur.execute(
                "UPDATE lineage_dataset d SET current_version_id = v.id FROM "
                "(SELECT DISTINCT ON (dataset_id) dataset_id, id FROM lineage_datasetversion "
                " ORDER BY dataset_id, created_at DESC) v WHERE d.id = v.dataset_id"
            )
        conn.commit()
        timings["copy"] = time.perf_counter() - t
        t = time.perf_counter()
        for table in TABLES:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT max(id) FROM {table}), 1))"
            )
        for _name, definition in indexes:
            conn.execute(definition)
            conn.commit()
        timings["indexes"] = time.perf_counter() - t
        t = time.perf_counter()
        conn.autocommit = True
        for table in TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
        timings["analyze"] = time.perf_counter() - t
    total = time.perf_counter() - started
    rng = random.Random(42)
    samples = []
    for _ in range(200):
        p = rng.randrange(gen.pipelines)
        samples.append(gen.node_id(p, rng.randrange(13, 17), rng.randrange(WIDTH)))
    meta = {
        "database": database,
        "edges_requested": edges,
        "edges": counts["lineage_jobdatasetedge"],
        "closed_edges": gen.closed_edges,
        "pipelines": gen.pipelines,
        "layers": LAYERS,
        "width": WIDTH,
        "hub_neighbours": hub,
        "hub_node": f"dataset:{gen.namespaces[0]}:shared.calendar_hub",
        "hub_consumer_node": f"job:{gen.job_namespaces[0]}:reports.dashboard_000000" if hub else None,
        "sample_nodes": samples,
        "history_examples": gen.history_examples,
        "counts": counts,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "total_s": round(total, 1),
    }
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (common.RESULTS_DIR / f"graph-{database}.json").write_text(json.dumps(meta, indent=2))
    return meta


def default_hub(edges: int) -> int:
    """Consumers of the hub dataset: 100k in the 1M-edge graph, 10% of the edges in smaller ones."""
    return 100_000 if edges >= 1_000_000 else edges // 10


def build(edges: int, database: str | None = None, hub: int | None = None, keep: bool = False) -> dict[str, Any]:
    """A fresh database holding a generated graph; dropped at exit unless ``keep``."""
    name = database or f"graph_{_size_label(edges)}"
    name = name.removeprefix(f"{common.DB_PREFIX}_")
    db = common.fresh_database(name, keep=keep)
    common.log(f"generating {edges:,} edges into {db} ...")
    meta = generate(db, edges, default_hub(edges) if hub is None else hub)
    common.log(f"  done in {meta['total_s']}s: {meta['counts']}")
    return meta


def _size_label(edges: int) -> str:
    if edges >= 1_000_000 and edges % 1_000_000 == 0:
        return f"{edges // 1_000_000}m"
    if edges >= 1000 and edges % 1000 == 0:
        return f"{edges // 1000}k"
    return str(edges)


def main() -> None:
    common.install_signal_handlers()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edges", type=int, default=10_000)
    parser.add_argument("--db", default=None, help="database name (custody_bench_ prefix added)")
    parser.add_argument(
        "--hub", type=int, default=None, help="hub consumer jobs (default 100k at 1M edges, else 10%% of --edges)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database after exit")
    args = parser.parse_args()
    meta = build(args.edges, args.db, args.hub, args.keep)
    print(json.dumps({k: v for k, v in meta.items() if k not in ("sample_nodes", "history_examples")}, indent=2))


if __name__ == "__main__":
    main()
