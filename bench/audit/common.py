"""Helpers of the audit benchmarks: their own throw-away PostgreSQL databases (named
``custody_bench_audit_*``, dropped at exit), Django set up in-process against one of them, and a
fast bulk generator of a correctly chained audit trail (COPY)."""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench import common

PREFIX = "custody_bench_audit"
_mine: list[str] = []


def _drop_mine() -> None:
    for name in reversed(_mine):
        with contextlib.suppress(Exception):
            common.drop_database(name)


atexit.register(_drop_mine)


def fresh_database(suffix: str, keep: bool = False) -> str:
    """A new migrated database (not the shared bench template: other benchmarks may rebuild it);
    dropped at exit unless ``keep``."""
    name = f"{PREFIX}_{suffix}"
    common.drop_database(name)
    with psycopg.connect(common.PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    if not keep:
        _mine.append(name)
    env = common.server_env(name)
    proc = subprocess.run(
        [common.PYTHON, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=common.REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{proc.stdout}\n{proc.stderr}")
    return name


def setup_django(database: str, *, signing_key: str | None = None) -> None:
    """Configure Django in this process for ``database`` (production-like settings)."""
    os.environ.update(common.server_env(database))
    if signing_key:
        os.environ["CUSTODY_AUDIT_SIGNING_KEY"] = signing_key
    import django
    from django.conf import settings

    django.setup()
    settings.ALLOWED_HOSTS = ["*"]


def new_signing_key() -> str:
    """The benchmarks' signing key: fixed (derived from a constant), so a kept database's
    checkpoints still verify when it is reused. Never a production key."""
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = hashlib.sha256(b"custody-bench-audit-signing-key").digest()
    return (
        Ed25519PrivateKey.from_private_bytes(seed)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set of this process image (VmHWM). Not ru_maxrss: on Linux that survives
    execve, so a child started from a big parent would report the parent's peak."""
    return _status_mb("VmHWM")


def current_rss_mb() -> float:
    return _status_mb("VmRSS")


# --- bulk generation of a valid chain -------------------------------------------------------------
COLUMNS = (
    "sequence",
    "timestamp",
    "actor_id",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "before",
    "after",
    "extra",
    "request_id",
    "source_ip",
    "redacted",
    "prev_hash",
    "hash",
)


def _entry(rng: random.Random, sequence: int, when: datetime) -> dict[str, Any]:
    """A realistic mix: ingestion batches (most), token and role changes, logins."""
    from governance.audit.chain import sha256_hex

    kind = rng.random()
    user = rng.randrange(1, 40)
    base: dict[str, Any] = {
        "actor_id": user,
        "actor_name": f"user{user:03d}",
        "request_id": f"{rng.getrandbits(128):032x}",
        "source_ip": f"10.0.{user % 7}.{user}",
        "before": None,
        "after": None,
        "extra": None,
    }
    if kind < 0.7:
        raw_id = sequence * 3
        base.update(
            action="lineage.ingest",
            object_type="lineage.rawevent",
            object_id=str(raw_id),
            object_repr=f"COMPLETE ns{user % 5}:etl.task_{rng.randrange(5000):06d}",
            extra={"count": 1, "events": [[raw_id, sha256_hex(str(raw_id))]]},
        )
    elif kind < 0.85:
        base.update(
            action="token.revoke",
            object_type="accounts.apitoken",
            object_id=str(rng.randrange(10**6)),
            object_repr=f"cust_{rng.getrandbits(32):08x}… (user{user:03d}, ci)",
            before={"revoked_at": None},
            after={"revoked_at": when.isoformat()},
            extra={"user_id": user},
        )
    elif kind < 0.95:
        base.update(
            action="role.grant",
            object_type="auth.user",
            object_id=str(user),
            object_repr=f"user{user:03d}",
            extra={"role": rng.choice(["approver", "auditor", "data_scientist"])},
        )
    else:
        base.update(action="auth.login", object_type="auth.user", object_id=str(user), object_repr=f"user{user:03d}")
    return base


def generate_chain(database: str, count: int, *, seed: int = 1, batch: int = 20_000) -> float:
    """Append ``count`` entries after the current head with COPY; returns seconds taken."""
    from governance.audit import chain

    rng = random.Random(seed)
    started = time.perf_counter()
    with psycopg.connect(common.db_url(database)) as conn:
        head = conn.execute("SELECT sequence, hash FROM audit_auditentry ORDER BY sequence DESC LIMIT 1").fetchone()
        sequence, prev = (head[0], head[1]) if head else (0, chain.GENESIS)
        when = datetime(2025, 1, 1, tzinfo=UTC)
        fd = chain.new_cache()
        remaining = count
        while remaining:
            n = min(batch, remaining)
            rows = []
            for _ in range(n):
                sequence += 1
                when += timedelta(microseconds=rng.randrange(1, 2_000_000))
                e = _entry(rng, sequence, when)
                extra_json = chain.canonical_json(e["extra"])
                body = chain.body_digest(
                    time=chain.format_time(when),
                    actor_id=e["actor_id"],
                    actor_name=e["actor_name"],
                    action=e["action"],
                    object_type=e["object_type"],
                    object_id=e["object_id"],
                    object_repr=e["object_repr"],
                    before=e["before"],
                    after=e["after"],
                    extra_json=extra_json,
                    request_id=e["request_id"],
                    source_ip=e["source_ip"],
                    fd=fd,
                )
                digest = chain.link_hash(prev, body)
                rows.append(
                    (
                        sequence,
                        when,
                        e["actor_id"],
                        e["actor_name"],
                        e["action"],
                        e["object_type"],
                        e["object_id"],
                        e["object_repr"],
                        None if e["before"] is None else chain.canonical_json(e["before"]),
                        None if e["after"] is None else chain.canonical_json(e["after"]),
                        None if e["extra"] is None else extra_json,
                        e["request_id"],
                        e["source_ip"],
                        None,
                        prev,
                        digest,
                    )
                )
                prev = digest
            with conn.cursor() as cur, cur.copy(f"COPY audit_auditentry ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            remaining -= n
        conn.execute("ANALYZE audit_auditentry")
        conn.commit()
    return time.perf_counter() - started
