"""Celery for real: the static beat schedule in django-celery-beat's tables; an in-process worker on
the embedded filesystem broker running the audit task enqueued on commit; and a subprocess worker
killed with SIGKILL mid-task, on the filesystem broker, on Redis (required under CI=true) and on
RabbitMQ (when reachable): the task is redelivered (or re-sent by ``requeue_stalled`` on the
filesystem broker, which cannot redeliver) and its effect happens exactly once."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from governance.compliance.models import Finding
from tests.test_compliance_graph import ago, model_version, run

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, port: int) -> None:
    """Skip without the service, except under CI=true where a missing service is a failure."""
    if reachable(port):
        return
    if CI:
        pytest.fail(f"{name} is not reachable at 127.0.0.1:{port} and CI=true requires it")
    pytest.skip(f"{name} not reachable at 127.0.0.1:{port}")


def require_redis_client() -> None:
    try:
        import redis
    except ImportError:
        # The redis client is not pinned in requirements yet: install it (like the plugin test does).
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "redis>=6.4,<9"], check=CI)
        try:
            import redis  # noqa: F401
        except ImportError:
            if CI:
                pytest.fail("the redis client package is missing")
            pytest.skip("the redis client package is missing")


# --- beat schedule -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_static_schedule_is_loaded_into_the_database_scheduler(settings: Any) -> None:
    from django_celery_beat.models import PeriodicTask

    from governance.compliance.beat import sync_schedule

    PeriodicTask.objects.all().delete()
    sync_schedule()
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert {"audit-checkpoint", "compliance-run-audits", "compliance-retention"} <= names
    audits = PeriodicTask.objects.get(name="compliance-run-audits")
    assert audits.task == "governance.compliance.tasks.run_audits" and audits.interval.every == 3600
    # An officer pauses it and reschedules another in the admin: a later sync keeps both edits.
    audits.enabled = False
    audits.save()
    retention = PeriodicTask.objects.get(name="compliance-retention")
    from django_celery_beat.models import IntervalSchedule

    retention.interval = IntervalSchedule.objects.create(every=7, period=IntervalSchedule.DAYS)
    retention.save()
    sync_schedule()
    assert not PeriodicTask.objects.get(name="compliance-run-audits").enabled
    assert PeriodicTask.objects.get(name="compliance-retention").interval.period == "days"
    # An entry dropped from the settings is disabled, not deleted.
    settings.CELERY_BEAT_SCHEDULE = {
        k: v for k, v in settings.CELERY_BEAT_SCHEDULE.items() if k != "compliance-retention"
    }
    assert sync_schedule()["disabled"] == 1
    assert not PeriodicTask.objects.get(name="compliance-retention").enabled


def test_task_options() -> None:
    from governance.celery import app
    from governance.compliance import tasks

    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost and app.conf.worker_prefetch_multiplier == 1
    for task in (tasks.run_audits, tasks.retention, tasks.deliver, tasks.selftest):
        assert task.acks_late and task.reject_on_worker_lost and task.max_retries == 5 and task.retry_backoff


# --- in-process worker on the embedded broker --------------------------------------------------


def _reset_pools(app: Any) -> None:
    """Forget connections and producers made with the previous broker settings."""
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def filesystem_app(tmp_path: Path) -> Iterator[Any]:
    from governance.celery import app

    folders = {name: tmp_path / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir()
    saved = (app.conf.broker_url, dict(app.conf.broker_transport_options or {}), app.conf.task_always_eager)
    app.conf.broker_url = "filesystem://"
    app.conf.broker_transport_options = {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "polling_interval": 0.05,
    }
    app.conf.task_always_eager = False
    _reset_pools(app)
    try:
        yield app
    finally:
        app.conf.broker_url, app.conf.broker_transport_options, app.conf.task_always_eager = saved
        _reset_pools(app)


@pytest.mark.django_db(transaction=True)
def test_worker_on_the_filesystem_broker_runs_audits_enqueued_on_commit(filesystem_app: Any) -> None:
    from celery.contrib.testing.worker import start_worker

    from governance.compliance.tasks import run_audits

    model_version("d", run("train", ago(1), dirty=True))
    with start_worker(filesystem_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        # Rolled back: nothing is sent.
        with pytest.raises(RuntimeError), transaction.atomic():
            run_audits.delay_on_commit(rule="model.dirty_commit")
            raise RuntimeError("roll back")
        time.sleep(1)
        assert not Finding.objects.exists()
        with transaction.atomic():
            run_audits.delay_on_commit(rule="model.dirty_commit")
        deadline = time.time() + 20
        while time.time() < deadline and not Finding.objects.exists():
            time.sleep(0.1)
    assert Finding.objects.get().rule_id == "model.dirty_commit"


# --- SIGKILL mid-task: redelivered, no duplicate effect ----------------------------------------


@pytest.fixture(scope="module")
def worker_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file the subprocess workers and this test share (the test DB is in memory)."""
    var = tmp_path_factory.mktemp("celery-var")
    env = _env(var, "filesystem://")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=180)
    return var


def _env(var: Path, broker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    env.update(
        SECRET_KEY="celery-test-secret",
        DEBUG="1",
        CUSTODY_VAR_DIR=str(var),
        DATABASE_URL=f"sqlite:///{var / 'db.sqlite3'}",
        CELERY_BROKER_URL=broker,
        DJANGO_SETTINGS_MODULE="governance.settings",
        PYTHONPATH=f"{var}{os.pathsep}{ROOT}",
    )
    return env


WORKER_APP = """
from governance.celery import app
import os
url = os.environ["CELERY_BROKER_URL"]
if url.startswith("redis"):
    # Redeliver an unacknowledged message 2 s after its worker vanished (default: 1 hour).
    app.conf.broker_transport_options = {"visibility_timeout": 2}
"""


def _start_worker(var: Path, broker: str, name: str, queue: str) -> subprocess.Popen[bytes]:
    (var / "worker_app.py").write_text(WORKER_APP)
    log = open(var / f"{name}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker_app",
            "worker",
            "-P",
            "solo",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "info",
            "-Q",
            queue,
        ],
        cwd=ROOT,
        env=_env(var, broker),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _effects(var: Path, key: str) -> tuple[int, bool]:
    with sqlite3.connect(var / "db.sqlite3", timeout=30) as conn:
        effects = conn.execute("SELECT count(*) FROM compliance_taskeffect WHERE key=?", [key]).fetchone()[0]
        done = conn.execute("SELECT done_at IS NOT NULL FROM compliance_taskrun WHERE key=?", [key]).fetchone()
    return effects, bool(done and done[0])


def _wait(predicate: Any, seconds: float, what: str, var: Path) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in var.glob("*.log"))
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


BROKERS = [
    pytest.param("filesystem://", id="filesystem"),
    pytest.param("redis://127.0.0.1:6379/11", id="redis", marks=pytest.mark.redis),
    pytest.param("amqp://guest:guest@127.0.0.1:5672//", id="rabbitmq"),
]


@pytest.mark.slow
@pytest.mark.parametrize("broker", BROKERS)
def test_task_killed_mid_run_is_redelivered_without_duplicate_effect(
    broker: str, worker_db: Path, tmp_path: Path
) -> None:
    from celery import Celery

    if broker.startswith("redis"):
        require_service("Redis", 6379)
        require_redis_client()
    elif broker.startswith("amqp") and not reachable(5672):
        pytest.skip("RabbitMQ not reachable at 127.0.0.1:5672")
    var = worker_db
    for folder in ("queue", "processed", "control"):
        (var / "broker" / folder).mkdir(parents=True, exist_ok=True)
    key = f"kill-{uuid.uuid4().hex}"
    queue = f"q-{key}"  # a queue of its own: nothing left over from an earlier run is consumed here
    if broker.startswith("redis"):
        import redis

        redis.Redis.from_url(broker).flushdb()  # db 11 is this test's: drop unacked leftovers
    sleep_file = tmp_path / "sleep-once"
    sleep_file.write_text("1")
    # The producer: the same broker settings as the worker (the filesystem folders under var/broker).
    client = Celery("producer", broker=broker)
    if broker.startswith("filesystem"):
        client.conf.broker_transport_options = {
            "data_folder_in": str(var / "broker" / "queue"),
            "data_folder_out": str(var / "broker" / "queue"),
            "processed_folder": str(var / "broker" / "processed"),
            "control_folder": str(var / "broker" / "control"),
        }
    client.send_task(
        "governance.compliance.tasks.selftest",
        kwargs={"key": key, "sleep": 60, "sleep_file": str(sleep_file)},
        queue=queue,
    )
    first = _start_worker(var, broker, f"w1-{uuid.uuid4().hex[:6]}", queue)
    second = None
    try:
        marker = Path(str(sleep_file) + ".sleeping")
        _wait(marker.exists, 60, "the task to start", var)
        time.sleep(0.3)  # mid-run: the effect row is written, not committed
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert _effects(var, key) == (0, False)  # the kill left nothing behind
        if broker.startswith("filesystem"):
            # The filesystem transport deleted the message on read: the ledger's sweep re-sends it.
            code = (
                "import django; django.setup();"
                "from datetime import timedelta;"
                "from governance.celery import app;"
                f"app.conf.task_default_queue = '{queue}';"
                "from governance.compliance.idempotency import requeue_stalled;"
                "print(requeue_stalled(timedelta(0)))"
            )
            out = subprocess.run(
                [sys.executable, "-c", code],
                cwd=ROOT,
                env=_env(var, broker),
                check=True,
                capture_output=True,
                timeout=60,
            )
            assert out.stdout.strip().endswith(b"1")
        second = _start_worker(var, broker, f"w2-{uuid.uuid4().hex[:6]}", queue)
        # Redis restores unacked messages from a periodic sweep: here that took 100+ s under load.
        _wait(lambda: _effects(var, key)[1], 300, "the redelivered task to finish", var)
        # A duplicate delivery after success is a no-op.
        client.send_task("governance.compliance.tasks.selftest", kwargs={"key": key}, queue=queue)
        time.sleep(2)
        assert _effects(var, key) == (1, True)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
