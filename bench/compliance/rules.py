"""All built-in audit rules over a generated 1M-edge graph with 1,000 production deployments.

    .venv/bin/python -m bench.compliance.rules [--edges 1000000] [--deployments 1000]

The graph comes from bench.graphgen; 1,000 of its runs become producing runs of registered model
versions, each approved and deployed to production (half the approvals then expire or lose the
approver's role, 1% of the upstream datasets are tagged PII), then ``run_rules()`` is timed twice
(first run: findings created and audited; second: the steady state). Target: <= 60 s."""

from __future__ import annotations

import argparse
import os
import time

from bench import common, graphgen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--reuse", action="store_true", help="keep the graph database and reuse it next time")
    args = parser.parse_args()
    common.install_signal_handlers()
    database = f"{common.DB_PREFIX}_compliance_rules"
    t0 = time.perf_counter()
    if args.reuse and common.database_exists(database):
        common.log(f"reusing {database} (its model rows are rebuilt)")
    else:
        graphgen.build(args.edges, database=database, keep=args.reuse)
    common.log(f"graph of {args.edges} edges in {time.perf_counter() - t0:.0f}s")
    common.migrate(database)
    os.environ.update(common.server_env(database))
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from governance.compliance.engine import run_rules
    from governance.promotions.models import Decision, Deployment, PromotionPolicy, PromotionRequest
    from governance.registry.models import ModelVersion, RegisteredModel
    from lineage.models import Dataset, Run

    now = timezone.now()
    from governance.compliance.models import Finding

    # A reused database: start from the bare graph again.
    Finding.objects.all().delete()
    Deployment.objects.filter(target__startswith="svc-").delete()
    Decision.objects.filter(request__model_version__model__name__startswith="bench-model-").delete()
    PromotionRequest.objects.filter(model_version__model__name__startswith="bench-model-").delete()
    ModelVersion.objects.filter(model__name__startswith="bench-model-").delete()
    RegisteredModel.objects.filter(name__startswith="bench-model-").delete()
    User.objects.filter(username__startswith="bench-").delete()
    group = Group.objects.get_or_create(name="approver")[0]
    approver = User.objects.create(username="bench-approver")
    approver.groups.add(group)
    leaver = User.objects.create(username="bench-leaver")  # approved, no longer holds the role
    # Spread over the graph (not only the hub's one-hop consumers): every n-th run.
    every = max(1, Run.objects.count() // args.deployments)
    runs = list(Run.objects.order_by("id").values_list("id", "job__namespace_id"))[::every][: args.deployments]
    scope = PromotionPolicy.scope_key("production", None, None)
    policy = PromotionPolicy.objects.filter(scope=scope).order_by("-active", "-version").first()
    if policy is None:
        policy = PromotionPolicy.objects.create(
            environment="production", scope=scope, eligible_roles=["approver"], created_at=now
        )
    models = RegisteredModel.objects.bulk_create(
        [
            RegisteredModel(namespace_id=ns, name=f"bench-model-{i}", created_at=now, updated_at=now)
            for i, (_, ns) in enumerate(runs)
        ]
    )
    versions = ModelVersion.objects.bulk_create(
        [
            ModelVersion(model=m, version="1", run_id=run_id, created_at=now, updated_at=now)
            for m, (run_id, _) in zip(models, runs, strict=True)
        ]
    )
    requests = PromotionRequest.objects.bulk_create(
        [
            PromotionRequest(
                model_version=v,
                environment="production",
                policy=policy,
                state="approved",
                evidence_digest="0" * 64,
                created_at=now,
                updated_at=now,
                approved_at=now,
                expires_at=now - timezone.timedelta(days=1) if i % 4 == 0 else None,
                approvals_count=1,
            )
            for i, v in enumerate(versions)
        ]
    )
    Decision.objects.bulk_create(
        [
            Decision(
                request=r,
                user=leaver if i % 4 == 1 else approver,
                user_name="x",
                kind="approve",
                role="approver",
                evidence_digest="0" * 64,
                policy_version=1,
                created_at=now,
            )
            for i, r in enumerate(requests)
        ]
    )
    Deployment.objects.bulk_create(
        [
            Deployment(
                model_version=v,
                environment="production",
                target=f"svc-{i}",
                deployed_at=now,
                recorded_at=now,
                promotion=r if i % 10 else None,
            )
            for i, (v, r) in enumerate(zip(versions, requests, strict=True))
        ]
    )
    ids = list(Dataset.objects.values_list("id", flat=True)[::100])
    Dataset.objects.filter(pk__in=ids).update(tags=["pii"])
    timings = []
    reports = []
    for _ in range(2):
        t = time.perf_counter()
        report = run_rules()
        timings.append(round(time.perf_counter() - t, 1))
        reports.append(report.as_dict())
        common.log(f"run_rules: {timings[-1]}s {report.as_dict()}")
    common.write_results(
        "compliance_rules",
        {
            "edges": args.edges,
            "deployments": args.deployments,
            "seconds": timings,
            "reports": reports,
            "machine": common.machine(),
        },
    )


if __name__ == "__main__":
    main()
