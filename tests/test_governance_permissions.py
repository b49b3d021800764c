"""Roles, namespace grants, token limits and self-service namespaces, through the commands and
the ingestion write policy."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from guardian.shortcuts import get_perms
from rest_framework.test import APIClient

from governance.accounts.models import ApiToken, hash_token
from governance.audit.models import AuditEntry
from governance.permissions import access
from governance.permissions.grants import ensure_namespace, grant_model, revoke_namespace
from governance.registry.models import RegisteredModel
from lineage.models import Namespace
from tests.governance_support import client_for, dataset, grant, model_output, new_run_id, post, run_event

pytestmark = pytest.mark.django_db


def test_create_user_grants_namespaces_by_role(capsys):
    call_command("create_user", "dana", "--role", "data_scientist", "--namespace", "fraud", "--namespace", "risk")
    call_command("create_user", "abe", "--role", "approver", "--namespace", "fraud")
    assert "write on fraud, write on risk" in capsys.readouterr().out
    users = get_user_model().objects
    fraud = Namespace.objects.get(name="fraud")
    assert set(get_perms(users.get(username="dana"), fraud)) == {"view_namespace", "write_namespace"}
    assert set(get_perms(users.get(username="abe"), fraud)) == {"view_namespace"}
    call_command("create_user", "vic", "--role", "data_scientist", "--namespace", "risk", "--namespace-level", "view")
    assert set(get_perms(users.get(username="vic"), Namespace.objects.get(name="risk"))) == {"view_namespace"}
    grants = AuditEntry.objects.filter(action="object_permission.grant")
    assert grants.count() == 6
    with pytest.raises(CommandError):
        call_command("create_user", "eve", "--role", "data_scientist", "--namespace", "<bad>")


def test_create_token_limited_to_a_namespace(capsys, make_user):
    make_user("ci", roles=("data_scientist",))
    call_command("create_token", "ci", "--scope", "ingest", "--namespace", "fraud", "--label", "ci")
    raw = capsys.readouterr().out.strip()
    token = ApiToken.objects.get(key_hash=hash_token(raw))
    assert [ns.name for ns in token.namespaces.all()] == ["fraud"]
    assert AuditEntry.objects.filter(action="token.limit", object_id=str(token.pk)).exists()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    # an ingest-only token limited to fraud: posts to fraud (whatever the user's own rights), nowhere else
    assert post(client, "/api/v1/lineage", run_event("fraud", "job", new_run_id())).status_code == 201
    refused = post(client, "/api/v1/lineage", run_event("risk", "job", new_run_id()))
    assert refused.status_code == 403 and "limited to namespace(s) fraud" in refused.json()["detail"]
    model = [model_output("risk", "scorer", "1")]
    refused = post(client, "/api/v1/lineage", run_event("fraud", "job", new_run_id(), outputs=model))
    assert refused.status_code == 403  # registers a model version elsewhere
    elsewhere = run_event("fraud", "job", new_run_id(), inputs=[dataset("risk", "a")], outputs=[dataset("s3://b", "c")])
    assert post(client, "/api/v1/lineage", elsewhere).status_code == 201  # data sources are no namespace write
    assert client.get("/api/v1/models/").status_code == 403  # still ingest-only


def test_data_scientists_write_only_where_granted(api, make_user):
    post(api, "/api/v1/lineage", run_event("risk", "owned-elsewhere", new_run_id()))  # risk exists now
    sam = make_user("sam", roles=("data_scientist",))
    grant(sam, "fraud", "write")
    client = client_for(sam)
    assert post(client, "/api/v1/lineage", run_event("fraud", "train", new_run_id())).status_code == 201
    refused = post(client, "/api/v1/lineage", run_event("risk", "train", new_run_id()))
    assert refused.status_code == 403 and "no write access to namespace 'risk'" in refused.json()["detail"]
    # view is not write
    grant(sam, "risk", "view")
    assert post(client_for(sam), "/api/v1/lineage", run_event("risk", "t", new_run_id())).status_code == 403
    revoke_namespace(sam, Namespace.objects.get(name="fraud"), "write")
    sam = get_user_model().objects.get(pk=sam.pk)
    assert post(client_for(sam), "/api/v1/lineage", run_event("fraud", "t2", new_run_id())).status_code == 403
    # a read-only token cannot post at all, an approver cannot write without a grant
    assert (
        post(client_for(sam, scope="read"), "/api/v1/lineage", run_event("fraud", "t", new_run_id())).status_code == 403
    )
    approver = make_user("ann", roles=("approver",))
    assert post(client_for(approver), "/api/v1/lineage", run_event("risk", "t", new_run_id())).status_code == 403


def test_new_namespaces_are_claimed_by_their_creator(api, make_user, settings):
    sam = make_user("sam", roles=("data_scientist",))
    client = client_for(sam)
    event = run_event("sam-team", "train", new_run_id(), inputs=[dataset("lake", "raw")])
    assert post(client, "/api/v1/lineage", event).status_code == 201
    sam = get_user_model().objects.get(pk=sam.pk)
    assert set(get_perms(sam, Namespace.objects.get(name="sam-team"))) == {"view_namespace", "write_namespace"}
    assert get_perms(sam, Namespace.objects.get(name="lake")) == []  # a data source: never claimed
    # someone else cannot take it over, nor write into the lake sam merely read
    other = make_user("olaf", roles=("data_scientist",))
    assert post(client_for(other), "/api/v1/lineage", run_event("sam-team", "x", new_run_id())).status_code == 403
    assert post(client, "/api/v1/lineage", run_event("lake", "x", new_run_id())).status_code == 403
    # strict mode: only admins create namespaces
    settings.CUSTODY_CLAIM_NEW_NAMESPACES = False
    refused = post(client_for(other), "/api/v1/lineage", run_event("brand-new", "x", new_run_id()))
    assert refused.status_code == 403 and "does not exist" in refused.json()["detail"]
    assert not Namespace.objects.filter(name="brand-new").exists()


def test_model_level_permissions(api, make_user):
    ensure_namespace("fraud")
    assert post(api, "/api/v1/models/", {"namespace": "fraud", "name": "scorer"}).status_code == 201
    model = RegisteredModel.objects.get(name="scorer")
    guest = make_user("gus", roles=("data_scientist",))
    assert client_for(guest).get("/api/v1/models/scorer").status_code == 404
    grant_model(guest, model, "view")
    guest = get_user_model().objects.get(pk=guest.pk)
    assert client_for(guest).get("/api/v1/models/scorer").status_code == 200
    denied = post(client_for(guest), "/api/v1/models/scorer/versions/", {"version": "1"})
    assert denied.status_code == 403
    grant_model(guest, model, "write")
    guest = get_user_model().objects.get(pk=guest.pk)
    assert post(client_for(guest), "/api/v1/models/scorer/versions/", {"version": "1"}).status_code == 201
    # the model's namespace lineage stays hidden
    assert client_for(guest).get("/api/v1/namespaces/fraud").status_code == 404
    assert access.sees_namespace(guest, model.namespace_id) is False


def test_roles_reading_everything(make_user):
    ensure_namespace("a")
    for role in ("admin", "compliance_officer", "auditor", "approver"):
        assert access.visible_namespace_ids(make_user(f"u-{role}", roles=(role,))) is None, role
    assert access.visible_namespace_ids(make_user("ds", roles=("data_scientist",))) == frozenset()


def test_grant_command_for_groups_and_models(make_user, capsys):
    sam = make_user("sam", roles=("data_scientist",))
    call_command("grant", "--group", "data_scientist", "--namespace", "file")
    assert "Granted view on namespace file to data_scientist" in capsys.readouterr().out
    sam = get_user_model().objects.get(pk=sam.pk)
    assert Namespace.objects.get(name="file").pk in access.visible_namespace_ids(sam)
    call_command("grant", "--group", "data_scientist", "--namespace", "file", "--revoke")
    sam = get_user_model().objects.get(pk=sam.pk)
    assert access.visible_namespace_ids(sam) == frozenset()
    ensure_namespace("fraud")
    RegisteredModel.objects.create(
        namespace=Namespace.objects.get(name="fraud"), name="m", created_at=sam.date_joined, updated_at=sam.date_joined
    )
    call_command("grant", "--user", "sam", "--model", "fraud:m", "--level", "write")
    model = RegisteredModel.objects.get(name="m")
    assert access.writes_model(get_user_model().objects.get(pk=sam.pk), model)
    with pytest.raises(CommandError):
        call_command("grant", "--user", "nobody", "--namespace", "x")
    with pytest.raises(CommandError):
        call_command("grant", "--user", "sam", "--model", "nope")
