"""Fixtures: a live Custody server (real Django + gunicorn + SQLite, started here), and helpers to
run training scripts that use the SDK in their own processes (the SDK keeps process-wide state:
a sender thread, a spool segment, an atexit flush; real programs are processes too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
SDK = HERE.parent
sys.path.insert(0, str(HERE))

from livesrv import LiveServer, migrated_template  # noqa: E402


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def server(template_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server shared by the tests that do not stop it."""
    srv = LiveServer(tmp_path_factory.mktemp("server")).setup(template_db).start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(template_db: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """A server of the test's own, set up but *not started*: fault tests start, kill and restart it."""
    srv = LiveServer(tmp_path / "srv").setup(template_db)
    yield srv
    srv.stop()


@pytest.fixture
def namespace() -> str:
    return f"sdk-{uuid.uuid4().hex[:10]}"


class Script:
    """Runs Python code that uses the SDK, in a subprocess configured through CUSTODY_* variables."""

    def __init__(self, tmp: Path, url: str, token: str, namespace: str) -> None:
        self.tmp = tmp
        self.env: Dict[str, str] = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CUSTODY_", "OPENLINEAGE_", "GITHUB_", "GITLAB_", "JENKINS_"))
        }
        self.env.update(
            CUSTODY_URL=url,
            CUSTODY_TOKEN=token,
            CUSTODY_NAMESPACE=namespace,
            CUSTODY_SPOOL_DIR=str(tmp / "spool"),
            CUSTODY_EXIT_TIMEOUT="20",
            PYTHONPATH=str(SDK),
            PYTHONUNBUFFERED="1",
        )
        self.python = sys.executable

    def write(self, code: str, name: str = "train.py") -> Path:
        path = self.tmp / name
        path.write_text(textwrap.dedent(code))
        return path

    def popen(self, code: str, env: Optional[Dict[str, str]] = None, name: str = "train.py") -> subprocess.Popen[str]:
        path = self.write(code, name)
        return subprocess.Popen(
            [self.python, str(path)],
            env={**self.env, **(env or {})},
            cwd=self.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(
        self,
        code: str,
        env: Optional[Dict[str, str]] = None,
        timeout: float = 120,
        check: bool = True,
        name: str = "train.py",
    ) -> subprocess.CompletedProcess[str]:
        proc = self.popen(code, env, name)
        out, err = proc.communicate(timeout=timeout)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise AssertionError(f"script failed ({proc.returncode}):\nstdout:\n{out}\nstderr:\n{err}")
        return result

    def cli(
        self, *args: str, env: Optional[Dict[str, str]] = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, "-m", "custody.cli", *args],
            env={**self.env, **(env or {})},
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stats(self, result: subprocess.CompletedProcess[str]) -> Dict[str, Any]:
        """The last line of stdout starting with STATS (printed by the scripts) as JSON."""
        for line in reversed(result.stdout.splitlines()):
            if line.startswith("STATS "):
                return dict(json.loads(line[6:]))
        raise AssertionError(f"no STATS line in:\n{result.stdout}\n{result.stderr}")


@pytest.fixture
def script(server: LiveServer, tmp_path: Path, namespace: str) -> Script:
    return Script(tmp_path, server.url, server.token, namespace)


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def events_by_run(events: List[Dict[str, Any]]) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for event in events:
        out.setdefault(event["run"]["runId"], []).append(event["eventType"])
    return out


def metric_points(events: List[Dict[str, Any]], run_id: str) -> List[Dict[str, Any]]:
    """Every metric point of a run, checked to be contiguous and without repeats."""
    chunks = []
    for event in events:
        if event["run"]["runId"] != run_id:
            continue
        facet = event["run"].get("facets", {}).get("custody_metric_points")
        if facet:
            chunks.append((facet["offset"], facet["points"]))
    chunks.sort(key=lambda c: c[0])
    points: List[Dict[str, Any]] = []
    for offset, pts in chunks:
        assert offset == len(points), f"metric points not contiguous at {offset} (have {len(points)})"
        points.extend(pts)
    return points
