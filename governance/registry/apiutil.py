"""Helpers shared by the governance REST views (registry, promotions, deployments, policies)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils.crypto import salted_hmac
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework.request import Request
from rest_framework.views import APIView

from governance.core.errors import ApiError
from governance.permissions import access
from lineage.access import REDACTED, opaque_id
from lineage.api.marquez import ts
from lineage.api.read_views import parse_instant
from lineage.graph import InvalidQuery

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_PK = 2**63 - 1

ERRORS = {
    400: OpenApiResponse(description="Malformed input; the detail says what is wrong."),
    401: OpenApiResponse(description="No or invalid bearer token."),
    403: OpenApiResponse(description="The caller's role, object permissions or token do not allow it."),
    404: OpenApiResponse(description="Unknown, or not visible to the caller."),
}
CONFLICT = OpenApiResponse(description="Refused by the state of things (the detail says why).")


def _has_nul(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if depth > 64:
        return False
    if isinstance(value, dict):
        return any(_has_nul(k, depth + 1) or _has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v, depth + 1) for v in value)
    return False


class GovernanceView(APIView):
    """Base of the governance views (authentication, token scopes and error shape come from the
    project's DRF settings). Refuses NUL characters anywhere in the path, the query or a JSON body
    (400): PostgreSQL cannot store them, and they are never meaningful here."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if _has_nul(kwargs) or any(_has_nul(v) for v in request.query_params.values()):
            raise ApiError(400, "NUL characters are not allowed in the path or the query.")
        if request.method in ("POST", "PUT", "PATCH") and _has_nul(request.data):
            raise ApiError(400, "NUL characters cannot be stored; remove them from the body.")


def query(name: str, kind: Any, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description)


def path_param(name: str, kind: Any, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.PATH, description=description)


LIMIT = query("limit", OpenApiTypes.INT, f"Page size (default {DEFAULT_LIMIT}, at most {MAX_LIMIT}).")
OFFSET = query("offset", OpenApiTypes.INT, "Rows to skip (default 0).")
NAMESPACE = query("namespace", OpenApiTypes.STR, "The model's namespace (needed when the name is not unique).")


def body(request: Request) -> dict[str, Any]:
    data = request.data
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return data


def int_param(request: Request, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = (request.query_params.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer; got {raw!r}.")
    if value < minimum:
        raise ApiError(400, f"{name} must be at least {minimum}.")
    if maximum is not None:
        value = min(value, maximum)
    return value


def paging(request: Request) -> tuple[int, int]:
    return (
        int_param(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT),
        int_param(request, "offset", 0, maximum=MAX_PK),
    )


def bool_param(request: Request, name: str) -> bool | None:
    raw = (request.query_params.get(name) or "").strip().lower()
    if not raw:
        return None
    if raw in {"true", "1", "yes"}:
        return True
    if raw in {"false", "0", "no"}:
        return False
    raise ApiError(400, f"{name} must be true or false; got {raw!r}.")


def instant(value: Any, name: str) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{name} must be an ISO-8601 date-time.")
    try:
        return parse_instant(value, name)
    except InvalidQuery as exc:
        raise ApiError(400, exc.detail)


def time_param(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or not raw.strip():
        return None
    return instant(raw, name)


def pk_of(value: Any, what: str) -> int:
    try:
        pk = int(value)
    except (TypeError, ValueError):
        raise ApiError(404, f"No {what} {value!r}.")
    if not 0 < pk <= MAX_PK:
        raise ApiError(404, f"No {what} {value!r}.")
    return pk


def page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"count": total, "limit": limit, "offset": offset, "results": items}


# --- rendering with redaction ---------------------------------------------------------------------


def run_ref(user: Any, run: Any) -> dict[str, Any] | None:
    """A producing run as the caller may see it."""
    if run is None:
        return None
    if not access.sees_namespace(user, run.job.namespace_id):
        return {"run_id": opaque_id("run", run.pk), "redacted": True}
    return {
        "run_id": run.run_id,
        "job": {"namespace": run.job.namespace.name, "name": run.job.name},
        "state": run.state,
        "started_at": ts(run.started_at),
        "ended_at": ts(run.ended_at),
    }


def redact_evidence(user: Any, evidence: dict[str, Any]) -> dict[str, Any]:
    """A closure (see governance.promotions.evidence) without what lives in namespaces the caller
    cannot see: hidden runs and datasets become opaque placeholders; the digest stays."""
    visible = access.visible_namespace_ids(user)
    if visible is None or not evidence:
        return evidence
    from lineage.models import Namespace

    names = set()
    for run in evidence.get("runs", []):
        names.add(run.get("job", {}).get("namespace"))
    for item in [*evidence.get("inputs", []), *evidence.get("schema_changes", [])]:
        names.add(item.get("dataset", {}).get("namespace"))
    seen = {
        name
        for name, pk in Namespace.objects.filter(name__in=sorted(n for n in names if n)).values_list("name", "pk")
        if pk in visible
    }
    hidden_runs = {r["run_id"] for r in evidence.get("runs", []) if r.get("job", {}).get("namespace") not in seen}

    def run_id(value: Any) -> Any:
        if value not in hidden_runs:
            return value
        return salted_hmac("custody.evidence.redacted", str(value), algorithm="sha256").hexdigest()[:20]

    out = dict(evidence)
    out["runs"] = [
        {"run_id": run_id(r["run_id"]), "redacted": True} if r["run_id"] in hidden_runs else r
        for r in evidence.get("runs", [])
    ]
    inputs = []
    for item in evidence.get("inputs", []):
        item = {**item, "run_id": run_id(item.get("run_id"))}
        if item.get("dataset", {}).get("namespace") not in seen:
            item = {"run_id": item["run_id"], "dataset": {"namespace": REDACTED, "name": REDACTED}, "redacted": True}
        inputs.append(item)
    out["inputs"] = inputs
    out["schema_changes"] = [
        c for c in evidence.get("schema_changes", []) if c.get("dataset", {}).get("namespace") in seen
    ]
    if out.get("producing_run") in hidden_runs:
        out["producing_run"] = run_id(out["producing_run"])
    return out
