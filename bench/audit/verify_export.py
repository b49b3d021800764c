"""Verification speed and flat-memory export of a large audit trail, on PostgreSQL.

    .venv/bin/python -m bench.audit.verify_export [--entries 1000000] [--reps 3]

1. Generates ``--entries`` correctly chained entries with COPY (a realistic mix: ingestion batches
   with digests, token revocations with before/after, role grants, logins) and signs a checkpoint.
2. Verification (``governance.audit.verify.verify_chain``, what ``manage.py audit_verify`` and
   ``GET /api/v1/audit/verify`` run), entries/s, beside the baseline of the same process only
   *fetching* the same rows through the same server-side cursor (the floor any verifier pays).
3. Export: ``GET /api/v1/audit/?format=jsonl`` (and ``format=csv``) through Django's request
   handler in a fresh process, streamed to a file; peak RSS of that process (VmHWM) beside its RSS
   just before the request (Django loaded, connected), plus time and MB/s.
4. The SDK's offline verifier over the exported file (``custody.verify.verify_file``), entries/s
   and peak RSS, in a fresh process.

Each measuring step runs in its own process so that peak RSS belongs to that step alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.audit import common as audit_common

HERE = Path(__file__).resolve()


def _child(mode: str, database: str, key: str, *extra: str) -> dict[str, Any]:
    env = dict(os.environ, CUSTODY_AUDIT_SIGNING_KEY=key, PYTHONPATH=f"{common.REPO}:{common.REPO / 'sdk'}")
    proc = subprocess.run(
        [common.PYTHON, "-m", "bench.audit.verify_export", "--child", mode, "--database", database, *extra],
        cwd=common.REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {mode} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# --- children -------------------------------------------------------------------------------------
def child_verify(database: str, reps: int, workers: int) -> dict[str, Any]:
    audit_common.setup_django(database)
    from django.db import connection, transaction

    from governance.audit.verify import entry_select, verify_chain

    verify_rates, parallel_rates, fetch_rates, entries = [], [], [], 0
    for _ in range(reps):
        started = time.perf_counter()
        with transaction.atomic(), connection.chunked_cursor() as cursor:
            cursor.execute(entry_select(connection.vendor) + " ORDER BY sequence")
            rows = 0
            while batch := cursor.fetchmany(10_000):
                rows += len(batch)
        fetch_rates.append(rows / (time.perf_counter() - started))
        started = time.perf_counter()
        result = verify_chain()
        elapsed = time.perf_counter() - started
        assert result.ok, result.problem
        entries = result.entries
        verify_rates.append(result.entries / elapsed)
        started = time.perf_counter()
        result = verify_chain(workers=workers)
        elapsed = time.perf_counter() - started
        assert result.ok and result.entries == entries, result.problem
        parallel_rates.append(result.entries / elapsed)
    return {
        "entries": entries,
        "workers": workers,
        "verify_per_s": verify_rates,
        "verify_parallel_per_s": parallel_rates,
        "fetch_only_per_s": fetch_rates,
        "peak_rss_mb": audit_common.peak_rss_mb(),
    }


def child_export(database: str, fmt: str, out: str) -> dict[str, Any]:
    audit_common.setup_django(database)
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from governance.accounts.models import ApiToken

    user, _ = User.objects.get_or_create(username="bench-auditor")
    user.groups.add(Group.objects.get_or_create(name="auditor")[0])
    _, token = ApiToken.issue(user, label="bench")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    client.get("/api/v1/audit/", {"limit": "1"})  # warm: imports, connection
    rss_before = audit_common.current_rss_mb()
    peak_before = audit_common.peak_rss_mb()
    started = time.perf_counter()
    response = client.get("/api/v1/audit/", {"format": fmt})
    assert response.status_code == 200, response.status_code
    size = 0
    lines = 0
    with open(out, "wb") as handle:
        for chunk in response.streaming_content:  # type: ignore[attr-defined]
            data = chunk if isinstance(chunk, bytes) else chunk.encode()
            handle.write(data)
            size += len(data)
            lines += data.count(b"\n")
    elapsed = time.perf_counter() - started
    return {
        "format": fmt,
        "bytes": size,
        "lines": lines,
        "seconds": elapsed,
        "mb_per_s": size / elapsed / 2**20,
        "rss_before_mb": rss_before,
        "peak_before_mb": peak_before,
        "peak_rss_mb": audit_common.peak_rss_mb(),
    }


def child_offline(path: str, key_pem: str) -> dict[str, Any]:
    from custody import verify

    rss_before = audit_common.current_rss_mb()
    started = time.perf_counter()
    result = verify.verify_file(path, key_pem)
    elapsed = time.perf_counter() - started
    assert result.ok, result.problem
    return {
        "entries": result.entries,
        "per_s": result.entries / elapsed,
        "signatures": result.checkpoints_verified,
        "cryptography": verify._FAST is not None,
        "rss_before_mb": rss_before,
        "peak_rss_mb": audit_common.peak_rss_mb(),
    }


# --- parent ---------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--database")
    parser.add_argument("--format", default="jsonl")
    parser.add_argument("--out")
    parser.add_argument("--key-file")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--keep", action="store_true", help="keep the generated database (for --reuse)")
    parser.add_argument("--reuse", help="an existing database generated by --keep (skips generation)")
    args = parser.parse_args()
    if args.child == "verify":
        print(json.dumps(child_verify(args.database, args.reps, args.workers)))
        return
    if args.child == "export":
        print(json.dumps(child_export(args.database, args.format, args.out)))
        return
    if args.child == "offline":
        print(json.dumps(child_offline(args.out, Path(args.key_file).read_text())))
        return

    common.install_signal_handlers()
    key = audit_common.new_signing_key()
    gen_seconds = 0.0
    if args.reuse:
        database = args.reuse
    else:
        database = audit_common.fresh_database("verify", keep=args.keep)
        common.log(f"generating {args.entries:,} entries in {database} ...")
        sys.path.insert(0, str(common.REPO))
        gen_seconds = audit_common.generate_chain(database, args.entries)
        common.log(f"  generated in {gen_seconds:.1f}s ({args.entries / gen_seconds:,.0f}/s, COPY + hashing)")
    env = dict(common.server_env(database), CUSTODY_AUDIT_SIGNING_KEY=key)
    subprocess.run(
        [common.PYTHON, "manage.py", "audit_checkpoint", "--force"],
        cwd=common.REPO,
        env=env,
        check=True,
        capture_output=True,
    )

    common.log("verifying ...")
    verify = _child("verify", database, key, "--reps", str(args.reps), "--workers", str(args.workers))
    results: dict[str, Any] = {"entries": args.entries, "generate_seconds": gen_seconds, "verify": verify}

    with tempfile.TemporaryDirectory(prefix="custody-audit-bench-") as tmp:
        exports = {}
        for fmt in ("jsonl", "csv"):
            common.log(f"exporting {fmt} ...")
            out = str(Path(tmp) / f"export.{fmt}")
            exports[fmt] = _child("export", database, key, "--format", fmt, "--out", out)
        results["export"] = exports
        key_file = Path(tmp) / "key.pem"
        from cryptography.hazmat.primitives import serialization

        public = serialization.load_pem_private_key(key.encode(), None).public_key()
        key_file.write_bytes(
            public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        common.log("offline verification of the export ...")
        results["offline"] = _child(
            "offline", database, key, "--out", str(Path(tmp) / "export.jsonl"), "--key-file", str(key_file)
        )

    v = results["verify"]
    rows = [
        [
            "verify_chain (audit_verify, /audit/verify)",
            f"{common.median(v['verify_per_s']):,.0f} entries/s",
            f"min {min(v['verify_per_s']):,.0f}, max {max(v['verify_per_s']):,.0f}",
        ],
        [
            f"verify_chain, {v['workers']} processes (audit_verify --workers)",
            f"{common.median(v['verify_parallel_per_s']):,.0f} entries/s",
            f"min {min(v['verify_parallel_per_s']):,.0f}, max {max(v['verify_parallel_per_s']):,.0f}",
        ],
        ["  baseline: fetch the same rows only", f"{common.median(v['fetch_only_per_s']):,.0f} rows/s", ""],
        [
            "offline verify_file (SDK)",
            f"{results['offline']['per_s']:,.0f} entries/s",
            f"peak RSS {results['offline']['peak_rss_mb']:.0f} MB",
        ],
    ]
    for fmt, e in results["export"].items():
        rows.append(
            [
                f"export {fmt}: {e['lines']:,} lines, {e['bytes'] / 2**20:,.0f} MB",
                f"{e['seconds']:.1f}s",
                f"peak RSS {e['peak_rss_mb']:.0f} MB (before request {e['rss_before_mb']:.0f} MB)",
            ]
        )
    print(common.table(["audit trail of " + f"{v['entries']:,} entries", "result", "detail"], rows))
    path = common.write_results("audit-verify-export", results)
    common.log(f"results: {path}")


if __name__ == "__main__":
    main()
