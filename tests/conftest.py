"""Shared fixtures. Tests talk to the real database (SQLite by default, PostgreSQL with
DATABASE_URL) through the real API; nothing of our own is mocked."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from governance.accounts.models import ApiToken

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CUSTODY_SHARED_DIR", ROOT.parent / "shared"))
EXAMPLES = SHARED / "openlineage-examples"
SPECS = SHARED / "specs"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(trylast=True)  # after `-m` deselection: only tests that will really run count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("postgres") for item in items):
        return
    if _database_vendor() == "postgresql":
        return
    if IN_CI:
        raise pytest.UsageError(
            "CI=true but DATABASE_URL is not PostgreSQL, and tests marked 'postgres' were selected: point "
            "DATABASE_URL at PostgreSQL, or deselect them explicitly with -m 'not postgres'."
        )
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://..."))


def _database_vendor() -> str:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    return "postgresql" if "postgresql" in engine else "sqlite" if "sqlite" in engine else engine


def require_shared(path: Path) -> Path:
    if not path.exists():
        message = f"{path} is missing: ../shared must sit beside the project"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def make_user(django_user_model: Any) -> Callable[..., Any]:
    def make(username: str = "alice", roles: tuple[str, ...] = ("data_scientist",), **extra: Any) -> Any:
        from django.contrib.auth.models import Group

        user = django_user_model.objects.create_user(username=username, password="pw-" + username, **extra)
        for role in roles:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        return user

    return make


@pytest.fixture
def token_for() -> Callable[..., str]:
    def issue(user: Any, scope: str = "full") -> str:
        return ApiToken.issue(user, label="test", scope=scope)[1]

    return issue


@pytest.fixture
def api(db: Any, make_user: Callable[..., Any], token_for: Callable[..., str]) -> APIClient:
    """An API client authenticated with a bearer token of an admin-role user."""
    user = make_user("admin-user", roles=("admin",), is_staff=True, is_superuser=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
    client.user = user  # type: ignore[attr-defined]
    return client


@pytest.fixture
def post_event(api: APIClient) -> Callable[[dict[str, Any]], Any]:
    def post(event: dict[str, Any] | list[Any], path: str = "/api/v1/lineage") -> Any:
        return api.post(path, data=json.dumps(event), content_type="application/json")

    return post


def complete_example_files() -> list[Path]:
    if not EXAMPLES.exists():
        return []
    return sorted(p for p in EXAMPLES.rglob("*.json") if "_partial-templates" not in p.parts)


def load_example(relative: str) -> dict[str, Any]:
    return json.loads((require_shared(EXAMPLES) / relative).read_text())


def table_counts() -> dict[str, int]:
    """Row counts of every lineage table: used to prove a rejected request changed nothing."""
    from django.apps import apps

    return {m._meta.db_table: m.objects.count() for m in apps.get_app_config("lineage").get_models()}


@pytest.fixture
def db_vendor() -> str:
    return connection.vendor
