"""Faults: the server down, killed mid-batch, the training process SIGKILLed, an unwritable or
full spool. In every case training goes on and every event reaches the server once in effect."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any, Dict, List

from conftest import Script, events_by_run, metric_points, wait_for
from livesrv import LiveServer

# A training loop: RUNS runs, each with an input, params and POINTS metric points; prints STATS.
TRAIN = """
import json, sys, time, custody
RUNS, POINTS = {runs}, {points}
custody.init({init})
for r in range(RUNS):
    with custody.run(f"train-{{r}}") as run:
        run.input("s3://bank/raw", f"part-{{r}}")
        run.log_params({{"run": r, "lr": 0.01}})
        for i in range(POINTS):
            run.log_metrics({{"loss": 1.0 / (i + 1)}}, step=i)
            {pause}
print("ENQUEUED", flush=True)
{after}
print("STATS " + json.dumps(custody.status()), flush=True)
"""


def train_code(runs: int = 5, points: int = 200, init: str = "", pause: str = "pass", after: str = "") -> str:
    return TRAIN.format(runs=runs, points=points, init=init, pause=pause, after=after)


def check_complete(server: LiveServer, namespace: str, runs: int, points: int) -> List[Dict[str, Any]]:
    """Every run arrived whole, START first, with every metric point exactly once."""
    events = server.raw_events(namespace)
    by_run = events_by_run(events)
    assert len(by_run) == runs, f"{len(by_run)} runs arrived, {runs} expected"
    digests = server.query(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT digest) AS d FROM lineage_rawevent WHERE job_namespace = ?", namespace
    )[0]
    assert digests["n"] == digests["d"] == len(events)
    for run_id, kinds in by_run.items():
        assert kinds[0] == "START" and kinds[-1] in ("COMPLETE", "ABORT"), kinds
        assert len(metric_points(events, run_id)) == points
    states = server.query(
        "SELECT r.state FROM lineage_run r JOIN lineage_job j ON j.id = r.job_id JOIN lineage_namespace n ON n.id = j.namespace_id "
        "WHERE n.name = ?",
        namespace,
    )
    assert [s["state"] for s in states] == ["COMPLETED"] * runs
    return events


def test_server_down_for_the_whole_run_then_up(fresh_server: LiveServer, tmp_path: Path, namespace: str) -> None:
    script = Script(tmp_path, fresh_server.url, fresh_server.token, namespace)
    started = time.monotonic()
    result = script.run(train_code(), env={"CUSTODY_EXIT_TIMEOUT": "2"})
    took = time.monotonic() - started
    assert took < 30 and script.stats(result)["delivered"] == 0
    assert result.stderr.count("cannot deliver lineage") == 1, result.stderr
    assert "kept in the spool" in result.stderr
    pending = json.loads(script.cli("status", "--json").stdout)["spool"]
    total = pending["pending_events"]
    assert total >= 10 and pending["in_use"] == 0

    fresh_server.start()
    flushed = script.cli("flush")
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert f"sent {total} events" in flushed.stdout
    events = check_complete(fresh_server, namespace, runs=5, points=200)
    assert len(events) == total
    again = script.cli("flush")
    assert again.returncode == 0 and "sent 0 events" in again.stdout
    assert json.loads(script.cli("status", "--json").stdout)["spool"]["segments"] == 0


def test_server_comes_up_during_the_run(fresh_server: LiveServer, tmp_path: Path, namespace: str) -> None:
    script = Script(tmp_path, fresh_server.url, fresh_server.token, namespace)
    proc = script.popen(
        train_code(
            runs=4, points=100, pause="time.sleep(0.01) if i % 10 == 0 else None", after="assert custody.flush(90)"
        )
    )
    time.sleep(1.0)
    fresh_server.start()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    stats = json.loads(out.splitlines()[-1][6:])
    assert stats["failures"] >= 1 and stats["healthy"] and "reachable again" in err
    events = check_complete(fresh_server, namespace, runs=4, points=100)
    assert len(events) == stats["events"]


def test_server_killed_mid_batch(fresh_server: LiveServer, tmp_path: Path, namespace: str) -> None:
    fresh_server.start()
    script = Script(tmp_path, fresh_server.url, fresh_server.token, namespace)
    runs = 150
    proc = script.popen(train_code(runs=runs, points=20, init="max_batch_events=25", after="assert custody.flush(120)"))

    def landed() -> int:
        return int(
            fresh_server.query("SELECT COUNT(*) AS n FROM lineage_rawevent WHERE job_namespace = ?", namespace)[0]["n"]
        )

    wait_for(lambda: landed() > 0, timeout=60, interval=0.02)
    fresh_server.kill()  # SIGKILL master and workers, whatever they were doing
    before = landed()
    time.sleep(1.5)
    fresh_server.start()
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, err
    stats = json.loads(out.splitlines()[-1][6:])
    assert 0 < before < stats["events"], "the kill should land while events were still being sent"
    assert stats["failures"] >= 1
    events = check_complete(fresh_server, namespace, runs=runs, points=20)
    assert len(events) == stats["events"]  # nothing lost, nothing stored twice (re-sent duplicates are absorbed)
    assert stats["delivered"] >= stats["events"]


def test_training_killed_with_sigkill_after_logging_replays_on_next_start(
    fresh_server: LiveServer, tmp_path: Path, namespace: str
) -> None:
    script = Script(tmp_path, fresh_server.url, fresh_server.token, namespace)
    killed = script.run(
        """
        import os, signal, time, custody
        custody.init()
        with custody.run("finished") as run:
            run.log_params({"epochs": 2})
        run = custody.run("killed").start()
        run.input("s3://bank/raw", "transactions")
        run.log_params({"lr": 0.3})
        for i in range(50):
            run.log_metrics({"loss": 1 / (i + 1)}, step=i)
        # wait until the sender has taken everything (it cannot deliver: the server is down)
        deadline = time.time() + 30
        while custody.status()["queued"] or custody.status()["failures"] == 0:
            assert time.time() < deadline
            time.sleep(0.05)
        time.sleep(0.7)  # metric points are coalesced for up to 0.5 s
        print("KILLING", custody.status()["events"], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    segments = list((tmp_path / "spool").rglob("seg-*.jsonl"))
    assert len(segments) == 1

    fresh_server.start()
    replay = script.run(
        """
        import json, custody
        custody.init()
        assert custody.flush(60)
        print("STATS " + json.dumps(custody.status()))
        """
    )
    stats = script.stats(replay)
    assert stats["replayed"] >= 4 and stats["events"] == 0
    assert not segments[0].exists()
    events = fresh_server.raw_events(namespace)
    by_job: Dict[str, List[str]] = {}
    for event in events:
        by_job.setdefault(event["job"]["name"], []).append(event["eventType"])
    assert by_job["finished"] == ["START", "RUNNING", "COMPLETE"] or by_job["finished"][-1] == "COMPLETE"
    assert by_job["killed"][0] == "START" and by_job["killed"][-1] == "ABORT"
    killed_run = next(e["run"]["runId"] for e in events if e["job"]["name"] == "killed")
    assert len(metric_points(events, killed_run)) == 50
    row = fresh_server.query("SELECT state, facets FROM lineage_run WHERE run_id = ?", killed_run)[0]
    facets = json.loads(row["facets"])
    assert row["state"] == "ABORTED" and "ended without finishing" in facets["errorMessage"]["message"]
    assert facets["custody_params"]["params"] == {"lr": 0.3}
    # a second replay finds nothing, and a re-sent ABORT would be the same event (deterministic)
    again = script.run(
        "import custody, json; custody.init(); custody.flush(30); print('STATS ' + json.dumps(custody.status()))"
    )
    assert script.stats(again)["replayed"] == 0


def test_unwritable_spool_warns_once_and_training_goes_on(server: LiveServer, tmp_path: Path, namespace: str) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    script = Script(tmp_path, server.url, server.token, namespace)
    result = script.run(
        train_code(runs=2, points=50, after="assert custody.flush(30)"),
        env={"CUSTODY_SPOOL_DIR": str(blocker / "spool")},
    )
    assert result.stderr.count("cannot write the spool") == 1, result.stderr
    assert "CUSTODY_SPOOL_DIR" in result.stderr
    check_complete(server, namespace, runs=2, points=50)

    # and with the server unreachable too: training still finishes; the loss is reported
    down = Script(tmp_path, "http://127.0.0.1:9", server.token, namespace + "-down")
    started = time.monotonic()
    result = down.run(
        train_code(runs=1, points=10), env={"CUSTODY_SPOOL_DIR": str(blocker / "spool"), "CUSTODY_EXIT_TIMEOUT": "1"}
    )
    assert time.monotonic() - started < 20
    assert "could not be delivered" in result.stderr and "are lost" in result.stderr


def test_full_disk_while_spooling_falls_back_to_memory(server: LiveServer, tmp_path: Path, namespace: str) -> None:
    script = Script(tmp_path, server.url, server.token, namespace)
    limit = """
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (30000, 30000))
"""
    result = script.run(limit + train_code(runs=3, points=300, after="assert custody.flush(30)"))
    assert result.stderr.count("cannot write the spool") == 1, result.stderr
    assert "File too large" in result.stderr or "No space" in result.stderr
    check_complete(server, namespace, runs=3, points=300)
