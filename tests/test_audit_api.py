# ruff: noqa: F401, F811  (fixtures imported from tests.test_audit_helpers)
"""The audit API and admin: who may read, filters and pagination, JSON Lines and CSV exports that
the offline verifier accepts, signed checkpoints (Celery task), the public key and key handling."""

from __future__ import annotations

import base64
import csv
import io
import os
import stat
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from governance.audit import signing, tasks
from governance.audit.models import AuditCheckpoint, AuditEntry
from governance.audit.services import record
from tests.test_audit_helpers import (
    client_for,
    export_lines,
    head,
    new_key_pem,
    offline,
    public_key_pem,
    reader,
    records,
    signing_key,
)

pytestmark = [pytest.mark.django_db]


def some_entries(n: int = 5, **kw: Any) -> list[AuditEntry]:
    return [
        record(
            kw.get("action", "test.event"),
            object_type="test.thing",
            object_id=i,
            object_repr=f"thing {i}",
            after={"i": i},
            actor=None,
        )
        for i in range(n)
    ]


# --- who may read ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/api/v1/audit/", "/api/v1/audit/verify", "/api/v1/audit/checkpoints", "/api/v1/audit/1"]
)
def test_reading_needs_an_audit_role(client_for: Callable[..., Any], path: str) -> None:
    assert Client().get(path).status_code == 401
    anonymous = Client().get(path)
    assert anonymous.json()["error"] == "not_authenticated"
    scientist = client_for("sam", ("data_scientist",))
    response = scientist.get(path)
    assert response.status_code == 403 and response.json()["error"] == "permission_denied"
    approver = client_for("ann", ("approver",), is_staff=True)
    assert approver.get(path).status_code == 403
    ingest_only = client_for("bot", ("admin",), scope="ingest")
    assert ingest_only.get(path).status_code == 403
    for role in ("compliance_officer", "auditor", "admin"):
        client = client_for(f"user-{role}", (role,))
        assert client.get(path).status_code in (200, 404), role  # 404: entry 1 may be missing
    read_only = client_for("reader-token", ("auditor",), scope="read")
    assert read_only.get(path).status_code in (200, 404)


def test_public_key_is_for_any_authenticated_caller(
    client_for: Callable[..., Any], signing_key: str, public_key_pem: str
) -> None:
    assert Client().get("/api/v1/audit/public-key").status_code == 401
    response = client_for("sam", ("data_scientist",)).get("/api/v1/audit/public-key")
    assert response.status_code == 200
    body = response.json()
    assert body["algorithm"] == "Ed25519" and body["pem"] == public_key_pem and body["previous"] == []
    assert body["key_id"] == next(iter(offline.load_public_keys(public_key_pem)))


# --- list and filters -----------------------------------------------------------------------------
def test_json_list_is_paginated_by_sequence(reader: Any) -> None:
    some_entries(7)
    total = head()
    seen: list[int] = []
    url: str | None = "/api/v1/audit/?limit=3"
    while url:
        response = reader.get(url)
        assert response.status_code == 200
        body = response.json()
        seen += [e["sequence"] for e in body["results"]]
        url = body["next"]
    assert seen == list(range(1, total + 1))
    one = reader.get(f"/api/v1/audit/{total}").json()
    assert one["sequence"] == total and one["hash"] == AuditEntry.objects.get(sequence=total).hash
    assert reader.get("/api/v1/audit/999999").status_code == 404


def test_filters(reader: Any, make_user: Callable[..., Any]) -> None:
    some_entries(3, action="test.alpha")
    carla = make_user("carla")
    record("test.beta", object_type="test.other", object_id="x1", actor=carla)
    record("test.beta", object_type="test.other", object_id="x2", actor=carla)

    def sequences(**params: Any) -> list[int]:
        response = reader.get("/api/v1/audit/", params)
        assert response.status_code == 200, response.content
        return [e["sequence"] for e in response.json()["results"]]

    alpha = list(AuditEntry.objects.filter(action="test.alpha").values_list("sequence", flat=True))
    beta = list(AuditEntry.objects.filter(action="test.beta").values_list("sequence", flat=True))
    assert sequences(action="test.alpha") == alpha
    assert sequences(action="test.alpha,test.beta") == alpha + beta
    assert sequences(action="test.*") == alpha + beta
    assert sequences(actor="carla") == beta
    assert sequences(actor=str(carla.pk)) == beta
    assert sequences(object_type="test.other", object_id="x2") == beta[1:]
    first = AuditEntry.objects.get(sequence=beta[0]).timestamp
    assert sequences(since=first.isoformat(), action="test.*") == beta
    assert sequences(until=first.isoformat(), action="test.*") == alpha
    assert sequences(since=first.date().isoformat(), until=first.date().isoformat(), action="test.beta") == beta
    for bad in (
        {"since": "yesterday"},
        {"format": "xml"},
        {"limit": "0"},
        {"after_sequence": "-1"},
        {"since": "2030-01-02", "until": "2030-01-01"},
    ):
        response = reader.get("/api/v1/audit/", bad)
        assert response.status_code == 400 and response.json()["error"] == "bad_request", bad


# --- exports --------------------------------------------------------------------------------------
def test_jsonl_export_verifies_offline_against_the_public_key(
    reader: Any, signing_key: str, public_key_pem: str
) -> None:
    some_entries(4)
    first = signing.create_checkpoint()
    some_entries(3)
    second = signing.create_checkpoint()
    some_entries(2)
    lines = export_lines(reader)
    header = records(lines)[0]
    assert header["type"] == "header" and header["format"] == "custody.audit.export"
    assert header["public_keys"][0]["pem"] == public_key_pem
    entries = records(lines, "entry")
    assert [e["sequence"] for e in entries] == list(range(1, head() + 1))
    cps = records(lines, "checkpoint")
    assert [c["sequence"] for c in cps] == [first.sequence, second.sequence]  # type: ignore[union-attr]
    # each checkpoint right after the entry it vouches for
    kinds = [(r["type"], r.get("sequence")) for r in records(lines)]
    assert kinds.index(("checkpoint", first.sequence)) == kinds.index(("entry", first.sequence)) + 1  # type: ignore[union-attr]
    result = offline.verify_export(lines, public_key_pem)
    assert result.ok, result.problem
    assert result.signatures_checked and result.checkpoints_verified == 2
    assert result.unanchored == head() - second.sequence  # type: ignore[union-attr]
    # both signature paths agree
    message = offline.checkpoint_message(cps[0])
    raw_key = next(iter(offline.load_public_keys(public_key_pem).values()))
    signature = base64.b64decode(cps[0]["signature"])
    assert offline.ed25519_verify(raw_key, message, signature, pure=True)
    assert offline.ed25519_verify(raw_key, message, signature)
    # the wrong key is refused
    wrong = (
        serialization.load_pem_private_key(new_key_pem().encode(), None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    refused = offline.verify_export(lines, wrong)
    assert not refused.ok and refused.problem is not None and refused.problem.kind == "unknown_key"
    unchecked = offline.verify_export(lines)
    assert unchecked.ok and not unchecked.signatures_checked


def test_filtered_export_proves_matches_against_the_checkpoint_without_the_rest(
    reader: Any, signing_key: str, public_key_pem: str, make_user: Callable[..., Any]
) -> None:
    some_entries(3)
    target = record("test.needle", object_type="test.secret", object_id="n1", object_repr="private thing", actor=None)
    some_entries(3)
    cp = signing.create_checkpoint()
    some_entries(2)
    lines = export_lines(reader, action="test.needle")
    entries, links = records(lines, "entry"), records(lines, "link")
    assert [e["sequence"] for e in entries] == [target.sequence]
    assert [link["sequence"] for link in links] == list(range(target.sequence + 1, cp.sequence + 1))  # type: ignore[union-attr]
    assert "thing 0" not in "\n".join(lines)  # what was left out is not disclosed
    result = offline.verify_export(lines, public_key_pem)
    assert result.ok and result.entries == 1 and result.checkpoints_verified == 1 and result.unanchored == 0
    # a forged match is caught by the checkpoint
    forged = [line.replace("private thing", "public thing") for line in lines]
    bad = offline.verify_export(forged, public_key_pem)
    assert not bad.ok and bad.problem is not None and bad.problem.sequence == target.sequence
    # so is a tampered link
    tampered = [line.replace('"body":"', '"body":"0', 1)[:-1] if '"type":"link"' in line else line for line in lines]
    assert not offline.verify_export(tampered, public_key_pem).ok


def test_csv_export(reader: Any) -> None:
    record("test.csv", object_repr='=HYPERLINK("http://evil")', after={"a": 1}, actor=None)
    response = reader.get("/api/v1/audit/", {"format": "csv", "action": "test.csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:5] == ["sequence", "time", "actor_id", "actor_name", "action"]
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["action"] == "test.csv" and row["after"] == '{"a":1}'
    assert row["object_repr"].startswith("'=")  # no formula in a spreadsheet


def test_verify_endpoint(reader: Any, signing_key: str) -> None:
    some_entries(3)
    signing.create_checkpoint()
    body = reader.get("/api/v1/audit/verify").json()
    assert body["ok"] is True and body["entries"] == head() and body["checkpoints_verified"] == 1
    assert body["first_bad_sequence"] is None and body["problem"] is None


# --- checkpoints and keys -------------------------------------------------------------------------
def test_checkpoint_task_signs_the_head_once(signing_key: str, public_key_pem: str) -> None:
    from django.conf import settings

    schedule = settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]
    assert schedule["task"] == tasks.checkpoint.name and float(schedule["schedule"]) <= 600  # type: ignore[arg-type]
    from governance.celery import app

    app.loader.import_default_modules()
    assert tasks.checkpoint.name in app.tasks

    some_entries(2)
    assert tasks.checkpoint.apply().get() == head()
    assert tasks.checkpoint.apply().get() is None  # nothing new since
    some_entries(1)
    assert tasks.checkpoint.apply().get() == head()
    cps = list(AuditCheckpoint.objects.order_by("id"))
    assert len(cps) == 2
    public = serialization.load_pem_public_key(public_key_pem.encode())
    for cp in cps:
        assert cp.head_hash == AuditEntry.objects.get(sequence=cp.sequence).hash
        public.verify(base64.b64decode(cp.signature), signing.checkpoint_message_of(cp))  # type: ignore[union-attr]


def test_key_from_file_and_previous_keys(settings: Any, tmp_path: Any, reader: Any) -> None:
    old_pem, new_pem = new_key_pem(), new_key_pem()
    key_file = tmp_path / "audit.pem"
    key_file.write_text(old_pem)
    settings.CUSTODY_AUDIT_SIGNING_KEY = ""
    settings.CUSTODY_AUDIT_SIGNING_KEY_FILE = str(key_file)
    some_entries(2)
    signing.create_checkpoint()
    old_public = signing.current_public_key()
    # rotate: a new key, the old public key kept as trusted
    key_file.write_text(new_pem)
    settings.CUSTODY_AUDIT_PREVIOUS_PUBLIC_KEYS = old_public.pem
    some_entries(1)
    signing.create_checkpoint()
    result = reader.get("/api/v1/audit/verify").json()
    assert result["ok"] and result["checkpoints_verified"] == 2
    body = reader.get("/api/v1/audit/public-key").json()
    assert body["key_id"] != old_public.key_id and body["previous"][0]["key_id"] == old_public.key_id
    both = body["pem"] + body["previous"][0]["pem"]
    assert offline.verify_export(export_lines(reader), both).checkpoints_verified == 2


def test_production_without_a_key_is_refused_clearly(settings: Any, reader: Any, monkeypatch: Any) -> None:
    for name in (signing.KEY_ENV, signing.KEY_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
        setattr(settings, name, "")
    settings.DEBUG = False
    with pytest.raises(ImproperlyConfigured, match=signing.KEY_ENV):
        signing.load_private_key()
    some_entries(1)
    with pytest.raises(ImproperlyConfigured):
        tasks.checkpoint.apply().get()
    response = reader.get("/api/v1/audit/public-key")
    assert response.status_code == 503 and response.json()["error"] == "signing_key_missing"
    assert signing.KEY_ENV in response.json()["detail"]
    # verification still checks the chain, and says the signatures were not checked
    body = reader.get("/api/v1/audit/verify").json()
    assert body["ok"] and body["signatures_checked"] is False and body["warnings"]


def test_development_generates_a_private_key_file_once(settings: Any, tmp_path: Any, monkeypatch: Any) -> None:
    for name in (signing.KEY_ENV, signing.KEY_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
        setattr(settings, name, "")
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path
    first = signing.current_public_key()
    path = tmp_path / signing.DEV_KEY_NAME
    assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert signing.current_public_key().key_id == first.key_id


def test_bad_key_material_is_refused(settings: Any) -> None:
    settings.CUSTODY_AUDIT_SIGNING_KEY = "not a key"
    with pytest.raises(ImproperlyConfigured, match="not an unencrypted PEM"):
        signing.load_private_key()
    from cryptography.hazmat.primitives.asymmetric import ec

    settings.CUSTODY_AUDIT_SIGNING_KEY = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(ImproperlyConfigured, match="Ed25519"):
        signing.load_private_key()


def test_keygen_command(tmp_path: Any) -> None:
    from django.core.management import call_command

    out = io.StringIO()
    call_command("audit_keygen", stdout=out)
    assert "BEGIN PRIVATE KEY" in out.getvalue()
    target = tmp_path / "k.pem"
    call_command("audit_keygen", "--out", str(target), stdout=io.StringIO())
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("audit_keygen", "--out", str(target), stdout=io.StringIO())


# --- the admin ------------------------------------------------------------------------------------
def test_admin_shows_entries_read_only_to_audit_roles(make_user: Callable[..., Any], signing_key: str) -> None:
    entries = some_entries(2)
    signing.create_checkpoint()
    officer = make_user("officer", roles=("compliance_officer",), is_staff=True)
    client = Client()
    client.force_login(officer)
    seq = entries[0].sequence
    assert client.get("/admin/audit/auditentry/").status_code == 200
    page = client.get(f"/admin/audit/auditentry/{seq}/change/")
    assert page.status_code == 200 and entries[0].hash.encode() in page.content
    assert client.get("/admin/audit/auditcheckpoint/").status_code == 200
    assert client.post(f"/admin/audit/auditentry/{seq}/change/", {"action": "forged"}).status_code == 403
    assert client.get(f"/admin/audit/auditentry/{seq}/delete/").status_code == 403
    assert client.post(f"/admin/audit/auditentry/{seq}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/audit/auditentry/add/").status_code == 403
    assert AuditEntry.objects.get(sequence=seq).action == "test.event"

    root = make_user("root", roles=("admin",), is_staff=True, is_superuser=True)
    client.force_login(root)
    assert client.get("/admin/audit/auditentry/add/").status_code == 403  # not even a superuser
    assert client.post(f"/admin/audit/auditentry/{seq}/delete/", {"post": "yes"}).status_code == 403

    approver = make_user("approver-staff", roles=("approver",), is_staff=True)
    client.force_login(approver)
    assert client.get("/admin/audit/auditentry/").status_code == 403
