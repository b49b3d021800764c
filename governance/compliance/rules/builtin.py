"""The built-in audit rules of DESIGN §3."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime

from governance.compliance.closure import current_production_deployments, lineage_closure
from governance.compliance.rules import Context, Hit, Rule

PII_TAGS = frozenset({"pii", "personal", "personal_data", "sensitive"})


def restricted_tags() -> frozenset[str]:
    extra = getattr(settings, "CUSTODY_RESTRICTED_TAGS", ("restricted", "confidential"))
    return PII_TAGS | {t.lower() for t in extra}


def _lower(tags: Any) -> set[str]:
    return {str(t).lower() for t in tags or []}


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return parse_datetime(value)
    return None


def _deployments(context: Context) -> list[Any]:
    if "deployments" not in context.cache:
        context.cache["deployments"] = current_production_deployments()
    return context.cache["deployments"]  # type: ignore[no-any-return]


def _namespace(mv: Any) -> int:
    return int(mv.model.namespace_id)


class DeploymentWithoutApproval(Rule):
    id = "deployment.no_live_approval"
    severity = "critical"
    description = "A production deployment in force without a live (approved, unexpired) promotion."

    def evaluate(self, context: Context) -> Iterator[Hit]:
        for dep in _deployments(context):
            promotion = dep.promotion
            if promotion is not None and promotion.is_live(context.now):
                continue
            state = "none" if promotion is None else promotion.effective_state(context.now)
            yield Hit(
                subject=f"deployment:{dep.pk}",
                title=f"{dep.model_version} is deployed to {dep.environment} without a live approval ({state})",
                namespace_id=_namespace(dep.model_version),
                details={
                    "deployment": dep.pk,
                    "model_version": dep.model_version_id,
                    "promotion_state": state,
                    "break_glass": dep.break_glass,
                },
            )


class TrainingDataChangedSinceApproval(Rule):
    id = "training_data.changed_since_approval"
    severity = "high"
    description = (
        "Training data of a production model had a MAJOR schema change or a new restricted tag since approval."
    )

    def evaluate(self, context: Context) -> Iterator[Hit]:
        from lineage.models import Dataset, RunInput, SchemaChange

        restricted = restricted_tags()
        for dep in _deployments(context):
            promotion = dep.promotion
            approved_at = getattr(promotion, "approved_at", None) or dep.deployed_at
            mv = dep.model_version
            if not mv.run_id:
                continue
            dataset_ids = set(RunInput.objects.filter(run_id=mv.run_id).values_list("dataset_id", flat=True))
            if not dataset_ids:
                continue
            majors = list(
                SchemaChange.objects.filter(dataset_id__in=dataset_ids, level="MAJOR", created_at__gt=approved_at)
                .order_by("created_at")
                .values_list("dataset_id", "pk")
            )
            tagged = []
            for ds in Dataset.objects.filter(pk__in=dataset_ids).only("pk", "tags", "facet_times"):
                tag_time = _time((ds.facet_times or {}).get("tags"))
                if _lower(ds.tags) & restricted and tag_time is not None and tag_time > approved_at:
                    tagged.append(ds.pk)
            if majors or tagged:
                yield Hit(
                    subject=f"model_version:{mv.pk}:{dep.environment}",
                    title=f"Training data of {mv} changed since its approval",
                    namespace_id=_namespace(mv),
                    details={
                        "major_schema_changes": [pk for _, pk in majors],
                        "datasets_newly_restricted": tagged,
                        "approved_at": approved_at.isoformat(),
                    },
                )


class DirtyCommit(Rule):
    id = "model.dirty_commit"
    severity = "medium"
    description = "A registered model version trained from a commit with uncommitted changes."

    def evaluate(self, context: Context) -> Iterator[Hit]:
        from governance.registry.models import ModelVersion

        for mv in ModelVersion.objects.filter(run__code_commit__is_dirty=True).select_related(
            "model", "run__code_commit"
        ):
            commit: Any = mv.run.code_commit  # type: ignore[union-attr]
            yield Hit(
                subject=f"model_version:{mv.pk}",
                title=f"{mv} was trained from a dirty commit {commit.sha[:12]}",
                namespace_id=_namespace(mv),
                details={"model_version": mv.pk, "commit": commit.sha, "repo": commit.repo_url},
            )


class PiiWithoutPrivacySignoff(Rule):
    id = "pii.no_privacy_signoff"
    severity = "high"
    description = "PII-tagged data in the lineage of a production model without a privacy sign-off."

    def evaluate(self, context: Context) -> Iterator[Hit]:
        from governance.compliance.models import PrivacySignoff
        from lineage.models import Dataset

        seen: set[int] = set()
        for dep in _deployments(context):
            mv = dep.model_version
            if mv.pk in seen:
                continue
            seen.add(mv.pk)
            if PrivacySignoff.objects.filter(model_version_id=mv.pk).exists():
                continue
            closure = lineage_closure([mv.pk])
            pii = [
                ds.pk
                for ds in Dataset.objects.filter(pk__in=closure.dataset_ids).only("pk", "tags")
                if _lower(ds.tags) & PII_TAGS
            ]
            if pii:
                yield Hit(
                    subject=f"model_version:{mv.pk}",
                    title=f"{mv} in production uses PII without a privacy sign-off",
                    namespace_id=_namespace(mv),
                    details={"pii_datasets": sorted(pii)},
                )


class StaleIngestion(Rule):
    id = "ingestion.stale"
    severity = "medium"
    description = (
        "A dataset stopped updating on its expected schedule (a FreshnessExpectation, else three times the "
        "median gap of its last ten versions, with at least four versions)."
    )
    FACTOR = 3
    HISTORY = 10

    def evaluate(self, context: Context) -> Iterator[Hit]:
        from governance.compliance.models import FreshnessExpectation
        from lineage.models import Dataset, DatasetVersion

        explicit = {
            e.dataset_id: timedelta(seconds=e.every_seconds + e.grace_seconds)
            for e in FreshnessExpectation.objects.all()
        }
        history: dict[int, list[datetime]] = {}
        rows = DatasetVersion.objects.filter(dataset__is_deleted=False).order_by("dataset_id", "-created_at")
        for dataset_id, created in rows.values_list("dataset_id", "created_at").iterator(chunk_size=10_000):
            times = history.setdefault(dataset_id, [])
            if len(times) < self.HISTORY:
                times.append(created)
        namespaces = dict(
            Dataset.objects.filter(pk__in=list(history) + list(explicit)).values_list("pk", "namespace_id")
        )
        for dataset_id in sorted(set(history) | set(explicit)):
            times = history.get(dataset_id, [])
            allowed = explicit.get(dataset_id)
            if allowed is None:
                if len(times) < 4:
                    continue
                gaps = [(a - b).total_seconds() for a, b in itertools.pairwise(times)]
                median = statistics.median(gaps)
                if median <= 0:
                    continue
                allowed = timedelta(seconds=median * self.FACTOR)
            if not times:
                continue
            late = context.now - times[0]
            if late > allowed:
                yield Hit(
                    subject=f"dataset:{dataset_id}",
                    title=f"Dataset {dataset_id} has not updated for {late} (expected within {allowed})",
                    namespace_id=namespaces.get(dataset_id),
                    details={"last_version_at": times[0].isoformat(), "allowed_seconds": allowed.total_seconds()},
                )


class ApproverLostRole(Rule):
    id = "approval.approver_lost_role"
    severity = "high"
    description = "A live approval was granted by someone who has since lost the role they approved with."

    def evaluate(self, context: Context) -> Iterable[Hit]:
        from governance.permissions.access import roles
        from governance.promotions.models import Decision

        decisions = Decision.objects.filter(kind="approve", stale=False, request__state="approved").select_related(
            "user", "request__model_version__model"
        )
        for decision in decisions:
            request = decision.request
            if not request.is_live(context.now):
                continue
            user = decision.user
            if (
                user is not None
                and user.is_active
                and (user.is_superuser or not decision.role or decision.role in roles(user))
            ):
                continue
            yield Hit(
                subject=f"decision:{decision.pk}",
                title=f"{decision.user_name} approved promotion #{request.pk} as {decision.role or '?'} "
                "and no longer holds that role",
                namespace_id=_namespace(request.model_version),
                details={
                    "decision": decision.pk,
                    "promotion": request.pk,
                    "role": decision.role,
                    "user_active": bool(user and user.is_active),
                },
            )


class BrokenAuditChain(Rule):
    id = "audit.chain_broken"
    severity = "critical"
    description = "The audit trail's hash chain (or a signed checkpoint) does not verify."

    def evaluate(self, context: Context) -> Iterator[Hit]:
        from governance.audit.verify import verify_chain

        result = verify_chain()
        if not result.ok:
            problem = result.problem
            yield Hit(
                subject="audit-chain",
                title=f"The audit chain does not verify: {problem}",
                details={"problem": str(problem)},
            )


BUILTIN_RULES: list[type[Rule]] = [
    DeploymentWithoutApproval,
    TrainingDataChangedSinceApproval,
    DirtyCommit,
    PiiWithoutPrivacySignoff,
    StaleIngestion,
    ApproverLostRole,
    BrokenAuditChain,
]
