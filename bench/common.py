"""Shared helpers for the benchmarks: throw-away PostgreSQL databases, a gunicorn server under test,
process CPU accounting, statistics and result files.

Everything here talks to 127.0.0.1 only and cleans up what it starts: databases are named
``custody_bench*`` and dropped at exit; gunicorn is stopped by its own pid.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parent.parent
PYTHON = str(REPO / ".venv" / "bin" / "python")
GUNICORN = str(REPO / ".venv" / "bin" / "gunicorn")
RESULTS_DIR = REPO / "bench" / "results"
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_PREFIX = "custody_bench"
SECRET_KEY = "custody-bench-secret-key-not-for-production-0123456789abcdefghij"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# One template per process, so concurrent benchmark runs never rebuild each other's template.
TEMPLATE_DB = f"{DB_PREFIX}_template_{os.getpid()}"


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP exit through SystemExit, so ``finally`` blocks and atexit clean-up
    (gunicorn, databases) run when a benchmark is stopped by ``timeout`` or a CI runner."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# --- databases ------------------------------------------------------------------------------------
def db_url(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(PG_ADMIN_URL, autocommit=True)


def drop_database(name: str) -> None:
    assert name.startswith(DB_PREFIX), name
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_created: list[str] = []


def _drop_created() -> None:
    for name in reversed(_created):
        with contextlib.suppress(Exception):
            drop_database(name)
    _created.clear()


atexit.register(_drop_created)


def server_env(database: str, **extra: str) -> dict[str, str]:
    """Production-like settings (DEBUG off) that serve plain HTTP on loopback."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": db_url(database),
            "SECRET_KEY": SECRET_KEY,
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "governance.settings",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    env.update(extra)
    return env


def _manage(database: str, *args: str) -> str:
    proc = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=REPO,
        env=server_env(database),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def ensure_template() -> None:
    """A migrated database used as CREATE DATABASE ... TEMPLATE (fast fresh copies).

    Rebuilt on every run so it follows the current migrations of the working tree."""
    drop_database(TEMPLATE_DB)
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    _created.append(TEMPLATE_DB)
    _manage(TEMPLATE_DB, "migrate", "--noinput", "-v0")


def migrate(database: str) -> None:
    """Apply migrations added since the database was made (a kept graph outlives schema changes)."""
    _manage(database, "migrate", "--noinput", "-v0")


def fresh_database(suffix: str, keep: bool = False) -> str:
    """A new, migrated, empty database ``custody_bench_<suffix>`` (dropped at exit unless keep)."""
    name = f"{DB_PREFIX}_{suffix}"
    if not any(n == TEMPLATE_DB for n in _created):
        ensure_template()
    drop_database(name)
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    if not keep:
        _created.append(name)
    return name


def forget_database(name: str) -> None:
    """Keep a database past exit (e.g. a generated graph reused by a later run)."""
    with contextlib.suppress(ValueError):
        _created.remove(name)


def database_exists(name: str) -> bool:
    with _admin() as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


_ZERO_DEFAULTS = {
    "text": "''",
    "character varying": "''",
    "jsonb": "'{}'::jsonb",
    "boolean": "false",
    "smallint": "0",
    "integer": "0",
    "bigint": "0",
    "timestamp with time zone": "now()",
    "uuid": "gen_random_uuid()",
}


def add_zero_defaults(database: str, prefix: str = "lineage_") -> list[str]:
    """Give NOT NULL columns without a database default a zero default (in a benchmark database).

    Django keeps defaults in Python, so plain-SQL writers (the raw baseline) would break on every
    new NOT NULL column the models gain; with this they keep working as the schema evolves."""
    changed = []
    with psycopg.connect(db_url(database), autocommit=True) as conn:
        rows = conn.execute(
            """
            SELECT table_name, column_name, data_type FROM information_schema.columns
            WHERE table_schema = 'public' AND table_name LIKE %s AND is_nullable = 'NO'
              AND column_default IS NULL AND is_identity = 'NO'
            """,
            (prefix + "%",),
        ).fetchall()
        for table, column, data_type in rows:
            default = _ZERO_DEFAULTS.get(str(data_type))
            if default is not None:
                conn.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" SET DEFAULT {default}')
                changed.append(f"{table}.{column}")
    return changed


def create_token(database: str, username: str = "bench") -> str:
    _manage(database, "create_user", username, "--role", "admin")
    return _manage(database, "create_token", username, "--label", "bench").strip().splitlines()[-1].strip()


def backend_pids(database: str) -> list[int]:
    with _admin() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
        ).fetchall()
    return [int(r[0]) for r in rows]


# --- processes ------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found.extend(int(p) for p in fh.read().split())
    return found


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/<pid>/status, e.g. VmHWM (peak RSS) or VmRSS."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BackendCpu:
    """CPU used by a database's PostgreSQL backends over an interval, sampled in a thread.

    Backends come and go (Django reconnects after CONN_MAX_AGE), so the sampler keeps, per pid, the
    first and last CPU time it saw; a backend born during the interval counts from zero, one that
    exits loses at most one sampling period."""

    def __init__(self, database: str, period: float = 0.25) -> None:
        self.database = database
        self.period = period
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, initial: bool = False) -> None:
        for pid in backend_pids(self.database):
            value = cpu_seconds(pid)
            if value <= 0.0 and pid in self.last:
                continue  # gone between listing and reading
            self.first.setdefault(pid, value if initial else 0.0)
            self.last[pid] = value

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            with contextlib.suppress(Exception):
                self._sample()

    def start(self) -> BackendCpu:
        self._sample(initial=True)
        self._thread.start()
        return self

    def stop(self) -> float:
        """Stop sampling; CPU-seconds used by the database's backends since start()."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


@dataclass
class Server:
    """A gunicorn serving the Custody WSGI app on 127.0.0.1."""

    database: str
    workers: int = 2
    worker_class: str = "gthread"
    threads: int = 4
    app: str = "governance.wsgi:application"
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def describe(self) -> str:
        kind = f"{self.worker_class} threads={self.threads}" if self.worker_class == "gthread" else self.worker_class
        return f"gunicorn {self.workers} workers ({kind})"

    def start(self, timeout: float = 60.0) -> Server:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = RESULTS_DIR / f"gunicorn-{self.port}.log"
        args = [
            GUNICORN,
            self.app,
            "--bind",
            f"{self.host}:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            self.worker_class,
            "--timeout",
            "120",
            "--keep-alive",
            "30",
            "--backlog",
            "256",
            "--no-control-socket",  # gunicorn 27 otherwise shares ~/.gunicorn/gunicorn.ctl with every other server
        ]
        if self.worker_class == "gthread":
            args += ["--threads", str(self.threads)]
        logfile = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            args, cwd=REPO, env=server_env(self.database, **self.extra_env), stdout=logfile, stderr=logfile
        )
        logfile.close()
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early; see {self.log_path}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200 and len(self.worker_pids()) >= self.workers:
                    conn.close()
                    self.warm()
                    return self
                conn.close()
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not come up in {timeout}s; see {self.log_path}")

    def warm(self) -> None:
        """One request per worker slot so imports and database connections are made before timing."""
        for _ in range(self.workers * max(self.threads, 1) * 2):
            conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            conn.request("GET", "/healthz", headers={"Connection": "close"})
            conn.getresponse().read()
            conn.close()

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid) if self.proc is not None else []

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check_nodelay(database: str) -> dict[str, Any]:
    """Start the same gunicorn with a probe wrapper and ask, on an accepted keep-alive connection,
    whether TCP_NODELAY is set (``getsockopt`` on the socket gunicorn hands to the app)."""
    out: dict[str, Any] = {}
    for worker_class in ("sync", "gthread"):
        with Server(database, worker_class=worker_class, app="bench.nodelay_probe:application") as server:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
            values = []
            for _ in range(3):
                conn.request("GET", "/__bench__/nodelay")
                values.append(json.loads(conn.getresponse().read()))
            conn.close()
            out[worker_class] = values[-1]
    return out


# --- statistics -----------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    payload = {"benchmark": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str))
    (RESULTS_DIR / f"{name}-latest.json").write_text(json.dumps(payload, indent=2, default=str))
    return path


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in load],
        "python": sys.version.split()[0],
        "code": code_version(),
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and the server files that differed from it (others work in the tree)."""

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=30)
        return proc.stdout

    dirty = git("status", "--porcelain", "--", "lineage", "governance", "requirements.txt").splitlines()
    head = git("rev-parse", "--short", "HEAD").strip()
    return {"head": head, "uncommitted_server_files": [line[3:] for line in dirty if line.strip()]}


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows
    ]
    return "\n".join([line, sep, *body])


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    log(f"{label}: {time.perf_counter() - start:.1f}s")
