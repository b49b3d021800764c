"""Databases of the governance benchmarks: ``custody_bench_gov_*``, created and migrated here
(not from the shared template, which other benchmarks rebuild), dropped at exit unless kept."""

from __future__ import annotations

import atexit
import contextlib
from typing import Any

import psycopg

from bench import common

PREFIX = f"{common.DB_PREFIX}_gov_"
_created: list[str] = []


def _drop_created() -> None:
    for name in reversed(_created):
        with contextlib.suppress(Exception):
            common.drop_database(name)
    _created.clear()


atexit.register(_drop_created)


def fresh(suffix: str, keep: bool = False) -> str:
    """An empty, migrated database ``custody_bench_gov_<suffix>``."""
    name = PREFIX + suffix
    common.drop_database(name)
    with psycopg.connect(common.PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    if not keep:
        _created.append(name)
    common.migrate(name)
    return name


def connect(database: str) -> psycopg.Connection[Any]:
    return psycopg.connect(common.db_url(database), autocommit=True)


def user_with_token(database: str, username: str, role: str, *namespace_args: str) -> str:
    """``create_user`` + ``create_token``; returns the raw token."""
    common._manage(database, "create_user", username, "--role", role, *namespace_args)
    return common._manage(database, "create_token", username, "--label", "bench").strip().splitlines()[-1].strip()
