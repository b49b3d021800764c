"""A small builder for lineage + governance rows (ORM only, no ingestion) used by the compliance
tests, and tests of the production lineage closure it relies on."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from governance.compliance.closure import current_production_deployments, lineage_closure

_seq = itertools.count(1)
NOW = timezone.now()


def ago(days: float = 0, hours: float = 0) -> datetime:
    return timezone.now() - timedelta(days=days, hours=hours)


def namespace(name: str = "ns") -> Any:
    from lineage.models import Namespace

    return Namespace.objects.get_or_create(name=name, defaults={"created_at": ago(400), "updated_at": ago(400)})[0]


def dataset(name: str, ns: str = "ns", tags: list[str] | None = None, tags_at: datetime | None = None) -> Any:
    from lineage.models import Dataset

    facet_times = {"tags": (tags_at or ago(400)).isoformat()} if tags else {}
    return Dataset.objects.create(
        namespace=namespace(ns),
        name=name,
        created_at=ago(400),
        updated_at=ago(400),
        tags=tags or [],
        facet_times=facet_times,
    )


def job(name: str, ns: str = "ns") -> Any:
    from lineage.models import Job

    return Job.objects.get_or_create(
        namespace=namespace(ns), name=name, defaults={"created_at": ago(400), "updated_at": ago(400)}
    )[0]


def run(
    job_name: str,
    at: datetime,
    *,
    inputs: list[Any] = (),
    outputs: list[Any] = (),
    ns: str = "ns",
    dirty: bool | None = None,
) -> Any:
    """A run at ``at`` reading ``inputs`` (DatasetVersions or Datasets) and writing a new version of
    each dataset in ``outputs``. Returns the run; its new versions are ``run.new_versions``."""
    from lineage.models import CodeCommit, DatasetVersion, Run, RunInput, RunOutput

    commit = None
    if dirty is not None:
        commit = CodeCommit.objects.create(
            repo_url="https://git.example/r", sha=uuid.uuid4().hex, is_dirty=dirty, first_seen_at=at
        )
    r = Run.objects.create(
        run_id=str(uuid.uuid4()),
        job=job(job_name, ns),
        state="COMPLETE",
        first_event_time=at,
        last_event_time=at,
        created_at=at,
        updated_at=at,
        code_commit=commit,
    )
    for item in inputs:
        if isinstance(item, DatasetVersion):
            RunInput.objects.create(run=r, dataset_id=item.dataset_id, version=item, first_seen_at=at)
        else:
            RunInput.objects.create(run=r, dataset=item, version=None, first_seen_at=at)
    r.new_versions = []
    for ds in outputs:
        v = DatasetVersion.objects.create(dataset=ds, version=f"v{next(_seq)}", created_at=at, run=r)
        RunOutput.objects.create(run=r, dataset=ds, version=v, first_seen_at=at)
        ds.current_version = v
        ds.save(update_fields=["current_version"])
        r.new_versions.append(v)
    return r


def model_version(name: str, producing_run: Any, ns: str = "ns", version: str = "1") -> Any:
    from governance.registry.models import ModelVersion, RegisteredModel

    model = RegisteredModel.objects.get_or_create(
        namespace=namespace(ns), name=name, defaults={"created_at": ago(300), "updated_at": ago(300)}
    )[0]
    return ModelVersion.objects.create(
        model=model, version=version, run=producing_run, created_at=ago(300), updated_at=ago(300)
    )


def approve(
    mv: Any,
    approver: Any,
    *,
    role: str = "approver",
    at: datetime | None = None,
    environment: str = "production",
    expires_at: datetime | None = None,
) -> Any:
    from governance.promotions.models import Decision, PromotionPolicy, PromotionRequest

    at = at or ago(10)
    scope = PromotionPolicy.scope_key(environment, None, None)
    policy = PromotionPolicy.objects.filter(scope=scope, active=True).first() or PromotionPolicy.objects.create(
        environment=environment, scope=scope, eligible_roles=[role], created_at=ago(400)
    )
    req = PromotionRequest.objects.create(
        model_version=mv,
        environment=environment,
        policy=policy,
        state="approved",
        evidence_digest="0" * 64,
        created_at=at,
        updated_at=at,
        decided_at=at,
        approved_at=at,
        expires_at=expires_at,
        approvals_count=1,
    )
    Decision.objects.create(
        request=req,
        user=approver,
        user_name=approver.username,
        kind="approve",
        role=role,
        evidence_digest="0" * 64,
        policy_version=1,
        created_at=at,
    )
    return req


def deploy(
    mv: Any, promotion: Any = None, *, environment: str = "production", target: str = "", at: datetime | None = None
) -> Any:
    from governance.promotions.models import Deployment

    at = at or ago(5)
    return Deployment.objects.create(
        model_version=mv,
        environment=environment,
        target=target,
        deployed_at=at,
        recorded_at=at,
        promotion=promotion,
        approval_required=True,
    )


@pytest.mark.django_db
def test_closure_follows_versions_and_producing_runs_transitively() -> None:
    raw, clean, feats, other = dataset("raw"), dataset("clean"), dataset("features"), dataset("other")
    r1 = run("ingest", ago(100), outputs=[raw])
    r2 = run("clean", ago(90), inputs=[r1.new_versions[0]], outputs=[clean])
    r3 = run("features", ago(80), inputs=[clean], outputs=[feats])  # input without a version
    unrelated = run("other", ago(80), outputs=[other])
    train = run("train", ago(70), inputs=[r3.new_versions[0]])
    mv = model_version("churn", train)
    c = lineage_closure([mv.pk])
    assert c.run_ids == {r1.pk, r2.pk, r3.pk, train.pk}
    assert unrelated.pk not in c.run_ids
    assert {r1.new_versions[0].pk, r2.new_versions[0].pk, r3.new_versions[0].pk} <= c.version_ids
    assert c.dataset_ids == {raw.pk, clean.pk, feats.pk}


@pytest.mark.django_db
def test_current_production_deployment_is_the_newest_per_target(make_user: Any) -> None:
    a = model_version("m", run("t", ago(50)), version="1")
    b = model_version("m", run("t", ago(40)), version="2")
    deploy(a, at=ago(10))
    newest = deploy(b, at=ago(5))
    deploy(a, environment="staging", at=ago(1))
    assert [d.pk for d in current_production_deployments()] == [newest.pk]
