"""Every audited action leaves exactly the expected entry: ingestion, tokens, users, roles,
permissions, admin edits (add, change, delete, bulk delete), logins, logouts and failed logins."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from governance.accounts.models import ApiToken
from governance.audit.models import AuditEntry
from governance.audit.verify import verify_chain
from lineage.ingest.service import ingest
from lineage.models import Namespace, RawEvent
from tests.test_audit_helpers import actions_after, entries_after, head

pytestmark = [pytest.mark.django_db]


def run_event(job: str = "train", event_type: str = "START") -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": "2025-06-01T12:00:00.000Z",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "audit-tests", "name": job},
        "inputs": [],
        "outputs": [],
        "producer": "https://example.com/custody-tests",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }


@pytest.fixture(autouse=True)
def _chain_verifies_after_each_test(db: Any) -> Any:
    yield
    result = verify_chain()
    assert result.ok, result.problem


# --- ingestion ------------------------------------------------------------------------------------
def test_posted_event_leaves_one_ingest_entry(api: Any) -> None:
    start = head()
    response = api.post(
        "/api/v1/lineage", data=json.dumps(run_event()), content_type="application/json", HTTP_X_REQUEST_ID="req-42"
    )
    assert response.status_code == 201, response.content
    (entry,) = entries_after(start)
    raw = RawEvent.objects.get()
    assert entry.action == "lineage.ingest"
    assert (entry.object_type, entry.object_id) == ("lineage.rawevent", str(raw.pk))
    assert entry.object_repr == "START audit-tests:train"
    assert entry.actor_id == api.user.pk and entry.actor_name == "admin-user"
    assert entry.request_id == "req-42" == response["X-Request-ID"]
    assert entry.source_ip == "127.0.0.1"
    assert entry.extra == {"count": 1, "events": [[raw.pk, raw.digest]]}
    # a duplicate changes nothing, so records nothing
    again = api.post(
        "/api/v1/lineage", data=json.dumps(run_event() | {"run": raw.payload["run"]}), content_type="application/json"
    )
    assert again.status_code == 201
    assert head() == entry.sequence


def test_batch_leaves_one_entry_with_every_digest(api: Any) -> None:
    start = head()
    events = [run_event("a"), run_event("b"), run_event("c")]
    response = api.post("/api/v1/lineage/batch", data=json.dumps(events), content_type="application/json")
    assert response.status_code in (200, 201), response.content
    (entry,) = entries_after(start)
    stored = list(RawEvent.objects.order_by("pk").values_list("pk", "digest"))
    assert entry.action == "lineage.ingest" and entry.extra == {"count": 3, "events": [list(r) for r in stored]}
    assert entry.object_repr == "3 events" and entry.object_id == f"{stored[0][0]}..{stored[-1][0]}"


def test_rejected_event_leaves_no_entry(api: Any) -> None:
    start = head()
    response = api.post("/api/v1/lineage", data=json.dumps({"eventType": "START"}), content_type="application/json")
    assert response.status_code == 422
    assert head() == start


def test_in_process_ingestion_is_recorded_as_system(db: Any) -> None:
    start = head()
    outcomes = ingest([run_event("x"), run_event("y")])
    assert [o.status for o in outcomes] == ["created", "created"]
    (entry,) = entries_after(start)
    assert entry.action == "lineage.ingest" and entry.actor_id is None and entry.actor_name == "system"
    assert entry.request_id == "" and entry.source_ip == ""


# --- tokens ---------------------------------------------------------------------------------------
def test_token_issue_revoke_change_delete(make_user: Callable[..., Any]) -> None:
    user = make_user("tina")
    start = head()
    token, raw = ApiToken.issue(user, label="ci", scope="ingest")
    (created,) = entries_after(start)
    assert created.action == "token.create" and created.object_id == str(token.pk)
    assert created.after is not None and created.after["scope"] == "ingest" and created.after["label"] == "ci"
    assert "key_hash" not in created.after and raw not in json.dumps(created.after)
    assert created.extra == {"user_id": user.pk}

    start = head()
    assert ApiToken.authenticate(raw) is not None  # last_used_at moves: not an audited change
    assert head() == start

    token.revoke()
    (revoked,) = entries_after(start)
    assert revoked.action == "token.revoke"
    assert revoked.before == {"revoked_at": None} and revoked.after is not None and revoked.after["revoked_at"]

    start = head()
    token.label = "ci-renamed"
    token.save()
    (changed,) = entries_after(start)
    assert changed.action == "token.change"
    assert (changed.before, changed.after) == ({"label": "ci"}, {"label": "ci-renamed"})

    start = head()
    token.delete()
    assert actions_after(start) == ["token.delete"]


def test_create_token_command_is_recorded(make_user: Callable[..., Any]) -> None:
    user = make_user("cmd-user")
    start = head()
    call_command("create_token", "cmd-user", "--label", "from-cli", stdout=io.StringIO())
    (entry,) = entries_after(start)
    assert entry.action == "token.create" and entry.actor_name == "system" and entry.extra == {"user_id": user.pk}


# --- users, roles, permissions --------------------------------------------------------------------
def test_role_grant_and_revoke(django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("rob")
    approver, _ = Group.objects.get_or_create(name="approver")
    auditor, _ = Group.objects.get_or_create(name="auditor")
    start = head()
    user.groups.add(approver, auditor)
    grants = entries_after(start)
    assert [(e.action, e.object_id, e.extra) for e in grants] == [
        ("role.grant", str(user.pk), {"role": "approver"}),
        ("role.grant", str(user.pk), {"role": "auditor"}),
    ]
    start = head()
    user.groups.remove(approver)
    assert [(e.action, e.extra) for e in entries_after(start)] == [("role.revoke", {"role": "approver"})]
    start = head()
    user.groups.clear()
    assert [(e.action, e.extra) for e in entries_after(start)] == [("role.revoke", {"role": "auditor"})]
    start = head()
    approver.user_set.add(user)  # from the group's side
    assert [(e.action, e.object_id, e.extra) for e in entries_after(start)] == [
        ("role.grant", str(user.pk), {"role": "approver"})
    ]
    start = head()
    approver.delete()
    (deleted,) = entries_after(start)
    assert deleted.action == "group.delete" and deleted.before == {"name": "approver", "users": [user.pk]}


def test_create_user_command_is_recorded() -> None:
    start = head()
    call_command("create_user", "newbie", "--role", "admin", stdout=io.StringIO())
    entries = entries_after(start)
    assert [e.action for e in entries] == ["user.create", "role.grant", "user.change"]
    assert entries[1].extra == {"role": "admin"}
    assert (entries[2].before, entries[2].after) == (
        {"is_staff": False, "is_superuser": False},
        {"is_staff": True, "is_superuser": True},
    )


def test_user_flags_and_deletion(django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("flo")
    start = head()
    user.first_name = "Flo"
    user.save()  # not a privilege change
    assert head() == start
    user.is_active = False
    user.save()
    (entry,) = entries_after(start)
    assert (entry.action, entry.before, entry.after) == ("user.change", {"is_active": True}, {"is_active": False})
    start = head()
    user.delete()
    assert actions_after(start) == ["user.delete"]


def test_model_and_object_permissions(django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("perm-user")
    group, _ = Group.objects.get_or_create(name="approver")
    perm = Permission.objects.get(codename="view_namespace", content_type__app_label="lineage")
    start = head()
    user.user_permissions.add(perm)
    group.permissions.add(perm)
    user.user_permissions.remove(perm)
    entries = entries_after(start)
    assert [(e.action, e.object_type, e.extra) for e in entries] == [
        ("user.permission.grant", "auth.user", {"permissions": ["lineage.view_namespace"]}),
        ("group.permission.grant", "auth.group", {"permissions": ["lineage.view_namespace"]}),
        ("user.permission.revoke", "auth.user", {"permissions": ["lineage.view_namespace"]}),
    ]
    now = timezone.now()
    namespace = Namespace.objects.create(name="fraud", created_at=now, updated_at=now)
    start = head()
    assign_perm("lineage.view_namespace", user, namespace)
    (granted,) = entries_after(start)
    assert granted.action == "object_permission.grant"
    assert granted.after == {
        "permission": "lineage.view_namespace",
        "user": user.pk,
        "object_type": "lineage.namespace",
        "object_id": str(namespace.pk),
    }
    start = head()
    remove_perm("lineage.view_namespace", user, namespace)
    (revoked,) = entries_after(start)
    assert revoked.action == "object_permission.revoke" and revoked.before == granted.after


# --- the admin ------------------------------------------------------------------------------------
@pytest.fixture
def admin_client(make_user: Callable[..., Any]) -> Client:
    root = make_user("root", roles=("admin",), is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    client.user = root  # type: ignore[attr-defined]
    return client


def test_admin_add_change_delete_record_before_and_after(admin_client: Client) -> None:
    perm = Permission.objects.get(codename="view_namespace", content_type__app_label="lineage")
    start = head()
    response = admin_client.post("/admin/auth/group/add/", {"name": "reviewers", "permissions": [perm.pk]})
    assert response.status_code == 302, response.content
    group = Group.objects.get(name="reviewers")
    added = entries_after(start)
    assert [e.action for e in added] == ["group.permission.grant", "admin.add"]
    add = added[-1]
    assert (add.object_type, add.object_id, add.actor_name) == ("auth.group", str(group.pk), "root")
    assert add.after == {"id": group.pk, "name": "reviewers", "permissions": [perm.pk]}
    assert add.request_id and add.source_ip == "127.0.0.1"

    start = head()
    response = admin_client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "reviewers-2"})
    assert response.status_code == 302
    changed = entries_after(start)
    assert [e.action for e in changed] == ["group.permission.revoke", "admin.change"]
    change = changed[-1]
    assert change.before == {"id": group.pk, "name": "reviewers", "permissions": [perm.pk]}
    assert change.after == {"id": group.pk, "name": "reviewers-2", "permissions": []}
    assert change.extra is not None and change.extra["message"] == [{"changed": {"fields": ["Name", "Permissions"]}}]

    start = head()
    response = admin_client.post(f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    deleted = entries_after(start)
    assert [e.action for e in deleted] == ["admin.delete", "group.delete"]
    assert deleted[0].before == {"id": group.pk, "name": "reviewers-2", "permissions": []}


def test_admin_bulk_delete_records_each_object(admin_client: Client) -> None:
    groups = [Group.objects.create(name=f"bulk-{i}") for i in range(3)]
    start = head()
    response = admin_client.post(
        "/admin/auth/group/",
        {"action": "delete_selected", "_selected_action": [g.pk for g in groups], "post": "yes"},
    )
    assert response.status_code == 302
    entries = entries_after(start)
    deletions = [e for e in entries if e.action == "admin.delete"]
    assert sorted(e.object_id for e in deletions) == sorted(str(g.pk) for g in groups)
    assert sorted(e.action for e in entries) == ["admin.delete"] * 3 + ["group.delete"] * 3


def test_admin_token_edit_records_the_token_change_and_the_admin_change(
    admin_client: Client, make_user: Callable[..., Any]
) -> None:
    token, _ = ApiToken.issue(make_user("owner"), label="old")
    start = head()
    response = admin_client.post(
        f"/admin/accounts/apitoken/{token.pk}/change/",
        {
            "user": token.user_id,
            "label": "new",
            "scope": "read",
            "expires_at_0": "",
            "expires_at_1": "",
            "revoked_at_0": "",
            "revoked_at_1": "",
        },
    )
    assert response.status_code == 302, response.content
    entries = entries_after(start)
    assert [e.action for e in entries] == ["token.change", "admin.change"]
    assert entries[0].before == {"label": "old", "scope": "full"}
    assert entries[1].before is not None and entries[1].before["label"] == "old"
    assert entries[1].after is not None and entries[1].after["label"] == "new"
    assert "key_hash" not in entries[1].after


# --- logins ---------------------------------------------------------------------------------------
def test_login_logout_and_failed_login(make_user: Callable[..., Any]) -> None:
    user = make_user("lena", roles=("approver",), is_staff=True)
    client = Client()
    start = head()
    response = client.post("/admin/login/", {"username": "lena", "password": "wrong"}, REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 200  # the form again
    (failed,) = entries_after(start)
    assert failed.action == "auth.login_failed" and failed.actor_id is None and failed.actor_name == "anonymous"
    assert failed.object_repr == "lena" and failed.source_ip == "10.1.2.3"
    assert "wrong" not in json.dumps([failed.before, failed.after, failed.extra, failed.object_repr])

    start = head()
    response = client.post("/admin/login/", {"username": "lena", "password": "pw-lena"}, REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 302
    (login,) = entries_after(start)
    assert (login.action, login.actor_id, login.object_id, login.source_ip) == (
        "auth.login",
        user.pk,
        str(user.pk),
        "10.1.2.3",
    )

    start = head()
    response = client.post("/admin/logout/")
    assert response.status_code in (200, 302)
    (logout,) = entries_after(start)
    assert (logout.action, logout.actor_id) == ("auth.logout", user.pk)


def test_entries_are_in_one_transaction_with_the_change(django_user_model: Any) -> None:
    from django.db import transaction

    user = django_user_model.objects.create_user("tx")
    group, _ = Group.objects.get_or_create(name="auditor")
    start = head()
    with pytest.raises(RuntimeError), transaction.atomic():
        user.groups.add(group)
        assert actions_after(start) == ["role.grant"]
        raise RuntimeError("rolled back")
    assert head() == start and not user.groups.exists()


def test_audit_entries_count_matches_sequence(db: Any) -> None:
    assert AuditEntry.objects.count() == head()
