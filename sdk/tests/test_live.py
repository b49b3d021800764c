"""The SDK against a live Custody server: what the server holds after real programs ran."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any, Dict

import pytest
from conftest import SDK, Script, events_by_run, metric_points
from livesrv import LiveServer

EXAMPLE = SDK / "examples" / "train_sklearn.py"


def run_row(server: LiveServer, namespace: str, job: str) -> Dict[str, Any]:
    rows = server.query(
        "SELECT r.* FROM lineage_run r JOIN lineage_job j ON j.id = r.job_id JOIN lineage_namespace n ON n.id = j.namespace_id "
        "WHERE n.name = ? AND j.name = ? ORDER BY r.id",
        namespace,
        job,
    )
    assert len(rows) == 1, f"{len(rows)} runs of {namespace}:{job}"
    row = dict(rows[0])
    row["facets"] = json.loads(row["facets"]) if isinstance(row["facets"], str) else row["facets"]
    return row


def test_sklearn_example_end_to_end(server: LiveServer, script: Script, namespace: str, tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    out = tmp_path / "artifacts"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(out), "--n-estimators", "15", "--promote"],
        env=script.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "promotion requested" in proc.stdout or "does not provide promotion requests" in proc.stdout

    run = run_row(server, namespace, "train-fraud-model")
    assert run["state"] == "COMPLETED"
    facets = run["facets"]
    # code commit: the example lives in this repository
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=SDK, capture_output=True, text=True).stdout.strip()
    commit = server.query("SELECT * FROM lineage_codecommit WHERE id = ?", run["code_commit_id"])[0]
    assert commit["sha"] == head and commit["is_dirty"] in (0, 1)
    assert facets["custody_git"]["commit"] == head and facets["custody_git"]["path"] == "sdk/examples/train_sklearn.py"
    # environment
    env = facets["custody_environment"]
    assert env["environmentDigest"].startswith("sha256:") and "scikit-learn" in env["packages"]
    assert facets["custody_params"]["params"]["n_estimators"] == 15
    assert 0.5 < facets["custody_metrics"]["metrics"]["test_auc"] <= 1.0

    # the input dataset version, with schema, read by the run
    data_path = str(out / "transactions.csv")
    inputs = server.query(
        "SELECT d.name, d.fields, v.version, v.fields AS vfields FROM lineage_runinput i JOIN lineage_dataset d ON d.id = i.dataset_id "
        "LEFT JOIN lineage_datasetversion v ON v.id = i.version_id WHERE i.run_id = ?",
        run["id"],
    )
    assert [r["name"] for r in inputs] == [data_path]
    assert [f["name"] for f in json.loads(inputs[0]["fields"])] == [
        "amount",
        "hour",
        "merchant_risk",
        "card_age_days",
        "is_fraud",
    ]
    assert inputs[0]["version"].startswith("sha256:")

    # the model version: artifact digest and framework, produced by the run
    artifact = out / "model.pkl"
    digest = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
    outputs = {
        r["name"]: r
        for r in server.query(
            "SELECT d.name, v.version, v.facets FROM lineage_runoutput o JOIN lineage_dataset d ON d.id = o.dataset_id "
            "JOIN lineage_datasetversion v ON v.id = o.version_id WHERE o.run_id = ?",
            run["id"],
        )
    }
    assert set(outputs) == {"models/fraud-detector", str(out / "scored_test_set.csv")}
    model = json.loads(outputs["models/fraud-detector"]["facets"])["custody_model"]
    assert model["artifactDigest"] == digest and outputs["models/fraud-detector"]["version"] == digest[7:19]
    assert model["framework"] == "scikit-learn" and model["modelClass"].endswith("RandomForestClassifier")
    assert model["hyperparameters"]["max_depth"] == 6 and model["environmentDigest"] == env["environmentDigest"]
    assert model["metrics"]["test_auc"] == facets["custody_metrics"]["metrics"]["test_auc"]
    assert f"version {digest[7:19]} ({digest})" in proc.stdout

    # the cross-validation folds are child runs with their metrics
    children = server.query(
        "SELECT r.state, r.facets FROM lineage_run r WHERE r.parent_id = ? ORDER BY r.id", run["id"]
    )
    assert [c["state"] for c in children] == ["COMPLETED"] * 3
    events = server.raw_events(namespace)
    points = metric_points(events, run["run_id"])
    assert [p["step"] for p in points if p["key"] == "cv_auc"] == [0, 1, 2]

    # lineage through the read API, when this server has it
    try:
        graph = server.api(f"/api/v1/lineage?nodeId=job:{namespace}:train-fraud-model&depth=2")
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    else:
        ids = {node["id"] for node in graph["graph"]}
        assert f"dataset:file:{data_path}" in ids
        assert f"dataset:{namespace}:models/fraud-detector" in ids


def test_input_dataset_version_carries_its_schema(server: LiveServer, script: Script, namespace: str) -> None:
    script.run("""
        import custody, pandas as pd
        with custody.run("read") as run:
            run.input("s3://bank", "raw/tx.parquet", data=pd.DataFrame({"a": [1], "b": ["x"]}))
        assert custody.flush(30)
    """)
    rows = server.query(
        "SELECT v.fields FROM lineage_datasetversion v JOIN lineage_dataset d ON d.id = v.dataset_id "
        "JOIN lineage_namespace n ON n.id = d.namespace_id WHERE n.name = 's3://bank' AND d.name = 'raw/tx.parquet'"
    )
    assert rows and [f["name"] for f in json.loads(rows[0]["fields"])] == ["a", "b"]


def test_failures_nested_runs_decorator_and_metrics(server: LiveServer, script: Script, namespace: str) -> None:
    result = script.run(
        """
        import json, custody

        @custody.track
        def evaluate(step):
            custody.log_metrics({"acc": 0.5 + step / 100}, step=step)

        with custody.run("pipeline") as root:
            root.log_params({"lr": 0.1, "layers": [64, 32]})
            for step in range(3):
                evaluate(step)
            for i in range(2000):
                root.log_metrics({"loss": 1 / (i + 1), "lr": 0.1}, step=i)
            try:
                with custody.run("doomed"):
                    raise ValueError("bad batch 17")
            except ValueError:
                pass
        assert custody.flush(60)
        print("STATS " + json.dumps(custody.status()))
        raise SystemExit(3)
        """,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    events = server.raw_events(namespace)
    runs = events_by_run(events)
    pipeline = run_row(server, namespace, "pipeline")
    assert runs[pipeline["run_id"]][0] == "START" and runs[pipeline["run_id"]][-1] == "COMPLETE"
    doomed = run_row(server, namespace, "doomed")
    assert doomed["state"] == "FAILED" and doomed["parent_id"] == pipeline["id"]
    error = doomed["facets"]["errorMessage"]
    assert error["message"] == "ValueError: bad batch 17" and 'raise ValueError("bad batch 17")' in error["stackTrace"]
    evaluate = server.query(
        "SELECT r.state, r.parent_id FROM lineage_run r JOIN lineage_job j ON j.id = r.job_id WHERE j.name = 'evaluate'"
        " AND r.parent_id = ?",
        pipeline["id"],
    )
    assert [tuple(r) for r in evaluate] == [("COMPLETED", pipeline["id"])] * 3
    points = metric_points(events, pipeline["run_id"])
    assert len(points) == 4000 and points[-2] == {**points[-2], "key": "loss", "step": 1999}
    assert pipeline["facets"]["custody_metrics"]["metrics"] == {"loss": 1 / 2000, "lr": 0.1}
    stats = script.stats(result)
    assert stats["delivered"] == len(events) and stats["duplicates"] == 0 and stats["rejected"] == 0


def test_a_raising_plugin_is_logged_once_and_skipped(server: LiveServer, script: Script, namespace: str) -> None:
    result = script.run(
        """
        import custody
        from custody.plugins import hookimpl

        class Broken:
            @hookimpl
            def custody_run_facets(self, run, event_type):
                raise RuntimeError("plugin bug")

            @hookimpl
            def custody_dataset_facets(self, data):
                raise KeyError("also broken")

        class Fine:
            @hookimpl
            def custody_run_facets(self, run, event_type):
                return {"fine": {"_producer": "https://example.com", "_schemaURL": "https://example.com/f.json", "ok": True}}

        client = custody.init()
        client.plugins().register(Broken(), name="broken")
        client.plugins().register(Fine(), name="fine")
        for i in range(3):
            with custody.run(f"job{i}") as run:
                run.input("s3://b", "k", data=[1, 2, 3])
        assert custody.flush(30)
        print("trained fine")
        """
    )
    assert "trained fine" in result.stdout
    assert result.stderr.count("plugin 'broken' raised RuntimeError: plugin bug in custody_run_facets") == 1
    assert result.stderr.count("plugin 'broken' raised KeyError") == 1
    for i in range(3):
        row = run_row(server, namespace, f"job{i}")
        assert row["state"] == "COMPLETED"
        assert row["facets"]["fine"]["ok"] is True and "custody_environment" in row["facets"]


def test_a_rejected_event_is_reported_once_and_not_retried(server: LiveServer, script: Script, namespace: str) -> None:
    result = script.run(
        """
        import json, custody
        custody.init()
        bad = {"eventType": "START", "eventTime": "2024-01-01T00:00:00Z", "producer": "x",
               "run": {"runId": "r1"}, "job": {"namespace": "has space", "name": "j"}}
        custody.emit(bad)
        custody.emit(dict(bad, eventType="COMPLETE"))
        with custody.run("good"):
            pass
        ok = custody.flush(30)
        print("STATS " + json.dumps(custody.status()))
        print("flush", ok)
        """
    )
    stats = script.stats(result)
    assert stats["rejected"] == 2 and stats["delivered"] == 2 and stats["failures"] == 0
    assert "flush False" in result.stdout  # flush says not everything went through
    assert result.stderr.count("the server rejected") == 1, result.stderr
    assert "job.namespace" in result.stderr
    rejected = list((script.tmp / "spool").rglob("rejected.jsonl"))
    assert len(rejected) == 1 and len(rejected[0].read_text().splitlines()) == 2
    assert run_row(server, namespace, "good")["state"] == "COMPLETED"


def test_a_refused_token_stops_sending_keeps_the_spool_and_flush_delivers_later(
    server: LiveServer, script: Script, namespace: str
) -> None:
    result = script.run(
        """
        import custody
        with custody.run("train") as run:
            run.log_metrics({"auc": 0.9})
        print("done", custody.flush(5))
        """,
        env={"CUSTODY_TOKEN": "cust_wrong", "CUSTODY_EXIT_TIMEOUT": "2"},
    )
    assert "done False" in result.stdout
    assert result.stderr.count("the server answered 401") == 1 and "CUSTODY_TOKEN" in result.stderr, result.stderr
    assert server.raw_events(namespace) == []
    status = script.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["spool"]["pending_events"] == 2
    flushed = script.cli("flush")
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert "sent 2 events" in flushed.stdout
    assert events_by_run(server.raw_events(namespace)) and run_row(server, namespace, "train")["state"] == "COMPLETED"
    assert json.loads(script.cli("status", "--json").stdout)["spool"]["pending_events"] == 0


def test_cli_status_and_gate(server: LiveServer, script: Script) -> None:
    status = script.cli("status")
    assert status.returncode == 0 and "reachable" in status.stdout and "token      accepted" in status.stdout
    down = script.cli("status", "--url", "http://127.0.0.1:9")
    assert down.returncode == 1 and "UNREACHABLE" in down.stdout
    gate = script.cli("gate", "--model", "fraud-detector", "--version", "1", "--env", "production")
    if gate.returncode == 2:  # this server has no governance API yet
        assert "does not provide promotion requests" in gate.stderr
    else:
        assert gate.returncode == 1 and "BLOCKED" in gate.stdout
    assert script.cli("gate", "--model", "m").returncode == 2  # usage error


def test_cli_verify_is_wired_to_the_offline_verifier(script: Script, tmp_path: Path) -> None:
    missing = script.cli("verify", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "custody verify" in missing.stderr
    empty = tmp_path / "export.jsonl"
    empty.write_text("")
    result = script.cli("verify", str(empty))
    assert result.returncode in (0, 1), result.stdout + result.stderr


def test_forked_child_gets_its_own_sender(server: LiveServer, script: Script, namespace: str) -> None:
    result = script.run(
        """
        import os, custody
        with custody.run("parent-proc") as run:
            run.log_metrics({"a": 1})
            pid = os.fork()
            if pid == 0:  # the child records its own run through its own sender and segment
                with custody.run("child-proc") as child:
                    child.log_metrics({"b": 2})
                    run.log_params({"from_child": True})  # and may log to the parent's run
                ok = custody.flush(30)
                os._exit(0 if ok else 1)
            _, status = os.waitpid(pid, 0)
            assert status == 0, status
            run.log_metrics({"a": 2})
        assert custody.flush(30)
        print("done")
        """
    )
    assert "done" in result.stdout
    parent = run_row(server, namespace, "parent-proc")
    child = run_row(server, namespace, "child-proc")
    assert parent["state"] == child["state"] == "COMPLETED"
    assert child["parent_id"] == parent["id"]  # the run active at fork time is the child's parent
    assert parent["facets"]["custody_metrics"]["metrics"] == {"a": 2}
    assert parent["facets"]["custody_params"]["params"] == {"from_child": True}
    # The child left with os._exit (as multiprocessing workers do): its fully delivered segment
    # stays until the next process replays it, which sends nothing (no ABORT for the parent's run).
    left = list((script.tmp / "spool").rglob("seg-*.jsonl"))
    assert len(left) <= 1
    flushed = script.cli("flush")
    assert flushed.returncode == 0 and "sent 0 events" in flushed.stdout, flushed.stdout
    assert not list((script.tmp / "spool").rglob("seg-*.jsonl"))
    assert "ABORT" not in {e["eventType"] for e in server.raw_events(namespace)}
