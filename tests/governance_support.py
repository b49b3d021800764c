"""Helpers for the governance tests: OpenLineage events like the SDK's, users, clients."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from rest_framework.test import APIClient

from governance.accounts.models import ApiToken
from governance.permissions.grants import ensure_namespace, grant_namespace

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PRODUCER = "https://github.com/custody/custody/sdk"
SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent"


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def when(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def dataset(
    namespace: str, name: str, *, version: str | None = None, fields: list[str] | None = None
) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    if version is not None:
        facets["version"] = {"_producer": PRODUCER, "_schemaURL": "x", "datasetVersion": version}
    if fields is not None:
        facets["schema"] = {
            "_producer": PRODUCER,
            "_schemaURL": "x",
            "fields": [{"name": f, "type": "DOUBLE"} for f in fields],
        }
    return {"namespace": namespace, "name": name, "facets": facets}


def model_output(
    namespace: str,
    name: str,
    version: str,
    *,
    artifact: str = "weights",
    metrics: dict[str, Any] | None = None,
    environment: str = "env-1",
) -> dict[str, Any]:
    out = dataset(namespace, f"models/{name}", version=version)
    out["facets"]["custody_model"] = {
        "_producer": PRODUCER,
        "_schemaURL": "https://github.com/custody/custody/blob/main/sdk/custody/schemas/custody_model.json",
        "name": name,
        "version": version,
        "artifactUri": f"file:///models/{name}/{version}/model.pkl",
        "artifactDigest": digest(artifact),
        "framework": "scikit-learn",
        "frameworkVersion": "1.5.0",
        "modelClass": "sklearn.ensemble.RandomForestClassifier",
        "hyperparameters": {"n_estimators": 15},
        "params": {"max_depth": 6},
        "metrics": metrics if metrics is not None else {"auc": 0.91},
        "environmentDigest": digest(environment),
    }
    return out


def run_event(
    namespace: str,
    job: str,
    run_id: str,
    *,
    event_type: str = "COMPLETE",
    minutes: float = 0,
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    commit: str | None = None,
    author: str | None = None,
    dirty: bool = False,
) -> dict[str, Any]:
    run_facets: dict[str, Any] = {}
    if commit is not None:
        run_facets["custody_git"] = {
            "_producer": PRODUCER,
            "_schemaURL": "x",
            "repoUrl": "https://git.example.com/team/fraud.git",
            "commit": commit,
            "branch": "main",
            "author": author or "",
            "dirty": dirty,
        }
    return {
        "eventType": event_type,
        "eventTime": when(minutes),
        "producer": PRODUCER,
        "schemaURL": SCHEMA,
        "run": {"runId": run_id, "facets": run_facets},
        "job": {"namespace": namespace, "name": job, "facets": {}},
        "inputs": inputs or [],
        "outputs": outputs or [],
    }


def new_run_id() -> str:
    return str(uuid.uuid4())


def client_for(user: Any, scope: str = "full", namespaces: list[str] | None = None) -> APIClient:
    limits = [ensure_namespace(ns) for ns in namespaces or []]
    _, raw = ApiToken.issue(user, label="test", scope=scope, namespaces=limits)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    client.user = user  # type: ignore[attr-defined]
    return client


def post(client: APIClient, path: str, data: Any) -> Any:
    return client.post(path, data=json.dumps(data), content_type="application/json")


def grant(user: Any, namespace: str, level: str = "write") -> None:
    grant_namespace(user, ensure_namespace(namespace), level)


def train(
    client: APIClient,
    namespace: str = "fraud",
    model: str = "fraud-detector",
    version: str = "v1",
    *,
    run_id: str | None = None,
    inputs: list[dict[str, Any]] | None = None,
    commit: str | None = "a" * 40,
    author: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> str:
    """A training run (START + COMPLETE) that reads ``inputs`` and logs a model version."""
    run_id = run_id or new_run_id()
    inputs = (
        inputs if inputs is not None else [dataset("warehouse", "transactions", version="2026-03-01", fields=["a"])]
    )
    out = model_output(namespace, model, version, metrics=metrics)
    for event_type, minutes in (("START", 0), ("COMPLETE", 5)):
        response = post(
            client,
            "/api/v1/lineage",
            run_event(
                namespace,
                f"train-{model}",
                run_id,
                event_type=event_type,
                minutes=minutes,
                inputs=inputs,
                outputs=[out],
                commit=commit,
                author=author,
            ),
        )
        assert response.status_code == 201, response.content
    return run_id
