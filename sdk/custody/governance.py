"""Governance calls (synchronous, they answer with the server's decision).

Contract paths (DESIGN §4.2): ``POST /api/v1/promotions/`` to request a promotion,
``POST /api/v1/deployments/`` to record a deployment, and ``GET /api/v1/promotions/?model=&version=
&environment=`` for ``custody gate``. A server without the governance API answers 404 for the path
itself, raised as :class:`custody.errors.FeatureUnavailable`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

from custody.errors import HTTPError

logger = logging.getLogger("custody")

PROMOTIONS = "/api/v1/promotions/"
DEPLOYMENTS = "/api/v1/deployments/"
LIVE_STATES = {"approved"}


def _model_and_version(model: Any, version: Any) -> Tuple[str, str, Optional[str]]:
    from custody.client import ModelVersion

    if isinstance(model, ModelVersion):
        return model.name, str(version if version is not None else model.version), model.namespace
    if version is None:
        raise TypeError("version is required when model is a name")
    return str(model), str(version), None


def _transport(client: Any) -> Any:
    from custody.transport import Transport

    config = client.config
    return Transport(config.base_url, config.token, config.timeout)


def request_promotion(
    client: Any,
    model: Any,
    version: Any = None,
    *,
    to: str,
    reason: Optional[str] = None,
    namespace: Optional[str] = None,
    flush_timeout: float = 30.0,
    **extra: Any,
) -> Optional[Dict[str, Any]]:
    """Ask for ``model`` ``version`` to enter environment ``to``; returns the promotion request.

    Lineage recorded so far is flushed first, so that the server knows the model version."""
    name, label, ns = _model_and_version(model, version)
    if client.config.disabled:
        logger.info("custody: disabled; promotion of %s %s to %s not requested", name, label, to)
        return None
    if not client.flush(flush_timeout):
        logger.warning("custody: not all recorded lineage reached the server before the promotion request")
    body: Dict[str, Any] = {
        "model": name,
        "version": label,
        "environment": to,
        "namespace": namespace or ns or client.config.namespace,
    }
    if reason is not None:
        body["reason"] = reason
    body.update(extra)
    transport = _transport(client)
    try:
        return transport.call("POST", PROMOTIONS, body, what="promotion requests (POST /api/v1/promotions/)")  # type: ignore[no-any-return]
    finally:
        transport.close()


def record_deployment(
    client: Any,
    model: Any,
    version: Any = None,
    *,
    environment: str,
    target: Optional[str] = None,
    namespace: Optional[str] = None,
    flush_timeout: float = 30.0,
    **extra: Any,
) -> Optional[Dict[str, Any]]:
    """Record that ``model`` ``version`` is deployed to ``environment`` (``target``: endpoint/cluster).

    Raises :class:`custody.errors.Conflict` when the server refuses (e.g. production without a live
    approval); its ``detail`` says why."""
    name, label, ns = _model_and_version(model, version)
    if client.config.disabled:
        logger.info("custody: disabled; deployment of %s %s to %s not recorded", name, label, environment)
        return None
    client.flush(flush_timeout)
    body: Dict[str, Any] = {
        "model": name,
        "version": label,
        "environment": environment,
        "namespace": namespace or ns or client.config.namespace,
    }
    if target is not None:
        body["target"] = target
    body.update(extra)
    transport = _transport(client)
    try:
        return transport.call("POST", DEPLOYMENTS, body, what="deployments (POST /api/v1/deployments/)")  # type: ignore[no-any-return]
    finally:
        transport.close()


@dataclass
class GateResult:
    approved: bool
    reason: str
    promotion: Optional[Dict[str, Any]] = None


def _items(answer: Any) -> List[Dict[str, Any]]:
    if isinstance(answer, dict):
        answer = answer.get("results", answer.get("promotions", []))
    return [item for item in answer or [] if isinstance(item, dict)]


def _expired(item: Dict[str, Any]) -> bool:
    value = item.get("expires_at") or item.get("expiresAt")
    if not isinstance(value, str) or not value:
        return False
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when <= datetime.now(timezone.utc)


def check_gate(client: Any, model: str, version: str, environment: str, namespace: Optional[str] = None) -> GateResult:
    """Whether a live approval exists for ``model`` ``version`` in ``environment``."""
    from urllib.parse import urlencode

    query = {"model": model, "version": version, "environment": environment}
    if namespace:
        query["namespace"] = namespace
    transport = _transport(client)
    try:
        answer = transport.call(
            "GET", f"{PROMOTIONS}?{urlencode(query)}", what="promotion requests (GET /api/v1/promotions/)"
        )
    finally:
        transport.close()
    items = [
        item
        for item in _items(answer)
        if str(item.get("version", version)) == str(version)
        and str(item.get("environment", environment)) == environment
        and str((item.get("model") if not isinstance(item.get("model"), dict) else item["model"].get("name")) or model)
        == model
    ]
    states = [str(item.get("state") or item.get("status") or "").lower() for item in items]
    for item, state in zip(items, states):
        if state in LIVE_STATES and not _expired(item) and item.get("live", True) is not False:
            return GateResult(True, f"approved (promotion request {item.get('id', '?')})", item)
    if not items:
        return GateResult(False, f"no promotion request for {model} {version} to {environment}")
    return GateResult(
        False, "no live approval; promotion request state(s): " + ", ".join(sorted(set(states)) or ["unknown"])
    )


def wait_gate(
    client: Any,
    model: str,
    version: str,
    environment: str,
    namespace: Optional[str] = None,
    wait: float = 0.0,
    interval: float = 10.0,
) -> GateResult:
    """:func:`check_gate`, polling until approved or ``wait`` seconds pass (only transient errors retried)."""
    deadline = time.monotonic() + wait
    while True:
        result = check_gate(client, model, version, environment, namespace)
        if result.approved or time.monotonic() + interval > deadline:
            return result
        time.sleep(interval)


__all__ = ["GateResult", "HTTPError", "check_gate", "record_deployment", "request_promotion", "wait_gate"]
