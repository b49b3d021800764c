"""The governance admin: approvers decide with a reason through the service layer, compliance
officers read, staff cannot hand themselves permissions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from governance.audit.models import AuditEntry
from governance.permissions.grants import ensure_namespace
from governance.promotions.models import PromotionPolicy, PromotionRequest
from lineage.models import Namespace
from tests.governance_support import client_for, grant, post, train

pytestmark = pytest.mark.django_db


def login(make_user, username, roles, **extra):
    client = Client()
    user = make_user(username, roles=roles, **extra)
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def pending(api, make_user):
    sam = make_user("sam", roles=("data_scientist",))
    grant(sam, "fraud", "write")
    client = client_for(sam)
    train(client)
    created = post(
        client,
        "/api/v1/promotions/",
        {"model": "fraud-detector", "version": "v1", "environment": "production", "namespace": "fraud"},
    )
    assert created.status_code == 201
    return PromotionRequest.objects.get(pk=created.json()["id"])


def test_approver_sees_the_evidence_and_approves_with_a_reason(pending, make_user):
    approver = login(make_user, "ann", ("approver",), is_staff=True)
    listing = approver.get(reverse("admin:promotions_promotionrequest_changelist") + "?open=pending")
    assert listing.status_code == 200 and "fraud-detector" in listing.content.decode()
    page = approver.get(reverse("admin:promotions_promotionrequest_change", args=[pending.pk])).content.decode()
    for expected in ("transactions", "2026-03-01", pending.evidence_digest, "artifact_digest", "Approve", "Reject"):
        assert expected in page, expected
    decide = reverse("admin:promotions_promotionrequest_decide", args=[pending.pk, "reject"])
    approver.post(decide, {"reason": ""})
    assert PromotionRequest.objects.get(pk=pending.pk).state == "pending"  # reason required
    approve = reverse("admin:promotions_promotionrequest_decide", args=[pending.pk, "approve"])
    response = approver.post(approve, {"reason": "checked the data", "evidence_digest": pending.evidence_digest})
    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.state == "approved"
    entry = AuditEntry.objects.get(action="promotion.approve")
    assert entry.actor_name == "ann" and entry.extra["reason"] == "checked the data"


def test_compliance_officer_reads_but_cannot_decide(pending, make_user):
    officer = login(make_user, "olga", ("compliance_officer",), is_staff=True)
    page = officer.get(reverse("admin:promotions_promotionrequest_change", args=[pending.pk]))
    assert page.status_code == 200 and "decide/approve" not in page.content.decode()
    officer.post(reverse("admin:promotions_promotionrequest_decide", args=[pending.pk, "approve"]), {"reason": "x"})
    assert PromotionRequest.objects.get(pk=pending.pk).state == "pending"
    assert officer.get(reverse("admin:promotions_deployment_asof") + "?at=2026-03-01").status_code == 200
    assert officer.get(reverse("admin:promotions_deployment_changelist")).status_code == 200
    assert officer.get(reverse("admin:promotions_promotionpolicy_add")).status_code == 403
    assert officer.get(reverse("admin:registry_modelversion_changelist")).status_code == 200


def test_data_scientists_have_no_governance_admin(pending, make_user):
    staff = login(make_user, "dan", ("data_scientist",), is_staff=True)
    assert staff.get(reverse("admin:promotions_promotionrequest_changelist")).status_code == 403
    assert staff.get(reverse("admin:registry_registeredmodel_changelist")).status_code == 403


def test_admin_creates_a_policy_version_through_the_service(make_user):
    root = login(make_user, "root", ("admin",), is_staff=True, is_superuser=True)
    before = PromotionPolicy.objects.get(environment="production", active=True)
    response = root.post(
        reverse("admin:promotions_promotionpolicy_add"),
        {
            "environment": "production",
            "approvals_required": 3,
            "eligible_roles": '["approver"]',
            "separation_of_duties": "on",
            "required_checks": '["artifact_digest"]',
            "require_approval_to_deploy": "on",
            "description": "stricter",
            "approval_ttl_hours": "48",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    current = PromotionPolicy.objects.get(environment="production", active=True)
    assert current.version == before.version + 1 and current.approvals_required == 3
    assert current.approval_ttl is not None and current.approval_ttl.total_seconds() == 48 * 3600
    assert AuditEntry.objects.filter(action="policy.create").exists()


def test_staff_cannot_grant_themselves_object_permissions(make_user):
    namespace = ensure_namespace("fraud")
    lead = login(make_user, "lead", ("admin",), is_staff=True)  # admin role, not a superuser
    manage = reverse("admin:lineage_namespace_permissions_manage_user", args=[namespace.pk, lead.user.pk])
    overview = reverse("admin:lineage_namespace_permissions", args=[namespace.pk])
    assert lead.get(overview).status_code == 302  # needs guardian's own permissions
    # even with guardian's permissions, not on themselves
    for code in ("view_userobjectpermission", "change_userobjectpermission", "view_groupobjectpermission"):
        lead.user.user_permissions.add(Permission.objects.get(codename=code, content_type__app_label="guardian"))
    response = lead.get(manage)
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")
    other = make_user("other", roles=("data_scientist",))
    assert (
        lead.get(reverse("admin:lineage_namespace_permissions_manage_user", args=[namespace.pk, other.pk])).status_code
        == 200
    )
    root = login(make_user, "root", ("admin",), is_staff=True, is_superuser=True)
    granted = root.post(
        reverse("admin:lineage_namespace_permissions_manage_user", args=[namespace.pk, other.pk]),
        {"permissions": ["view_namespace", "write_namespace"]},
    )
    assert granted.status_code == 302
    from guardian.shortcuts import get_perms

    assert set(get_perms(other, Namespace.objects.get(pk=namespace.pk))) == {"view_namespace", "write_namespace"}
    assert AuditEntry.objects.filter(action="object_permission.grant").count() >= 2
