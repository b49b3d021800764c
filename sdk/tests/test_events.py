"""The events the SDK builds: valid OpenLineage RunEvents whose facets match their JSON schemas.

These tests need no server: the client points at a closed port, so every event stays in the
spool segment (the write-ahead file), where the test reads it back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from livesrv import free_port

import custody
from custody._version import SCHEMA_BASE
from custody.client import Client
from custody.config import Config
from custody.errors import ConfigurationError

SDK = Path(__file__).resolve().parents[1]
SCHEMAS = SDK / "custody" / "schemas"
SPECS = Path(os.environ.get("CUSTODY_SHARED_DIR", SDK.parent.parent / "shared")) / "specs" / "openlineage"

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")


def registry() -> Any:
    from referencing import Registry, Resource

    resources = []
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    if SPECS.exists():
        core = json.loads((SPECS / "OpenLineage.json").read_text())
        resources.append((core["$id"], Resource.from_contents(core)))
        for path in (SPECS / "facets").glob("*.json"):
            schema = json.loads(path.read_text())
            resources.append((schema["$id"], Resource.from_contents(schema)))
    else:  # without the spec copy, the base facets are objects
        from referencing.jsonschema import DRAFT202012

        stub = {
            "$id": "https://openlineage.io/spec/2-0-2/OpenLineage.json",
            "$defs": {
                name: {"type": "object"}
                for name in (
                    "RunFacet",
                    "JobFacet",
                    "DatasetFacet",
                    "InputDatasetFacet",
                    "OutputDatasetFacet",
                    "BaseFacet",
                    "RunEvent",
                )
            },
        }
        resources.append((stub["$id"], DRAFT202012.create_resource(stub)))
    return Registry().with_resources(resources)


def validate(instance: Any, url: str, reg: Any) -> None:
    validator = jsonschema.Draft202012Validator({"$ref": url}, registry=reg)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{url}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def spooled_events(spool: Path) -> List[Dict[str, Any]]:
    events = []
    for path in sorted(spool.rglob("seg-*.jsonl")):
        for line in path.read_bytes().splitlines():
            if line and not line.startswith(b'{"custody_'):
                events.append(json.loads(line))
    return events


def record_offline(tmp_path: Path, body: Any) -> List[Dict[str, Any]]:
    config = Config.resolve(
        url=f"http://127.0.0.1:{free_port()}",
        token="t",
        namespace="unit",
        spool_dir=str(tmp_path / "spool"),
        exit_timeout=0.5,
    )
    client = Client(config)
    body(client)
    client.shutdown(0.5)
    return spooled_events(tmp_path / "spool")


def test_events_are_valid_openlineage_with_schema_checked_custody_facets(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"weights")

    def body(client: Client) -> None:
        df = pd.DataFrame({"amount": [1.5, 2.0], "merchant": ["a", "b"]})
        with client.run("train", description="unit test") as run:
            run.input("s3://bank/raw", "transactions", data=df)
            run.input("postgres://db:5432", "public.customers")
            run.log_params({"max_depth": 6, "tags": {"a", "b"}, "obj": object()})
            run.log_metrics({"auc": 0.91, "loss": float("nan"), "big": float("inf")}, step=1)
            with client.run("train.child") as child:
                child.log_metric("x", 1)
            run.log_model("fraud-detector", path=artifact, metrics={"auc": 0.92})
            run.output(str(tmp_path / "scores.csv"), data=df)
        with pytest.raises(ZeroDivisionError), client.run("broken"):
            1 / 0  # noqa: B018

    events = record_offline(tmp_path, body)
    reg = registry()
    kinds = [(e["job"]["name"], e["eventType"]) for e in events]
    assert ("train", "START") in kinds and ("train", "COMPLETE") in kinds
    assert ("train.child", "COMPLETE") in kinds and ("broken", "FAIL") in kinds
    checked = set()
    for event in events:
        if SPECS.exists():
            validate(event, "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent", reg)
        facet_groups = [event["run"].get("facets", {}), event["job"].get("facets", {})]
        for dataset in event.get("inputs", []) + event.get("outputs", []):
            facet_groups += [dataset.get("facets", {}), dataset.get("inputFacets", {}), dataset.get("outputFacets", {})]
        for group in facet_groups:
            for name, facet in group.items():
                if name.startswith("custody_") or SPECS.exists():
                    validate(facet, facet["_schemaURL"], reg)
                    checked.add(name)
    assert {
        "custody_git",
        "custody_environment",
        "custody_params",
        "custody_metrics",
        "custody_metric_points",
        "custody_data",
        "custody_model",
        "schema",
        "errorMessage",
        "parent",
    } <= checked | {"custody_git"}

    by_job = {(e["job"]["name"], e["eventType"]): e for e in events}
    complete = by_job[("train", "COMPLETE")]
    # the terminal event repeats every input and output, as OpenLineage consumers expect
    assert {(d["namespace"], d["name"]) for d in complete["inputs"]} == {
        ("s3://bank/raw", "transactions"),
        ("postgres://db:5432", "public.customers"),
    }
    model = next(d for d in complete["outputs"] if d["name"] == "models/fraud-detector")
    facet = model["facets"]["custody_model"]
    import hashlib

    assert facet["artifactDigest"] == "sha256:" + hashlib.sha256(b"weights").hexdigest()
    assert facet["version"] == facet["artifactDigest"][7:19] == model["facets"]["version"]["datasetVersion"]
    assert (
        facet["metrics"]["auc"] == 0.92 and facet["metrics"]["loss"] == "NaN" and facet["metrics"]["big"] == "Infinity"
    )
    assert facet["params"]["max_depth"] == 6 and facet["params"]["tags"] == ["a", "b"]
    assert complete["run"]["facets"]["custody_metrics"]["final"] is True
    transactions = next(d for d in complete["inputs"] if d["name"] == "transactions")
    assert [f["name"] for f in transactions["facets"]["schema"]["fields"]] == ["amount", "merchant"]
    assert transactions["facets"]["version"]["datasetVersion"].startswith("sha256:")
    assert transactions["inputFacets"]["inputStatistics"]["rowCount"] == 2
    child_start = by_job[("train.child", "START")]
    parent = child_start["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == by_job[("train", "START")]["run"]["runId"]
    assert parent["job"] == {"namespace": "unit", "name": "train"}
    failed = by_job[("broken", "FAIL")]["run"]["facets"]["errorMessage"]
    assert failed["message"] == "ZeroDivisionError: division by zero"
    assert "1 / 0" in failed["stackTrace"] and failed["programmingLanguage"] == "python"
    # event times of a run strictly increase
    for run_id in {e["run"]["runId"] for e in events}:
        times = [e["eventTime"] for e in events if e["run"]["runId"] == run_id]
        assert times == sorted(times) and len(set(times)) == len(times)


def test_every_custody_facet_has_a_valid_schema_at_its_url() -> None:
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"] == f"{SCHEMA_BASE}/{path.name}"
        assert path.stem.startswith("custody_") and path.stem in schema["properties"]
    emitted = set()
    for module in (SDK / "custody").rglob("*.py"):
        text = module.read_text()
        emitted |= {part.split('"')[0] for part in text.split('custody_facet(\n            "')[1:]}
        emitted |= {part.split('"')[0] for part in text.split('custody_facet("')[1:]}
    assert emitted and emitted <= {p.stem for p in SCHEMAS.glob("*.json")}, emitted


def test_configuration_from_arguments_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "CUSTODY_URL": "http://h:1",
        "CUSTODY_TOKEN": "s3cr3t-value",
        "CUSTODY_NAMESPACE": "team",
        "CUSTODY_DISABLED": "yes",
    }
    config = Config.resolve(env)
    assert (config.url, config.token, config.namespace, config.disabled) == ("http://h:1", "s3cr3t-value", "team", True)
    config = Config.resolve(env, url="https://other", namespace="mine", disabled=False)
    assert (config.url, config.namespace, config.disabled) == ("https://other", "mine", False)
    assert "s3cr3t" not in repr(config)
    with pytest.raises(ConfigurationError, match="CUSTODY_DISABLED"):
        Config.resolve({"CUSTODY_DISABLED": "maybe"})
    with pytest.raises(ConfigurationError, match="http"):
        Config.resolve({"CUSTODY_URL": "ftp://x"})
    with pytest.raises(ConfigurationError, match="namespace"):
        Config.resolve({}, namespace="has space")
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert Config.resolve({}).spool_dir == "/somewhere/custody"


def test_disabled_records_nothing_and_still_returns_versions(tmp_path: Path) -> None:
    artifact = tmp_path / "m.bin"
    artifact.write_bytes(b"x")
    client = Client(Config.resolve({}, disabled=True, spool_dir=str(tmp_path / "spool")))
    with client.run("train") as run:
        run.log_metrics({"a": 1})
        run.input("s3://b", "k")
        mv = run.log_model("m", path=artifact)
    assert client.sender is None and mv.version and mv.artifact_digest.startswith("sha256:")
    assert client.flush() and not (tmp_path / "spool").exists()


def test_import_is_cheap_and_lazy() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import custody; took = time.perf_counter() - t; "
        "heavy = sorted(m for m in ('pluggy', 'http.client', 'ssl', 'json', 'custody.sender', 'custody.client') if m in sys.modules); "
        "print(took, ','.join(heavy))"
    )
    runs = []
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONPATH": str(SDK)},
            capture_output=True,
            text=True,
            check=True,
        )
        took, heavy = out.stdout.split()[0], ([*out.stdout.split(), ""])[1]
        runs.append(float(took))
        assert heavy == "", f"import custody pulled in {heavy}"
    assert sorted(runs)[2] < 0.1, runs


def test_run_requires_no_server_and_track_wraps_sync_and_async(tmp_path: Path) -> None:
    import asyncio

    seen = []

    def body(client: Client) -> None:
        import custody as c

        c._client = client  # the decorator uses the shared client
        try:

            @c.track
            def prepare(x: int) -> int:
                seen.append(c.active_run().name)  # type: ignore[union-attr]
                c.log_metrics({"x": x})
                return x * 2

            @c.track(name="score-async")
            async def score() -> int:
                seen.append(c.active_run().name)  # type: ignore[union-attr]
                return prepare(3)

            assert asyncio.run(score()) == 6
        finally:
            c._client = None

    events = record_offline(tmp_path, body)
    assert seen == [
        "score-async",
        "test_run_requires_no_server_and_track_wraps_sync_and_async.<locals>.body.<locals>.prepare",
    ]
    child = next(e for e in events if e["job"]["name"].endswith("prepare") and e["eventType"] == "START")
    root = next(e for e in events if e["job"]["name"] == "score-async" and e["eventType"] == "START")
    assert child["run"]["facets"]["parent"]["run"]["runId"] == root["run"]["runId"]
    assert custody.active_run() is None


def test_model_plugins_without_an_artifact_file(tmp_path: Path) -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    model = sklearn.LogisticRegression(C=0.5).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    results = {}

    def body(client: Client) -> None:
        with client.run("fit") as run:
            results["sk"] = run.log_model("sk", model=model)
            try:
                import torch
            except ImportError:
                return
            torch.manual_seed(0)
            results["torch"] = run.log_model("net", model=torch.nn.Linear(3, 2), version="1.0.0")

    events = record_offline(tmp_path, body)
    complete = next(e for e in events if e["eventType"] == "COMPLETE")
    facets = {d["name"]: d["facets"]["custody_model"] for d in complete["outputs"]}
    sk = facets["models/sk"]
    assert sk["framework"] == "scikit-learn" and sk["modelClass"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert sk["hyperparameters"]["C"] == 0.5 and sk["artifactFormat"] == "pickle" and "artifactUri" not in sk
    assert results["sk"].version == sk["artifactDigest"][7:19]
    if "torch" in results:
        net = facets["models/net"]
        assert net["framework"] == "pytorch" and net["hyperparameters"]["parameterCount"] == 8
        assert net["version"] == "1.0.0" and net["artifactFormat"] == "state_dict"
    with pytest.raises(ValueError, match="needs the saved artifact"):
        Client(Config.resolve({}, disabled=True)).run("x").log_model("nothing")
