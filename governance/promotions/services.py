"""The one service layer for governance actions: promotion policies, promotion requests and their
decisions, deployments and rollbacks, break-glass, expiry and staleness.

The REST API, the admin and the Celery tasks all call these functions; each action appends its
audit entry (:func:`governance.audit.services.record`) in the transaction that makes the change.
Errors are :class:`governance.core.errors.ApiError` carrying the HTTP status to answer.

Race safety: every transition of a promotion request happens under a row lock on that request
(``SELECT ... FOR UPDATE``; on SQLite the IMMEDIATE write transaction serialises writers), and the
state and the approval count are re-read under the lock, so concurrent approvers, withdrawals,
expiry sweeps and staleness recomputations each see the outcome of the previous one: twenty
approvers at once give exactly one transition to ``approved`` with exactly N approvals; the
others are told the request is no longer pending. A partial unique index also refuses a second
live decision by the same user on a request.

Time: every function takes ``now=`` (default :func:`governance.promotions.clock.now`), so expiry
can be tested by travelling in time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Window
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import RowNumber

from governance.audit.services import record, snapshot
from governance.core.errors import ApiError
from governance.permissions import access
from governance.promotions import checks as checks_module
from governance.promotions import clock
from governance.promotions.evidence import closure, is_commit_author, is_run_author
from governance.promotions.models import (
    Comment,
    Decision,
    Deployment,
    EvidenceRef,
    PromotionPolicy,
    PromotionRequest,
)
from governance.registry.models import ModelVersion, RegisteredModel
from lineage.models import Dataset, Namespace, RawEvent, Run

logger = logging.getLogger(__name__)

State = PromotionRequest.State
OPEN = list(PromotionRequest.OPEN_STATES)
MAX_ENVIRONMENT = 64
MAX_TEXT = 10_000
REQUEST_FIELDS = (
    "state",
    "approvals_count",
    "evidence_digest",
    "break_glass",
    "flagged_for_review",
    "state_reason",
    "decided_at",
    "approved_at",
    "expires_at",
)
#: What a state transition changes (the evidence is left alone: it is large and changes only on refresh).
TRANSITION_FIELDS = ("state", "state_reason", "decided_at", "approved_at", "expires_at")
#: Clock skew tolerated on a reported ``deployed_at``.
FUTURE_SKEW = timedelta(minutes=5)


# --- small helpers ------------------------------------------------------------------------------


def clean_environment(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "environment is required (e.g. staging, production).")
    value = value.strip()
    if len(value) > MAX_ENVIRONMENT or "/" in value or any(ch.isspace() for ch in value):
        raise ApiError(400, f"environment must be a word of at most {MAX_ENVIRONMENT} characters.")
    return value


def clean_text(value: Any, what: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ApiError(400, f"{what} must be a string.")
    value = value.strip()
    if required and not value:
        raise ApiError(400, f"{what} is required.")
    if len(value) > limit:
        raise ApiError(400, f"{what} must be at most {limit} characters.")
    return value


def _name(user: Any) -> str:
    return user.get_username() if access.authenticated(user) else "system"


def _actor(user: Any) -> Any:
    return user if access.authenticated(user) else None


def _state(req: PromotionRequest) -> dict[str, Any]:
    return snapshot(req, REQUEST_FIELDS, m2m=False)


def _label(version: ModelVersion) -> str:
    model = version.model
    return f"{model.namespace.name}:{model.name} version {version.version}"


def is_read_only(user: Any) -> bool:
    """Compliance officers and auditors (without another role) change nothing."""
    if access.is_admin(user):
        return False
    roles = access.roles(user)
    return not (roles & {access.DATA_SCIENTIST, access.APPROVER})


# --- policies -----------------------------------------------------------------------------------


def resolve_policy(environment: str, model: RegisteredModel) -> PromotionPolicy | None:
    """The active policy for ``environment`` that applies to ``model``: the model's own, else its
    namespace's, else the environment's global policy. One query."""
    scopes = [
        PromotionPolicy.scope_key(environment, model.namespace_id, model.pk),
        PromotionPolicy.scope_key(environment, model.namespace_id, None),
        PromotionPolicy.scope_key(environment, None, None),
    ]
    found = {p.scope: p for p in PromotionPolicy.objects.filter(active=True, scope__in=scopes)}
    for scope in scopes:
        if scope in found:
            return found[scope]
    return None


def _duration(value: Any, what: str) -> timedelta | None:
    if value is None or value == "":
        return None
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0 or value > 3650 * 24:
        raise ApiError(400, f"{what} must be a positive number of hours (at most ten years), or null.")
    return timedelta(hours=float(value))


def create_policy(
    user: Any,
    *,
    environment: Any,
    namespace: Namespace | None = None,
    model: RegisteredModel | None = None,
    approvals_required: Any = 1,
    eligible_roles: Any = None,
    separation_of_duties: Any = True,
    approval_ttl_hours: Any = None,
    request_ttl_hours: Any = None,
    required_checks: Any = None,
    require_approval_to_deploy: Any = True,
    description: Any = "",
    now: datetime | None = None,
) -> PromotionPolicy:
    """A new version of the policy for (environment, namespace or model): admins only. The
    previous active version of the same scope is deactivated, not changed."""
    if not access.is_admin(user):
        raise ApiError(403, "Only admins may create or change promotion policies.")
    from governance.accounts.models import ROLE_NAMES

    environment = clean_environment(environment)
    if model is not None:
        namespace = None
    if isinstance(approvals_required, bool) or not isinstance(approvals_required, int):
        raise ApiError(400, "approvals_required must be an integer.")
    if not 0 <= approvals_required <= 100:
        raise ApiError(400, "approvals_required must be between 0 and 100.")
    roles = ["approver"] if eligible_roles is None else eligible_roles
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise ApiError(400, "eligible_roles must be a list of role names.")
    unknown = sorted(set(roles) - set(ROLE_NAMES))
    if unknown:
        raise ApiError(400, f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLE_NAMES)}.")
    if approvals_required > 0 and not roles:
        raise ApiError(400, "eligible_roles must name at least one role when approvals are required.")
    if not isinstance(separation_of_duties, bool) or not isinstance(require_approval_to_deploy, bool):
        raise ApiError(400, "separation_of_duties and require_approval_to_deploy must be true or false.")
    try:
        checks = checks_module.validate(required_checks)
    except ValueError as exc:
        raise ApiError(400, str(exc))
    now = now or clock.now()
    scope = PromotionPolicy.scope_key(environment, namespace.pk if namespace else None, model.pk if model else None)
    with transaction.atomic():
        previous = PromotionPolicy.objects.select_for_update().filter(scope=scope, active=True).first()
        latest = PromotionPolicy.objects.filter(scope=scope).order_by("-version").values_list("version", flat=True)
        version = (latest.first() or 0) + 1
        if previous is not None:
            previous.active = False
            previous.superseded_at = now
            previous.save(update_fields=["active", "superseded_at"])
        try:
            with transaction.atomic():
                policy = PromotionPolicy.objects.create(
                    environment=environment,
                    namespace=namespace,
                    model=model,
                    scope=scope,
                    version=version,
                    approvals_required=approvals_required,
                    eligible_roles=list(dict.fromkeys(roles)),
                    separation_of_duties=separation_of_duties,
                    approval_ttl=_duration(approval_ttl_hours, "approval_ttl_hours"),
                    request_ttl=_duration(request_ttl_hours, "request_ttl_hours"),
                    required_checks=checks,
                    require_approval_to_deploy=require_approval_to_deploy,
                    description=clean_text(description, "description"),
                    created_at=now,
                    created_by=_actor(user),
                )
        except IntegrityError:
            raise ApiError(409, "The policy was changed concurrently; try again.")
        record(
            "policy.create",
            obj=policy,
            before=snapshot(previous) if previous is not None else None,
            after=snapshot(policy),
            extra={"scope": scope, "version": version},
        )
    return policy


# --- requests -----------------------------------------------------------------------------------


def _apply_expiry(req: PromotionRequest, now: datetime) -> bool:
    """Under the request's row lock: record a passed deadline. True when it expired now."""
    if req.state not in OPEN or req.expires_at is None or req.expires_at > now:
        return False
    before = _state(req)
    was = req.state
    req.state = State.EXPIRED
    req.state_reason = "the approval expired" if was == State.APPROVED else "nobody decided before the deadline"
    req.decided_at = req.decided_at or now
    req.updated_at = now
    req.save()
    EvidenceRef.objects.filter(request=req).delete()
    record(
        "promotion.expire",
        obj=req,
        before=before,
        after=_state(req),
        actor=None,
        actor_name="system:expiry",
        extra={"was": was, "deadline": req.expires_at.isoformat()},
    )
    return True


#: Large JSON columns that most reads of a request do not need (loaded on access if they do).
HEAVY = (
    "evidence",
    "model_version__facet",
    "model_version__hyperparameters",
    "model_version__params",
    "model_version__run__facets",
    "model_version__run__facet_times",
    "model_version__run__state_rank",
)
#: The columns of a request that transitions change, re-read under the row lock.
LOCKED_FIELDS = ("state", "approvals_count", "evidence_digest", "expires_at", "approved_at", "decided_at")


def _relock(req: PromotionRequest) -> PromotionRequest:
    """Lock ``req``'s row and refresh the columns transitions change: one short statement, so the
    lock is taken as early and cheaply as possible (the rest of ``req`` cannot change)."""
    row = PromotionRequest.objects.select_for_update().filter(pk=req.pk).values_list(*LOCKED_FIELDS).first()
    if row is None:
        raise ApiError(404, f"No promotion request {req.pk}.")
    for name, value in zip(LOCKED_FIELDS, row, strict=True):
        setattr(req, name, value)
    return req


def _lock(request_id: int) -> PromotionRequest:
    qs = PromotionRequest.objects.select_related("policy", "model_version__model__namespace").defer("evidence")
    # Lock only the request row (not the joined policy and model rows) where the backend can say so.
    of = ("self",) if connection.features.has_select_for_update_of else ()
    qs = qs.select_for_update(of=of)
    req = qs.filter(pk=request_id).first()
    if req is None:
        raise ApiError(404, f"No promotion request {request_id}.")
    return req


def get_request(user: Any, request_id: Any, *, deciding: bool = False) -> PromotionRequest:
    """A request ``user`` may see (404 otherwise, as if it did not exist). ``deciding``: also ask,
    in the same query, what separation of duties needs to know about ``user``."""
    try:
        pk = int(request_id)
    except (TypeError, ValueError):
        raise ApiError(404, f"No promotion request {request_id!r}.")
    qs = (
        PromotionRequest.objects.select_related(
            "policy", "model_version__model__namespace", "model_version__run__code_commit"
        )
        .defer(*HEAVY)
        .filter(pk=pk)
    )
    if deciding and access.authenticated(user):
        ran = RawEvent.objects.filter(run_id=OuterRef("model_version__run__run_id"), submitted_by_id=user.pk)
        qs = qs.annotate(
            decider_submitted_run=Exists(ran), run_git=KeyTransform("custody_git", "model_version__run__facets")
        )
    req = qs.first()
    if req is None or not access.sees_model(user, req.model_version.model):
        raise ApiError(404, f"No promotion request {request_id}.")
    return req


def _save_refs(req: PromotionRequest, run_pks: Iterable[int], dataset_pks: Iterable[int]) -> None:
    EvidenceRef.objects.filter(request=req).delete()
    refs = [EvidenceRef(request=req, run_pk=pk) for pk in sorted(run_pks)]
    refs += [EvidenceRef(request=req, dataset_pk=pk) for pk in sorted(dataset_pks)]
    if refs:
        EvidenceRef.objects.bulk_create(refs)


def request_promotion(
    user: Any,
    version: ModelVersion,
    environment: Any,
    reason: Any = "",
    *,
    break_glass: bool = False,
    now: datetime | None = None,
) -> PromotionRequest:
    """Ask for ``version`` to enter ``environment``. The request pins the policy in force and the
    evidence digest of the version's lineage closure. With a policy needing no approval (N = 0)
    and passing checks it is approved at once.

    ``break_glass`` (admins only, reason required): the promotion is approved now, without
    approvals or checks, and flagged for review; an open pending request is approved that way."""
    environment = clean_environment(environment)
    reason = clean_text(reason, "reason", required=break_glass)
    model = version.model
    if not access.sees_model(user, model):
        raise ApiError(404, f"No model version {version.version!r} of {model.name!r}.")
    if break_glass and not access.is_admin(user):
        raise ApiError(403, "Break-glass promotion is reserved to admins.")
    if not access.writes_model(user, model):
        raise ApiError(403, f"You may not request promotions of {model.namespace.name}:{model.name}.")
    policy = resolve_policy(environment, model)
    if policy is None:
        raise ApiError(400, f"No promotion policy governs environment {environment!r}; an admin must create one first.")
    now = now or clock.now()
    evidence = closure(version)
    results = checks_module.evaluate(policy.required_checks, version, evidence.as_json())
    failing = checks_module.failing(results)
    with transaction.atomic():
        rows = PromotionRequest.objects.select_for_update().filter(
            model_version=version, environment=environment, state__in=OPEN
        )
        open_requests = [r for r in rows.select_related("policy") if not _apply_expiry(r, now)]
        if open_requests:
            current = open_requests[0]
            if break_glass and current.state == State.PENDING:
                return _force(user, current, reason, evidence, results, now)
            raise ApiError(
                409,
                f"Promotion request #{current.pk} for {_label(version)} to {environment} is already "
                f"{current.state}; withdraw it first or wait for its outcome.",
            )
        req = PromotionRequest(
            model_version=version,
            environment=environment,
            policy=policy,
            requested_by=_actor(user),
            requested_by_name=_name(user),
            reason=reason,
            evidence_digest=evidence.digest,
            evidence=evidence.as_json(),
            checks=results,
            created_at=now,
            updated_at=now,
        )
        action = "promotion.request"
        if break_glass:
            action = "promotion.break_glass"
            _approve_now(req, policy, now)
            req.break_glass = True
            req.flagged_for_review = True
            req.state_reason = f"break-glass by {_name(user)}: {reason}"
        elif policy.approvals_required == 0:
            if failing:
                req.state = State.REJECTED
                req.decided_at = now
                req.state_reason = "required checks failing: " + "; ".join(f["detail"] for f in failing)
            else:
                _approve_now(req, policy, now)
                req.state_reason = "the policy requires no approval"
        elif policy.request_ttl is not None:
            req.expires_at = now + policy.request_ttl
        try:
            with transaction.atomic():
                req.save()
        except IntegrityError:
            raise ApiError(409, f"A promotion request for {_label(version)} to {environment} was just made.")
        if req.state in OPEN:
            _save_refs(req, evidence.run_pks, evidence.dataset_pks)
        record(
            action,
            obj=req,
            after=_state(req),
            extra={
                "model": _label(version),
                "environment": environment,
                "policy_id": policy.pk,
                "policy_version": policy.version,
                "reason": reason,
                "failing_checks": [f["name"] for f in failing],
            },
        )
    return req


def _approve_now(req: PromotionRequest, policy: PromotionPolicy, now: datetime) -> None:
    req.state = State.APPROVED
    req.approved_at = now
    req.decided_at = now
    req.expires_at = now + policy.approval_ttl if policy.approval_ttl is not None else None


def _force(
    user: Any, req: PromotionRequest, reason: str, evidence: Any, results: list[dict[str, Any]], now: datetime
) -> PromotionRequest:
    before = _state(req)
    _approve_now(req, req.policy, now)
    req.break_glass = True
    req.flagged_for_review = True
    req.state_reason = f"break-glass by {_name(user)}: {reason}"
    req.evidence_digest = evidence.digest
    req.evidence = evidence.as_json()
    req.checks = results
    req.updated_at = now
    req.save()
    _save_refs(req, evidence.run_pks, evidence.dataset_pks)
    record("promotion.break_glass", obj=req, before=before, after=_state(req), extra={"reason": reason})
    return req


def eligible_role(user: Any, policy: PromotionPolicy) -> str | None:
    roles = access.roles(user)
    for role in policy.eligible_roles:
        if role in roles or (role == access.ADMIN and access.authenticated(user) and user.is_superuser):
            return str(role)
    return None


def separation_conflicts(user: Any, req: PromotionRequest) -> list[str]:
    """Why ``user`` may not approve ``req`` under separation of duties (empty: no conflict)."""
    if not req.policy.separation_of_duties or not access.authenticated(user):
        return []
    reasons = []
    if req.requested_by_id == user.pk:
        reasons.append("you requested this promotion")
    version = req.model_version
    ran = getattr(req, "decider_submitted_run", None)
    if ran if ran is not None else is_run_author(user, version):
        reasons.append("you submitted the lineage of the run that produced this model version")
    if is_commit_author(user, version, git=getattr(req, "run_git", None) if ran is not None else None):
        reasons.append("you authored the code commit this model version was trained from")
    return reasons


def _decider(user: Any, req: PromotionRequest, verb: str) -> str:
    role = eligible_role(user, req.policy)
    if role is None:
        roles = ", ".join(req.policy.eligible_roles) or "nobody"
        raise ApiError(403, f"To {verb} a promotion to {req.environment} you need one of the roles: {roles}.")
    return role


def approve(
    user: Any,
    request_id: Any,
    reason: Any = "",
    *,
    evidence_digest: Any = None,
    now: datetime | None = None,
) -> PromotionRequest:
    """One approval. The request becomes ``approved`` when the policy's N live approvals are in.

    Refused: 403 without an eligible role or under separation of duties; 409 when the request is
    not pending (also when it just expired or went stale), when required checks fail, when the
    caller already decided, or when ``evidence_digest`` (what the approver reviewed) is not the
    request's current one."""
    if evidence_digest is not None and not isinstance(evidence_digest, str):
        raise ApiError(400, "evidence_digest must be the request's evidence digest (a string).")
    req = get_request(user, request_id, deciding=True)
    reason = clean_text(reason, "reason")
    role = _decider(user, req, "approve")
    conflicts = separation_conflicts(user, req)
    if conflicts:
        raise ApiError(403, "Separation of duties: " + "; ".join(conflicts) + ".")
    results = checks_module.evaluate(req.policy.required_checks, req.model_version, lambda: req.evidence)
    failing = checks_module.failing(results)
    now = now or clock.now()
    _expire_if_due(req, now)
    try:
        with transaction.atomic():
            req = _relock(req)
            if req.effective_state(now) == State.EXPIRED:
                raise _expired(req)
            if req.state != State.PENDING:
                raise ApiError(409, f"Promotion request #{req.pk} is {req.state}, not pending.")
            if evidence_digest not in (None, "") and evidence_digest != req.evidence_digest:
                raise ApiError(
                    409, "The evidence changed since you reviewed it: the request's evidence digest is now different."
                )
            if failing:
                raise ApiError(
                    409, "Required checks fail: " + "; ".join(f"{f['name']}: {f['detail']}" for f in failing)
                )
            if Decision.objects.filter(request=req, user_id=user.pk, stale=False).exists():
                raise ApiError(409, f"You already decided on promotion request #{req.pk}.")
            before = _state(req)
            # Under the row lock no other decision on this request can interleave, so no savepoint is
            # needed around the insert (the partial unique index stays as a backstop).
            Decision.objects.create(
                request=req,
                user=user,
                user_name=_name(user),
                kind=Decision.Kind.APPROVE,
                role=role,
                reason=reason,
                evidence_digest=req.evidence_digest,
                policy_version=req.policy.version,
                created_at=now,
            )
            # The count is kept under the same lock as every decision and staleness change.
            count = req.approvals_count + 1
            req.approvals_count = count
            req.checks = results
            req.updated_at = now
            reached = count >= req.policy.approvals_required
            if reached:
                _approve_now(req, req.policy, now)
                req.state_reason = f"{count} of {req.policy.approvals_required} approvals"
            req.save(update_fields=["approvals_count", "checks", "updated_at", *TRANSITION_FIELDS])
            record(
                "promotion.approve",
                obj=req,
                before=before,
                after=_state(req),
                extra={
                    "role": role,
                    "reason": reason,
                    "approvals": count,
                    "required": req.policy.approvals_required,
                    "approved": reached,
                    "evidence_digest": req.evidence_digest,
                },
            )
    except IntegrityError:  # the unique index caught a double decision (cannot happen under the lock)
        raise ApiError(409, "You already decided on this promotion request.")
    return req


def _expired(req: PromotionRequest) -> ApiError:
    return ApiError(409, f"Promotion request #{req.pk} has expired.")


def _expire_if_due(req: PromotionRequest, now: datetime) -> None:
    """Record the expiry of a request whose deadline passed (committed on its own), then refuse."""
    if req.state not in OPEN or req.effective_state(now) != State.EXPIRED:
        return
    with transaction.atomic():
        req = _lock(req.pk)
        expired = _apply_expiry(req, now)
    if expired:
        raise _expired(req)


def reject(user: Any, request_id: Any, reason: Any, *, now: datetime | None = None) -> PromotionRequest:
    """A rejection (reason required) ends a pending request at once."""
    req = get_request(user, request_id)
    reason = clean_text(reason, "reason", required=True)
    role = _decider(user, req, "reject")
    now = now or clock.now()
    _expire_if_due(req, now)
    with transaction.atomic():
        req = _lock(req.pk)
        if req.effective_state(now) == State.EXPIRED:
            raise _expired(req)
        if req.state != State.PENDING:
            raise ApiError(409, f"Promotion request #{req.pk} is {req.state}, not pending.")
        before = _state(req)
        try:
            with transaction.atomic():
                Decision.objects.create(
                    request=req,
                    user=user,
                    user_name=_name(user),
                    kind=Decision.Kind.REJECT,
                    role=role,
                    reason=reason,
                    evidence_digest=req.evidence_digest,
                    policy_version=req.policy.version,
                    created_at=now,
                )
        except IntegrityError:
            raise ApiError(409, f"You already decided on promotion request #{req.pk}.")
        req.state = State.REJECTED
        req.decided_at = now
        req.updated_at = now
        req.state_reason = f"rejected by {_name(user)}: {reason}"
        req.save()
        EvidenceRef.objects.filter(request=req).delete()
        record("promotion.reject", obj=req, before=before, after=_state(req), extra={"role": role, "reason": reason})
    return req


def withdraw(user: Any, request_id: Any, reason: Any = "", *, now: datetime | None = None) -> PromotionRequest:
    """The requester (or an admin) withdraws a pending or approved request."""
    req = get_request(user, request_id)
    reason = clean_text(reason, "reason")
    if not (access.is_admin(user) or (req.requested_by_id is not None and req.requested_by_id == user.pk)):
        raise ApiError(403, "Only the requester or an admin may withdraw a promotion request.")
    now = now or clock.now()
    _expire_if_due(req, now)
    with transaction.atomic():
        req = _lock(req.pk)
        if req.effective_state(now) == State.EXPIRED:
            raise _expired(req)
        if req.state not in OPEN:
            raise ApiError(409, f"Promotion request #{req.pk} is {req.state}; only open requests can be withdrawn.")
        before = _state(req)
        req.state = State.WITHDRAWN
        req.decided_at = now
        req.updated_at = now
        req.state_reason = f"withdrawn by {_name(user)}" + (f": {reason}" if reason else "")
        req.save()
        EvidenceRef.objects.filter(request=req).delete()
        record("promotion.withdraw", obj=req, before=before, after=_state(req), extra={"reason": reason})
    return req


def comment(user: Any, request_id: Any, text: Any, *, now: datetime | None = None) -> Comment:
    req = get_request(user, request_id)
    text = clean_text(text, "text", required=True)
    if is_read_only(user):
        raise ApiError(403, "Compliance officers and auditors read; they do not comment.")
    now = now or clock.now()
    with transaction.atomic():
        note = Comment.objects.create(
            request=req, author=_actor(user), author_name=_name(user), text=text, created_at=now
        )
        record(
            "promotion.comment",
            obj=req,
            after={"comment_id": note.pk, "text": text},
            extra={"comment_id": note.pk},
        )
    return note


def expire_due(now: datetime | None = None) -> int:
    """Record every open request whose deadline has passed as expired (the periodic sweep).
    Returns how many expired."""
    now = now or clock.now()
    ids = list(
        PromotionRequest.objects.filter(state__in=OPEN, expires_at__lte=now).order_by("pk").values_list("pk", flat=True)
    )
    done = 0
    for pk in ids:
        with transaction.atomic():
            req = _lock(pk)
            done += _apply_expiry(req, now)
    return done


# --- staleness ----------------------------------------------------------------------------------


def refresh(request_ids: Iterable[int], cause: str, *, now: datetime | None = None) -> list[int]:
    """Recompute the evidence of open requests; those whose digest changed become ``stale`` and
    their decisions stop counting. Runs in the caller's transaction (ingestion's, when new lineage
    arrives). Returns the ids that went stale."""
    now = now or clock.now()
    stale = []
    for pk in sorted(set(request_ids)):
        with transaction.atomic():
            try:
                req = _lock(pk)
            except ApiError:
                continue
            if req.state not in OPEN or _apply_expiry(req, now):
                continue
            version = ModelVersion.objects.select_related("model__namespace", "run__job", "run__code_commit").get(
                pk=req.model_version_id
            )
            evidence = closure(version)
            if evidence.digest == req.evidence_digest:
                _save_refs(req, evidence.run_pks, evidence.dataset_pks)
                continue
            before = _state(req)
            was = req.state
            old_digest = req.evidence_digest
            req.state = State.STALE
            req.state_reason = f"the evidence changed ({cause}); a new request must be approved"
            req.evidence_digest = evidence.digest
            req.evidence = {**evidence.as_json(), "previous_digest": old_digest}
            req.decided_at = now
            req.updated_at = now
            req.save()
            Decision.objects.filter(request=req, stale=False).update(stale=True)
            EvidenceRef.objects.filter(request=req).delete()
            record(
                "promotion.stale",
                obj=req,
                before=before,
                after=_state(req),
                actor=None,
                actor_name="system:evidence",
                extra={"was": was, "cause": cause, "previous_digest": old_digest, "digest": evidence.digest},
            )
            stale.append(req.pk)
    return stale


def affected_requests(run_ids: Iterable[str], datasets: Iterable[tuple[str, str]]) -> set[int]:
    """Open requests whose closure contains one of these runs (by OpenLineage runId) or datasets.

    Runs inside every ingestion transaction: one plain SQL statement, not a compiled queryset."""
    from lineage.ingest.rows import Table, any_of, bound_cursor

    run_ids = sorted(set(run_ids))
    datasets = set(datasets)
    if not run_ids and not datasets:
        return set()
    refs, runs, sets, namespaces = Table.of(EvidenceRef), Table.of(Run), Table.of(Dataset), Table.of(Namespace)
    connection = refs.connection
    conditions, params = [], []
    if run_ids:
        where, values = any_of(connection, runs.column("run_id"), run_ids)
        conditions.append(f"{refs.column('run_pk')} IN (SELECT {runs.column('id')} FROM {runs.name} WHERE {where})")
        params += values
    if datasets:
        name_sql, names = any_of(connection, sets.column("name"), sorted({name for _, name in datasets}))
        ns_sql, ns_names = any_of(connection, namespaces.column("name"), sorted({ns for ns, _ in datasets}))
        conditions.append(
            f"{refs.column('dataset_pk')} IN (SELECT {sets.column('id')} FROM {sets.name} JOIN {namespaces.name} "
            f"ON {namespaces.column('id')} = {sets.column('namespace_id')} WHERE {name_sql} AND {ns_sql})"
        )
        params += names + ns_names
    with bound_cursor(connection) as cursor:
        cursor.execute(
            f"SELECT DISTINCT {refs.column('request_id')} FROM {refs.name} WHERE {' OR '.join(conditions)}", params
        )
        return {request_id for (request_id,) in cursor.fetchall()}


def on_events_ingested(sender: Any, events: list[Any], user: Any = None, **kwargs: Any) -> None:
    """New lineage facts (inside the ingestion transaction): recompute the evidence of the open
    requests whose closure they touch."""
    run_ids: set[str] = set()
    datasets: set[tuple[str, str]] = set()
    for raw in events:
        if raw.run_id:
            run_ids.add(raw.run_id)
        payload = raw.payload if isinstance(raw.payload, dict) else {}
        if raw.kind == "DatasetEvent":
            datasets.add((raw.job_namespace, raw.job_name))
        for output in payload.get("outputs") or []:
            if isinstance(output, dict) and isinstance(output.get("namespace"), str):
                datasets.add((output["namespace"], str(output.get("name") or "")))
    if not run_ids and not datasets:
        return
    ids = affected_requests(run_ids, datasets)
    if ids:
        refresh(ids, "new lineage was ingested")


def on_version_changed(sender: Any, version: ModelVersion, **kwargs: Any) -> None:
    ids = PromotionRequest.objects.filter(model_version=version, state__in=OPEN).values_list("pk", flat=True)
    refresh(list(ids), "the model version's artifact, environment or producing run changed")


# --- approvals as seen by deployments and the gate ---------------------------------------------


def live_approval(version: ModelVersion, environment: str, now: datetime | None = None) -> PromotionRequest | None:
    now = now or clock.now()
    return (
        PromotionRequest.objects.filter(model_version=version, environment=environment, state=State.APPROVED)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by("-approved_at", "-pk")
        .first()
    )


def why_not_live(version: ModelVersion, environment: str, now: datetime) -> str:
    latest = (
        PromotionRequest.objects.filter(model_version=version, environment=environment)
        .select_related("policy")
        .order_by("-created_at", "-pk")
        .first()
    )
    label = _label(version)
    if latest is None:
        return f"no approval for {label} in {environment}: no promotion request was made"
    state = latest.effective_state(now)
    if state == State.PENDING:
        return (
            f"no live approval for {label} in {environment}: request #{latest.pk} is pending "
            f"({latest.approvals_count} of {latest.policy.approvals_required} approvals)"
        )
    return f"no live approval for {label} in {environment}: the latest request #{latest.pk} is {state}"


# --- deployments --------------------------------------------------------------------------------


def _serialise_deployments(environment: str, target: str) -> None:
    """Deployments to one (environment, target) one at a time, so ``replaces`` is exact."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", [f"deploy|{environment}|{target}"])


def current_deployment(environment: str, target: str, at: datetime) -> Deployment | None:
    return (
        Deployment.objects.filter(environment=environment, target=target, deployed_at__lte=at)
        .order_by("-deployed_at", "-pk")
        .first()
    )


def record_deployment(
    user: Any,
    version: ModelVersion,
    environment: Any,
    target: Any = "",
    *,
    deployed_at: datetime | None = None,
    break_glass: bool = False,
    reason: Any = "",
    metadata: dict[str, Any] | None = None,
    now: datetime | None = None,
    _rollback_of: Deployment | None = None,
) -> Deployment:
    """Record that ``version`` runs in ``environment`` at ``target`` (since ``deployed_at``,
    default now). Refused with 409 when the environment's policy requires an approval that is not
    live, unless break-glass (admins, reason required; flagged for review)."""
    environment = clean_environment(environment)
    target = clean_text(target, "target", limit=512)
    reason = clean_text(reason, "reason", required=break_glass)
    model = version.model
    if not access.sees_model(user, model):
        raise ApiError(404, f"No model version {version.version!r} of {model.name!r}.")
    if not access.writes_model(user, model):
        raise ApiError(403, f"You may not record deployments of {model.namespace.name}:{model.name}.")
    if break_glass and not access.is_admin(user):
        raise ApiError(403, "Break-glass deployment is reserved to admins.")
    now = now or clock.now()
    when = deployed_at or now
    if when > now + FUTURE_SKEW:
        raise ApiError(400, "deployed_at is in the future.")
    policy = resolve_policy(environment, model)
    required = policy is not None and policy.require_approval_to_deploy
    with transaction.atomic():
        _serialise_deployments(environment, target)
        live = live_approval(version, environment, now)
        if live is not None:
            live = PromotionRequest.objects.select_for_update().get(pk=live.pk)
            if not live.is_live(now):
                live = None
        flagged = False
        if required and live is None:
            if _rollback_of is not None:
                flagged = True  # back to what ran before: allowed, reviewed later
            elif not break_glass:
                raise ApiError(409, why_not_live(version, environment, now) + ".", "approval_required")
            else:
                flagged = True
        if break_glass:
            flagged = True
        replaces = current_deployment(environment, target, when)
        deployment = Deployment.objects.create(
            model_version=version,
            environment=environment,
            target=target,
            deployed_at=when,
            recorded_at=now,
            deployed_by=_actor(user),
            deployed_by_name=_name(user),
            replaces=replaces,
            rollback_of=_rollback_of,
            promotion=live,
            approval_required=required,
            break_glass=break_glass,
            flagged_for_review=flagged,
            reason=reason,
            metadata=metadata or {},
        )
        action = (
            "deployment.rollback" if _rollback_of else "deployment.break_glass" if break_glass else "deployment.record"
        )
        record(
            action,
            obj=deployment,
            after=snapshot(deployment),
            extra={
                "model": _label(version),
                "environment": environment,
                "target": target,
                "promotion_id": live.pk if live else None,
                "replaces": replaces.pk if replaces else None,
                "rollback_of": _rollback_of.pk if _rollback_of else None,
                "flagged_for_review": flagged,
                "reason": reason,
            },
        )
    return deployment


def get_deployment(user: Any, deployment_id: Any) -> Deployment:
    try:
        pk = int(deployment_id)
    except (TypeError, ValueError):
        raise ApiError(404, f"No deployment {deployment_id!r}.")
    deployment = Deployment.objects.select_related("model_version__model__namespace").filter(pk=pk).first()
    if deployment is None or not access.sees_model(user, deployment.model_version.model):
        raise ApiError(404, f"No deployment {deployment_id}.")
    return deployment


def rollback(user: Any, deployment_id: Any, reason: Any = "", *, now: datetime | None = None) -> Deployment:
    """Roll back the current deployment ``deployment_id``: a new deployment of the version it
    replaced, pointing at it (``rollback_of``). Allowed without a live approval (the version ran
    there before), but then flagged for review."""
    deployment = get_deployment(user, deployment_id)
    now = now or clock.now()
    current = current_deployment(deployment.environment, deployment.target, now)
    if current is None or current.pk != deployment.pk:
        where = f"{deployment.environment}/{deployment.target}" if deployment.target else deployment.environment
        raise ApiError(
            409,
            f"Deployment #{deployment.pk} is not the current one at {where}"
            + (f" (#{current.pk} is)" if current else "")
            + "; only the current deployment can be rolled back.",
        )
    previous = deployment.replaces
    if previous is None:
        raise ApiError(409, f"Deployment #{deployment.pk} replaced nothing: there is nothing to roll back to.")
    previous = Deployment.objects.select_related("model_version__model__namespace").get(pk=previous.pk)
    return record_deployment(
        user,
        previous.model_version,
        deployment.environment,
        deployment.target,
        reason=clean_text(reason, "reason"),
        now=now,
        _rollback_of=deployment,
    )


def deployments_as_of(instant: datetime, queryset: QuerySet[Deployment] | None = None) -> QuerySet[Deployment]:
    """What was deployed where at ``instant``: for every (environment, target), the deployment
    with the latest ``deployed_at`` not after it. One SQL statement (a window function). Pass a
    queryset to narrow the environments/targets considered (filters apply before ranking); filter
    the result for visibility (filters on the result apply after ranking)."""
    base = queryset if queryset is not None else Deployment.objects.all()
    ranked = base.filter(deployed_at__lte=instant).annotate(
        rank=Window(
            RowNumber(),
            partition_by=[F("environment"), F("target")],
            order_by=[F("deployed_at").desc(), F("id").desc()],
        )
    )
    current = ranked.filter(rank=1).values("pk")
    return Deployment.objects.filter(pk__in=current).order_by("environment", "target")
