"""Authentication on every endpoint but /healthz; tokens stored only as hashes; token scopes."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from governance.accounts.models import ApiToken, hash_token
from tests.conftest import load_example

pytestmark = pytest.mark.django_db
EVENT = "marquez/open_lineage/event_simple.json"


def test_healthz_needs_no_token(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response["X-Request-ID"]


@pytest.mark.parametrize("path", ["/api/v1/lineage", "/api/v1/lineage/batch"])
def test_posting_without_a_token_is_401(client, path):
    response = client.post(path, data=json.dumps(load_example(EVENT)), content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_or_revoked_token_is_401(make_user, token_for):
    user = make_user()
    raw = token_for(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer cust_not-a-real-token")
    assert client.get("/api/v1/lineage?nodeId=job:a:b").status_code == 401
    ApiToken.objects.get(key_hash=hash_token(raw)).revoke()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.post("/api/v1/lineage", data=json.dumps(load_example(EVENT)), content_type="application/json")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_only_the_hash_of_a_token_is_stored(make_user, capsys):
    make_user("carol")
    call_command("create_token", "carol", "--label", "laptop")
    raw = capsys.readouterr().out.strip()
    assert raw.startswith("cust_") and len(raw) > 40
    token = ApiToken.objects.get(label="laptop")
    assert token.key_hash == hash_token(raw) and raw not in token.key_hash
    assert all(raw not in str(value) for value in ApiToken.objects.values().first().values())


def test_create_user_assigns_roles_and_password(monkeypatch):
    from django.contrib.auth import get_user_model

    monkeypatch.setenv("DAVE_PW", "s3cret-pass-word")
    call_command("create_user", "dave", "--role", "approver", "--password-from-env", "DAVE_PW")
    dave = get_user_model().objects.get(username="dave")
    assert dave.check_password("s3cret-pass-word")
    assert list(dave.groups.values_list("name", flat=True)) == ["approver"]


def test_ingest_only_token_can_post_but_not_read(make_user, token_for):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(make_user(), scope='ingest')}")
    posted = client.post("/api/v1/lineage", data=json.dumps(load_example(EVENT)), content_type="application/json")
    assert posted.status_code == 201
    read = client.get("/api/v1/lineage?nodeId=job:my-scheduler-namespace:myjob")
    assert read.status_code == 403
    assert "ingest-only" in read.json()["detail"]


def test_read_only_token_cannot_post(make_user, token_for):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(make_user(), scope='read')}")
    posted = client.post("/api/v1/lineage", data=json.dumps(load_example(EVENT)), content_type="application/json")
    assert posted.status_code == 403
    assert "read-only" in posted.json()["detail"]


def test_request_id_is_echoed(api):
    response = api.get("/healthz", HTTP_X_REQUEST_ID="trace-123")
    assert response["X-Request-ID"] == "trace-123"


def test_write_policy_refuses_events_and_stores_nothing(api):
    from lineage.access import set_write_policy
    from tests.conftest import table_counts

    def only_fraud(user, auth, event):
        return None if event.job_namespace == "fraud" else f"no write access to namespace {event.job_namespace}"

    previous = set_write_policy(only_fraud)
    try:
        before = table_counts()
        refused = api.post("/api/v1/lineage", data=json.dumps(load_example(EVENT)), content_type="application/json")
        assert refused.status_code == 403
        assert refused.json()["error"] == "permission_denied"
        assert "my-scheduler-namespace" in refused.json()["detail"]
        assert table_counts() == before
        allowed = load_example(EVENT)
        allowed["job"]["namespace"] = "fraud"
        batch = api.post(
            "/api/v1/lineage/batch", data=json.dumps([load_example(EVENT), allowed]), content_type="application/json"
        )
        assert batch.json()["summary"]["successful"] == 1
        assert batch.json()["failed_events"][0]["index"] == 0
    finally:
        set_write_policy(previous)
