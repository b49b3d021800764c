"""Default promotion policies, so a fresh installation governs production out of the box.

production: 1 approval by an approver, separation of duties, approvals live 30 days, pending
requests expire after 14 days, the version must carry an artifact digest and its producing run;
deployments need a live approval. staging: 1 approval by an approver or a data scientist (not
the requester nor the model's authors); deployments do not need one. Admins change them by
creating new policy versions (POST /api/v1/policies/).
"""

from datetime import timedelta

from django.db import migrations
from django.utils import timezone

DEFAULTS = [
    {
        "environment": "production",
        "approvals_required": 1,
        "eligible_roles": ["approver"],
        "approval_ttl": timedelta(days=30),
        "request_ttl": timedelta(days=14),
        "required_checks": ["artifact_digest", "producing_run"],
        "require_approval_to_deploy": True,
        "description": "Default production policy (created by migration).",
    },
    {
        "environment": "staging",
        "approvals_required": 1,
        "eligible_roles": ["approver", "data_scientist"],
        "approval_ttl": None,
        "request_ttl": timedelta(days=14),
        "required_checks": ["artifact_digest"],
        "require_approval_to_deploy": False,
        "description": "Default staging policy (created by migration).",
    },
]


def create(apps, schema_editor):
    Policy = apps.get_model("promotions", "PromotionPolicy")
    now = timezone.now()
    for values in DEFAULTS:
        scope = f"{values['environment']}|*|*"
        if Policy.objects.filter(scope=scope).exists():
            continue
        Policy.objects.create(scope=scope, version=1, active=True, separation_of_duties=True, created_at=now, **values)


def remove(apps, schema_editor):
    Policy = apps.get_model("promotions", "PromotionPolicy")
    Policy.objects.filter(scope__in=[f"{v['environment']}|*|*" for v in DEFAULTS], version=1, requests=None).delete()


class Migration(migrations.Migration):
    dependencies = [("promotions", "0001_initial")]
    operations = [migrations.RunPython(create, remove)]
