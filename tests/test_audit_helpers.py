"""Shared fixtures and helpers of the audit-trail tests (imported by tests/test_audit_*.py)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.db import connection, transaction
from rest_framework.test import APIClient

from governance.audit.guards import SQLITE_INSTALL
from governance.audit.models import AuditEntry

try:  # the SDK is installed in development (make install-dev); fall back to the source tree
    from custody import verify as offline
except ImportError:  # pragma: no cover - depends on the environment
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sdk"))
    from custody import verify as offline  # noqa: F401


def new_key_pem() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )


@pytest.fixture
def signing_key(settings: Any) -> str:
    """A fresh signing key in settings (DEBUG is off in tests, so nothing is generated)."""
    pem = new_key_pem()
    settings.CUSTODY_AUDIT_SIGNING_KEY = pem
    return pem


@pytest.fixture
def public_key_pem(signing_key: str) -> str:
    key = serialization.load_pem_private_key(signing_key.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture
def client_for(make_user: Callable[..., Any], token_for: Callable[..., str]) -> Callable[..., APIClient]:
    def make(username: str, roles: tuple[str, ...], scope: str = "full", **extra: Any) -> APIClient:
        user = make_user(username, roles=roles, **extra)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user, scope)}")
        client.user = user  # type: ignore[attr-defined]
        return client

    return make


@pytest.fixture
def reader(client_for: Callable[..., APIClient]) -> APIClient:
    return client_for("olivia", ("compliance_officer",), is_staff=True)


def head() -> int:
    return AuditEntry.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0


def entries_after(sequence: int) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(sequence__gt=sequence).order_by("sequence"))


def actions_after(sequence: int) -> list[str]:
    return [e.action for e in entries_after(sequence)]


def run_verify() -> tuple[int, str, str]:
    """``manage.py audit_verify``: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command("audit_verify", stdout=out, stderr=err)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def export_lines(client: APIClient, **params: str) -> list[str]:
    response = client.get("/api/v1/audit/", {"format": "jsonl", **params})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/x-ndjson")
    text = b"".join(response.streaming_content).decode()
    return text.splitlines()


def records(lines: list[str], kind: str | None = None) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in lines]
    return [r for r in parsed if kind is None or r["type"] == kind]


@contextlib.contextmanager
def triggers_bypassed() -> Iterator[Any]:
    """Act as an attacker with database access: with the append-only triggers out of the way.

    PostgreSQL: ``SET session_replication_role = replica`` (superuser) disables ordinary triggers.
    SQLite: the triggers are dropped, and put back afterwards."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
            try:
                yield cursor
            finally:
                cursor.execute("SET session_replication_role = DEFAULT")
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
                "('audit_auditentry', 'audit_auditcheckpoint')"
            )
            names = [row[0] for row in cursor.fetchall()]
            for name in names:
                cursor.execute(f"DROP TRIGGER {name}")
            try:
                yield cursor
            finally:
                for sql in SQLITE_INSTALL:
                    cursor.execute(sql)


def refused(fn: Callable[[], Any]) -> Exception:
    """Run ``fn`` in a savepoint and return the database error it raised (it must raise one)."""
    from django.db import DatabaseError

    try:
        with transaction.atomic():
            fn()
    except DatabaseError as exc:
        return exc
    raise AssertionError("the database accepted a change to the audit trail")
