"""``/api/v1/promotions/``, ``/api/v1/deployments/`` and ``/api/v1/policies/``.

Promotions
  ``GET /promotions/?model=&version=&environment=&namespace=&state=&live=`` (what ``custody gate``
  asks: an item whose ``state`` is ``approved``, ``live`` true and ``expires_at`` in the future is a
  live approval); ``POST /promotions/`` ``{"model", "version", "environment", "namespace",
  "reason", "break_glass"}`` requests one (201). ``GET /promotions/{id}`` with decisions, comments,
  evidence and checks. ``POST /promotions/{id}/approve`` ``{"reason", "evidence_digest"}``,
  ``/reject`` ``{"reason"}`` (required), ``/withdraw`` ``{"reason"}``, ``/comment`` ``{"text"}``.

Deployments
  ``GET /deployments/?environment=&target=&model=&namespace=&version=`` the history, newest first;
  with ``asOf=<instant>`` (or ``current=true``) what was deployed where at that instant, one row
  per (environment, target). ``POST /deployments/`` ``{"model", "version", "environment",
  "namespace", "target", "deployed_at", "break_glass", "reason"}`` records one: 409 with the reason
  when the environment's policy requires a live approval and there is none. Other keys of the
  body are kept as ``metadata``. ``POST /deployments/{id}/rollback`` ``{"reason"}`` (or
  ``"rollback_of": id`` in a POST to ``/deployments/``) re-deploys what it replaced.

Policies
  ``GET /policies/?environment=&active=``; ``POST /policies/`` (admins) creates a new version of the
  policy of ``environment`` (optionally for a ``namespace`` or a ``model``).

Everything the caller cannot see answers 404 (details) or is left out (lists).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from governance.core.errors import ApiError
from governance.permissions import access
from governance.promotions import clock, services
from governance.promotions.evidence import closure, run_author_ids
from governance.promotions.models import Comment, Decision, Deployment, PromotionPolicy, PromotionRequest
from governance.registry import services as registry
from governance.registry.apiutil import (
    CONFLICT,
    ERRORS,
    LIMIT,
    OFFSET,
    GovernanceView,
    body,
    bool_param,
    instant,
    page,
    paging,
    path_param,
    pk_of,
    query,
    redact_evidence,
    time_param,
)
from governance.registry.models import ModelVersion, RegisteredModel
from lineage.api.marquez import ts
from lineage.models import Namespace

ID = path_param("id", OpenApiTypes.INT, "The id.")
MAX_METADATA = 64 * 1024


def _hours(value: timedelta | None) -> float | None:
    return value.total_seconds() / 3600 if value is not None else None


def policy_json(policy: PromotionPolicy) -> dict[str, Any]:
    namespace, model = policy.namespace, policy.model
    return {
        "id": policy.pk,
        "environment": policy.environment,
        "namespace": namespace.name if namespace is not None else None,
        "model": {"namespace": model.namespace.name, "name": model.name} if model is not None else None,
        "version": policy.version,
        "active": policy.active,
        "approvals_required": policy.approvals_required,
        "eligible_roles": policy.eligible_roles,
        "separation_of_duties": policy.separation_of_duties,
        "approval_ttl_hours": _hours(policy.approval_ttl),
        "request_ttl_hours": _hours(policy.request_ttl),
        "required_checks": policy.required_checks,
        "require_approval_to_deploy": policy.require_approval_to_deploy,
        "description": policy.description,
        "created_at": ts(policy.created_at),
        "superseded_at": ts(policy.superseded_at),
    }


def promotion_json(user: Any, req: PromotionRequest, *, detail: bool = False) -> dict[str, Any]:
    now = clock.now()
    version = req.model_version
    model = version.model
    state = req.effective_state(now)
    data: dict[str, Any] = {
        "id": req.pk,
        "namespace": model.namespace.name,
        "model": model.name,
        "version": version.version,
        "environment": req.environment,
        "state": state,
        "live": state == PromotionRequest.State.APPROVED,
        "approvals": req.approvals_count,
        "approvals_required": req.policy.approvals_required,
        "policy": {"id": req.policy_id, "version": req.policy.version, "scope": req.policy.scope},
        "requested_by": req.requested_by_name or None,
        "reason": req.reason,
        "state_reason": req.state_reason,
        "evidence_digest": req.evidence_digest,
        "checks": req.checks,
        "break_glass": req.break_glass,
        "flagged_for_review": req.flagged_for_review,
        "created_at": ts(req.created_at),
        "updated_at": ts(req.updated_at),
        "decided_at": ts(req.decided_at),
        "approved_at": ts(req.approved_at),
        "expires_at": ts(req.expires_at),
    }
    if detail:
        data["decisions"] = [
            {
                "user": d.user_name,
                "decision": d.kind,
                "role": d.role,
                "reason": d.reason,
                "evidence_digest": d.evidence_digest,
                "policy_version": d.policy_version,
                "stale": d.stale,
                "created_at": ts(d.created_at),
            }
            for d in Decision.objects.filter(request=req).order_by("created_at", "pk")
        ]
        data["comments"] = [
            {"author": c.author_name, "text": c.text, "created_at": ts(c.created_at)}
            for c in Comment.objects.filter(request=req).order_by("created_at", "pk")
        ]
        data["evidence"] = redact_evidence(user, req.evidence)
    return data


def deployment_json(deployment: Deployment) -> dict[str, Any]:
    version = deployment.model_version
    model = version.model
    return {
        "id": deployment.pk,
        "namespace": model.namespace.name,
        "model": model.name,
        "version": version.version,
        "environment": deployment.environment,
        "target": deployment.target,
        "deployed_at": ts(deployment.deployed_at),
        "recorded_at": ts(deployment.recorded_at),
        "deployed_by": deployment.deployed_by_name or None,
        "replaces": deployment.replaces_id,
        "rollback_of": deployment.rollback_of_id,
        "promotion_id": deployment.promotion_id,
        "approval_required": deployment.approval_required,
        "break_glass": deployment.break_glass,
        "flagged_for_review": deployment.flagged_for_review,
        "reason": deployment.reason,
        "metadata": deployment.metadata,
        "lineage_node_id": f"deployment:{deployment.pk}",
    }


def _promotions(user: Any) -> Any:
    qs = PromotionRequest.objects.select_related("policy", "model_version__model__namespace")
    return access.filter_models(user, qs, "model_version__model__")


def _deployments(user: Any) -> Any:
    qs = Deployment.objects.select_related("model_version__model__namespace")
    return access.filter_models(user, qs, "model_version__model__")


def version_governance(user: Any, version: ModelVersion) -> dict[str, Any]:
    """Promotion requests of a version and where it runs now (for the version's detail)."""
    requests = _promotions(user).filter(model_version=version).order_by("-created_at", "-pk")[:100]
    current = services.deployments_as_of(clock.now()).filter(model_version=version)
    return {
        "promotions": [promotion_json(user, r) for r in requests],
        "deployed": [deployment_json(d) for d in current.select_related("model_version__model__namespace")],
    }


def version_evidence(user: Any, version: ModelVersion) -> dict[str, Any]:
    from governance.promotions import checks
    from governance.registry.api import version_json

    evidence = closure(version)
    facts = evidence.as_json()
    commit = version.run.code_commit if version.run is not None else None
    names = sorted(checks.BUILTIN)
    history = (
        _deployments(user).filter(model_version=version).order_by("-deployed_at", "-pk").select_related("promotion")
    )
    return {
        "model_version": version_json(user, version),
        "evidence": redact_evidence(user, facts),
        "checks": checks.evaluate(names, version, facts),
        "authors": {
            "run_submitted_by": sorted(_usernames(run_author_ids(version))),
            "commit_author": commit.author or None if commit is not None else None,
        },
        "promotions": [
            promotion_json(user, r, detail=True)
            for r in _promotions(user).filter(model_version=version).order_by("-created_at", "-pk")[:100]
        ],
        "deployments": [deployment_json(d) for d in history[:100]],
    }


def _usernames(ids: set[int]) -> list[str]:
    from django.contrib.auth import get_user_model

    return list(get_user_model()._default_manager.filter(pk__in=ids).values_list("username", flat=True))


def _model_version(user: Any, data: dict[str, Any]) -> ModelVersion:
    model = registry.find_model(user, data.get("model"), data.get("namespace"))
    version = registry.find_version(model, data.get("version"))
    return ModelVersion.objects.select_related("model__namespace", "run__job", "run__code_commit").get(pk=version.pk)


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be true or false.")
    return value


# --- promotions -----------------------------------------------------------------------------------

PROMOTION_BODY = inline_serializer(
    "PromotionRequestBody",
    fields={
        "model": serializers.CharField(),
        "version": serializers.CharField(),
        "environment": serializers.CharField(),
        "namespace": serializers.CharField(required=False),
        "reason": serializers.CharField(required=False),
        "break_glass": serializers.BooleanField(required=False, help_text="Admins only; reason required."),
    },
)
DECISION_BODY = inline_serializer(
    "PromotionDecisionBody",
    fields={
        "reason": serializers.CharField(required=False),
        "evidence_digest": serializers.CharField(
            required=False, help_text="Approve: the digest you reviewed; refused (409) if it changed since."
        ),
    },
)
REASON_BODY = inline_serializer("PromotionReasonBody", fields={"reason": serializers.CharField()})
COMMENT_BODY = inline_serializer("PromotionCommentBody", fields={"text": serializers.CharField()})


class PromotionListView(GovernanceView):
    @extend_schema(
        operation_id="promotions_list",
        summary="Promotion requests the caller may see, newest first",
        parameters=[
            query("model", OpenApiTypes.STR, "Registered model name."),
            query("version", OpenApiTypes.STR, "Version label."),
            query("environment", OpenApiTypes.STR, "Target environment."),
            query("namespace", OpenApiTypes.STR, "The model's namespace."),
            query("state", OpenApiTypes.STR, "pending, approved, rejected, expired, withdrawn or stale."),
            query("live", OpenApiTypes.BOOL, "Only live approvals (true) or anything else (false)."),
            LIMIT,
            OFFSET,
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        limit, offset = paging(request)
        params = request.query_params
        qs = _promotions(request.user)
        if params.get("model"):
            qs = qs.filter(model_version__model__name=params["model"])
        if params.get("namespace"):
            qs = qs.filter(model_version__model__namespace__name=params["namespace"])
        if params.get("version"):
            qs = qs.filter(model_version__version=params["version"])
        if params.get("environment"):
            qs = qs.filter(environment=params["environment"])
        now = clock.now()
        not_expired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        state = (params.get("state") or "").strip().lower()
        if state:
            if state not in PromotionRequest.State.values:
                raise ApiError(400, f"state must be one of {', '.join(PromotionRequest.State.values)}.")
            if state == PromotionRequest.State.EXPIRED:
                qs = qs.filter(Q(state=state) | (Q(state__in=services.OPEN) & ~not_expired))
            elif state in services.OPEN:
                qs = qs.filter(not_expired, state=state)
            else:
                qs = qs.filter(state=state)
        live = bool_param(request, "live")
        if live is not None:
            is_live = Q(state=PromotionRequest.State.APPROVED) & not_expired
            qs = qs.filter(is_live) if live else qs.exclude(is_live)
        qs = qs.order_by("-created_at", "-pk")
        items = [promotion_json(request.user, r) for r in qs[offset : offset + limit]]
        return Response(page(items, qs.count(), limit, offset))

    @extend_schema(
        operation_id="promotions_create",
        summary="Request the promotion of a model version to an environment",
        request=PROMOTION_BODY,
        responses={201: OpenApiTypes.OBJECT, 409: CONFLICT, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = body(request)
        version = _model_version(request.user, data)
        req = services.request_promotion(
            request.user,
            version,
            data.get("environment"),
            data.get("reason"),
            break_glass=_flag(data, "break_glass"),
        )
        return Response(promotion_json(request.user, _reload(req.pk), detail=True), status=201)


def _reload(pk: int) -> PromotionRequest:
    return PromotionRequest.objects.select_related("policy", "model_version__model__namespace").get(pk=pk)


class PromotionDetailView(GovernanceView):
    @extend_schema(
        operation_id="promotions_retrieve",
        summary="A promotion request with its decisions, comments, evidence and checks",
        parameters=[ID],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, pk: str) -> Response:
        req = services.get_request(request.user, pk_of(pk, "promotion request"))
        return Response(promotion_json(request.user, req, detail=True))


class PromotionApproveView(GovernanceView):
    @extend_schema(
        operation_id="promotions_approve",
        summary="Approve (counts towards the policy's N approvals)",
        parameters=[ID],
        request=DECISION_BODY,
        responses={200: OpenApiTypes.OBJECT, 409: CONFLICT, **ERRORS},
    )
    def post(self, request: Request, pk: str) -> Response:
        data = body(request)
        req = services.approve(
            request.user,
            pk_of(pk, "promotion request"),
            data.get("reason"),
            evidence_digest=data.get("evidence_digest"),
        )
        return Response(promotion_json(request.user, req))


class PromotionRejectView(GovernanceView):
    @extend_schema(
        operation_id="promotions_reject",
        summary="Reject (reason required)",
        parameters=[ID],
        request=REASON_BODY,
        responses={200: OpenApiTypes.OBJECT, 409: CONFLICT, **ERRORS},
    )
    def post(self, request: Request, pk: str) -> Response:
        req = services.reject(request.user, pk_of(pk, "promotion request"), body(request).get("reason"))
        return Response(promotion_json(request.user, req))


class PromotionWithdrawView(GovernanceView):
    @extend_schema(
        operation_id="promotions_withdraw",
        summary="Withdraw (the requester or an admin)",
        parameters=[ID],
        request=DECISION_BODY,
        responses={200: OpenApiTypes.OBJECT, 409: CONFLICT, **ERRORS},
    )
    def post(self, request: Request, pk: str) -> Response:
        req = services.withdraw(request.user, pk_of(pk, "promotion request"), body(request).get("reason"))
        return Response(promotion_json(request.user, req))


class PromotionCommentView(GovernanceView):
    @extend_schema(
        operation_id="promotions_comment",
        summary="Comment on a promotion request",
        parameters=[ID],
        request=COMMENT_BODY,
        responses={201: OpenApiTypes.OBJECT, **ERRORS},
    )
    def post(self, request: Request, pk: str) -> Response:
        note = services.comment(request.user, pk_of(pk, "promotion request"), body(request).get("text"))
        return Response(
            {
                "id": note.pk,
                "promotion_id": note.request_id,
                "author": note.author_name,
                "text": note.text,
                "created_at": ts(note.created_at),
            },
            status=201,
        )


# --- deployments ----------------------------------------------------------------------------------

DEPLOYMENT_BODY = inline_serializer(
    "DeploymentBody",
    fields={
        "model": serializers.CharField(),
        "version": serializers.CharField(),
        "environment": serializers.CharField(),
        "namespace": serializers.CharField(required=False),
        "target": serializers.CharField(required=False, help_text="Endpoint, cluster or service."),
        "deployed_at": serializers.DateTimeField(required=False, help_text="Default: now."),
        "break_glass": serializers.BooleanField(required=False, help_text="Admins only; reason required."),
        "reason": serializers.CharField(required=False),
        "rollback_of": serializers.IntegerField(required=False, help_text="Roll this deployment back instead."),
    },
)
DEPLOYMENT_KEYS = {
    "model",
    "version",
    "environment",
    "namespace",
    "target",
    "deployed_at",
    "break_glass",
    "reason",
    "rollback_of",
}


class DeploymentListView(GovernanceView):
    @extend_schema(
        operation_id="deployments_list",
        summary="Deployment history, or what was deployed where as of an instant",
        parameters=[
            query("environment", OpenApiTypes.STR, "Only this environment."),
            query("target", OpenApiTypes.STR, "Only this target."),
            query("model", OpenApiTypes.STR, "Only this registered model."),
            query("namespace", OpenApiTypes.STR, "Only models of this namespace."),
            query("version", OpenApiTypes.STR, "Only this version label."),
            query("asOf", OpenApiTypes.DATETIME, "What was deployed where at this instant (one per target)."),
            query("current", OpenApiTypes.BOOL, "What is deployed where now."),
            LIMIT,
            OFFSET,
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        limit, offset = paging(request)
        params = request.query_params
        as_of = time_param(request, "asOf")
        if as_of is None and bool_param(request, "current"):
            as_of = clock.now()
        scope = Deployment.objects.all()
        if params.get("environment"):
            scope = scope.filter(environment=params["environment"])
        if "target" in params:
            scope = scope.filter(target=params["target"])
        qs = services.deployments_as_of(as_of, scope) if as_of is not None else scope
        qs = access.filter_models(request.user, qs, "model_version__model__")
        if params.get("model"):
            qs = qs.filter(model_version__model__name=params["model"])
        if params.get("namespace"):
            qs = qs.filter(model_version__model__namespace__name=params["namespace"])
        if params.get("version"):
            qs = qs.filter(model_version__version=params["version"])
        qs = qs.select_related("model_version__model__namespace")
        qs = qs.order_by("environment", "target") if as_of is not None else qs.order_by("-deployed_at", "-pk")
        items = [deployment_json(d) for d in qs[offset : offset + limit]]
        result = page(items, qs.count(), limit, offset)
        if as_of is not None:
            result["as_of"] = ts(as_of)
        return Response(result)

    @extend_schema(
        operation_id="deployments_create",
        summary="Record a deployment (409 when a required approval is not live)",
        request=DEPLOYMENT_BODY,
        responses={201: OpenApiTypes.OBJECT, 409: CONFLICT, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = body(request)
        if data.get("rollback_of") is not None:
            deployment = services.rollback(request.user, pk_of(data["rollback_of"], "deployment"), data.get("reason"))
            return Response(deployment_json(deployment), status=201)
        version = _model_version(request.user, data)
        metadata = {k: v for k, v in data.items() if k not in DEPLOYMENT_KEYS}
        if len(str(metadata)) > MAX_METADATA:
            raise ApiError(400, f"The extra fields (metadata) must stay under {MAX_METADATA} bytes.")
        deployed_at = instant(data["deployed_at"], "deployed_at") if data.get("deployed_at") else None
        deployment = services.record_deployment(
            request.user,
            version,
            data.get("environment"),
            data.get("target"),
            deployed_at=deployed_at,
            break_glass=_flag(data, "break_glass"),
            reason=data.get("reason"),
            metadata=metadata,
        )
        return Response(deployment_json(deployment), status=201)


class DeploymentDetailView(GovernanceView):
    @extend_schema(
        operation_id="deployments_retrieve",
        summary="A deployment",
        parameters=[ID],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, pk: str) -> Response:
        return Response(deployment_json(services.get_deployment(request.user, pk_of(pk, "deployment"))))


class DeploymentRollbackView(GovernanceView):
    @extend_schema(
        operation_id="deployments_rollback",
        summary="Roll back a deployment: re-deploy what it replaced",
        parameters=[ID],
        request=DECISION_BODY,
        responses={201: OpenApiTypes.OBJECT, 409: CONFLICT, **ERRORS},
    )
    def post(self, request: Request, pk: str) -> Response:
        deployment = services.rollback(request.user, pk_of(pk, "deployment"), body(request).get("reason"))
        return Response(deployment_json(deployment), status=201)


# --- policies -------------------------------------------------------------------------------------

POLICY_BODY = inline_serializer(
    "PromotionPolicyBody",
    fields={
        "environment": serializers.CharField(),
        "namespace": serializers.CharField(required=False),
        "model": serializers.CharField(required=False, help_text="A registered model (with namespace=)."),
        "approvals_required": serializers.IntegerField(required=False),
        "eligible_roles": serializers.ListField(child=serializers.CharField(), required=False),
        "separation_of_duties": serializers.BooleanField(required=False),
        "approval_ttl_hours": serializers.FloatField(required=False, allow_null=True),
        "request_ttl_hours": serializers.FloatField(required=False, allow_null=True),
        "required_checks": serializers.ListField(child=serializers.CharField(), required=False),
        "require_approval_to_deploy": serializers.BooleanField(required=False),
        "description": serializers.CharField(required=False),
    },
)


def _visible_policies(user: Any) -> Any:
    qs = PromotionPolicy.objects.select_related("namespace", "model__namespace")
    visible = access.visible_namespace_ids(user)
    if visible is None:
        return qs
    models = access.filter_models(user, RegisteredModel.objects.all()).values("pk")
    return qs.filter(
        Q(namespace__isnull=True, model__isnull=True) | Q(namespace_id__in=sorted(visible)) | Q(model_id__in=models)
    )


class PolicyListView(GovernanceView):
    @extend_schema(
        operation_id="policies_list",
        summary="Promotion policies (every version)",
        parameters=[
            query("environment", OpenApiTypes.STR, "Only this environment."),
            query("active", OpenApiTypes.BOOL, "Only active (true) or superseded (false) versions."),
            LIMIT,
            OFFSET,
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        limit, offset = paging(request)
        qs = _visible_policies(request.user)
        if request.query_params.get("environment"):
            qs = qs.filter(environment=request.query_params["environment"])
        active = bool_param(request, "active")
        if active is not None:
            qs = qs.filter(active=active)
        qs = qs.order_by("environment", "scope", "-version")
        return Response(page([policy_json(p) for p in qs[offset : offset + limit]], qs.count(), limit, offset))

    @extend_schema(
        operation_id="policies_create",
        summary="Create a new version of a promotion policy (admins)",
        request=POLICY_BODY,
        responses={201: OpenApiTypes.OBJECT, 409: CONFLICT, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = body(request)
        if not access.is_admin(request.user):
            raise ApiError(403, "Only admins may create or change promotion policies.")
        namespace = model = None
        if data.get("model"):
            model = registry.find_model(request.user, data["model"], data.get("namespace"))
        elif data.get("namespace"):
            namespace = (
                Namespace.objects.filter(name=data["namespace"]).first() if isinstance(data["namespace"], str) else None
            )
            if namespace is None:
                raise ApiError(404, f"No namespace {data['namespace']!r}.")
        policy = services.create_policy(
            request.user,
            environment=data.get("environment"),
            namespace=namespace,
            model=model,
            approvals_required=data.get("approvals_required", 1),
            eligible_roles=data.get("eligible_roles"),
            separation_of_duties=data.get("separation_of_duties", True),
            approval_ttl_hours=data.get("approval_ttl_hours"),
            request_ttl_hours=data.get("request_ttl_hours"),
            required_checks=data.get("required_checks"),
            require_approval_to_deploy=data.get("require_approval_to_deploy", True),
            description=data.get("description", ""),
        )
        policy = PromotionPolicy.objects.select_related("namespace", "model__namespace").get(pk=policy.pk)
        return Response(policy_json(policy), status=201)


class PolicyDetailView(GovernanceView):
    @extend_schema(
        operation_id="policies_retrieve",
        summary="A promotion policy version",
        parameters=[ID],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, pk: str) -> Response:
        policy = _visible_policies(request.user).filter(pk=pk_of(pk, "policy")).first()
        if policy is None:
            raise ApiError(404, f"No policy {pk}.")
        return Response(policy_json(policy))
