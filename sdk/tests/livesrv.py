"""A real Custody server for the SDK's tests and benchmarks: migrate a SQLite database, create a
user and an API token with ``manage.py``, run gunicorn on a free port. Nothing is mocked.

The project root defaults to the repository this file lives in (``CUSTODY_PROJECT_DIR``
overrides); the interpreter to ``<root>/.venv/bin/python`` (``CUSTODY_SERVER_PYTHON``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(os.environ.get("CUSTODY_PROJECT_DIR", Path(__file__).resolve().parents[2]))
PYTHON = Path(os.environ.get("CUSTODY_SERVER_PYTHON", ROOT / ".venv" / "bin" / "python"))
GUNICORN = PYTHON.parent / "gunicorn"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """One database, one port; :meth:`stop`/:meth:`kill` and :meth:`start` again keep both."""

    def __init__(
        self, workdir: Optional[Path] = None, workers: int = 2, port: Optional[int] = None, database_url: str = ""
    ) -> None:
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="custody-sdk-srv-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = self.dir / "db.sqlite3"
        #: SQLite in ``dir`` by default; a PostgreSQL URL (an existing, empty database) for benchmarks.
        self.database_url = database_url or f"sqlite:///{self.db}"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.token = ""
        self.log = self.dir / "gunicorn.log"

    @property
    def env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
        env.update(
            DEBUG="1",
            CUSTODY_VAR_DIR=str(self.dir),
            DATABASE_URL=self.database_url,
            PYTHONDONTWRITEBYTECODE="1",
        )
        return env

    def manage(self, *args: str) -> str:
        proc = subprocess.run(
            [str(PYTHON), str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stdout.decode()}\n{proc.stderr.decode()}")
        return proc.stdout.decode().strip()

    def setup(self, template: Optional[Path] = None) -> LiveServer:
        """Migrate (or copy an already migrated ``template`` database) and issue a token."""
        if template is not None and template.exists():
            shutil.copyfile(template, self.db)
        else:
            self.manage("migrate", "--no-input", "-v", "0")
        self.manage("create_user", "sdk", "--role", "data_scientist")
        # As an operator would: data scientists may see the local-file data-source namespace that
        # the examples read from (their own namespaces they claim by ingesting into them).
        self.manage("grant", "--group", "data_scientist", "--namespace", "file", "--level", "view")
        self.token = self.manage("create_token", "sdk").splitlines()[-1].strip()
        return self

    def start(self, timeout: float = 60.0) -> LiveServer:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(GUNICORN),
                    "governance.wsgi",
                    "-b",
                    f"127.0.0.1:{self.port}",
                    "-w",
                    str(self.workers),
                    "--timeout",
                    "120",
                    "--graceful-timeout",
                    "2",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: kill() takes the workers too
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if self.healthy():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"server at {self.url} not healthy after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the master and its workers: connections die mid-request."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    # --- read-only checks of what landed ---------------------------------------------------------
    def query(self, sql: str, *params: Any) -> List[Any]:
        if self.database_url.startswith("postgres"):
            import psycopg
            from psycopg.rows import dict_row

            with psycopg.connect(self.database_url, row_factory=dict_row) as pg:
                return list(pg.execute(sql.replace("?", "%s"), params).fetchall())
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(sql, params))
        finally:
            conn.close()

    def raw_events(self, namespace: str) -> List[Dict[str, Any]]:
        rows = self.query("SELECT payload FROM lineage_rawevent WHERE job_namespace = ? ORDER BY id", namespace)
        return [json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"] for r in rows]

    def api(self, path: str) -> Any:
        request = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def close(self) -> None:
        self.stop()


def migrated_template(directory: Path) -> Path:
    """A migrated database to copy for each server (migrating takes seconds)."""
    server = LiveServer(directory)
    server.manage("migrate", "--no-input", "-v", "0")
    return server.db


if __name__ == "__main__":  # python livesrv.py: run one for manual checks
    srv = LiveServer().setup().start()
    print(json.dumps({"url": srv.url, "token": srv.token, "db": str(srv.db)}), flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
        sys.exit(0)
