"""The database side of "append-only": trigger SQL per vendor and the narrow, transaction-scoped
openings that redaction (and ``manage.py flush``) use.

PostgreSQL: a row trigger refuses UPDATE and DELETE, a statement trigger refuses TRUNCATE. The only
UPDATE let through is one made while the transaction-local setting ``custody.audit_redaction`` is
``on`` *and* that leaves every non-personal column (sequence, hashes, time, actor id, action,
object type/id, request id, extra) unchanged; :func:`governance.audit.services.redact` sets it with
``set_config(..., is_local => true)`` just around its own UPDATE. ``custody.audit_flush`` lets
``manage.py flush`` (test teardown) empty the tables.

SQLite: the same triggers, but the opening is a SQL function ``custody_audit_gate()`` that Custody
registers on each of its own connections and that returns the mode set by this thread for the
duration of a ``with`` block. It is per-connection like ``SET LOCAL``, cannot leak to another
connection as a control-table row could, and fails closed: any other client (the sqlite3 shell,
another program) has no such function, so its UPDATE or DELETE of an entry errors out.

Nothing here stops a database superuser who drops the triggers: the hash chain and the signed
checkpoints are what make that visible.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from django.db import connections
from django.db.backends.signals import connection_created

ENTRY_TABLE = "audit_auditentry"
CHECKPOINT_TABLE = "audit_auditcheckpoint"
REFUSED = "custody: audit trail is append-only"

_sqlite_mode: ContextVar[str] = ContextVar("custody_audit_gate", default="")

# Columns a redaction may never change (everything the chain covers in plain form).
_FIXED = ("sequence", "hash", "prev_hash", "timestamp", "action", "object_type", "object_id", "request_id")
_FIXED_NULLABLE = ("actor_id", "extra")


def _gate() -> str:
    return _sqlite_mode.get()


def _register(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "sqlite":
        connection.connection.create_function("custody_audit_gate", 0, _gate)


def install() -> None:
    connection_created.connect(_register, dispatch_uid="custody-audit-sqlite-gate")
    # Connections opened before the app was ready (rare: during setup) get the function too.
    for conn in connections.all(initialized_only=True):
        if conn.vendor == "sqlite" and conn.connection is not None:
            _register(None, conn)


@contextlib.contextmanager
def opening(mode: str, using: str = "default") -> Iterator[None]:
    """Let this connection redact (``mode="redact"``, inside a transaction) or flush (``"flush"``)."""
    assert mode in {"redact", "flush"}
    conn = connections[using]
    if conn.vendor == "postgresql":
        name = "custody.audit_redaction" if mode == "redact" else "custody.audit_flush"
        local = mode == "redact"
        with conn.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, 'on', %s)", [name, local])
        try:
            yield
        finally:
            if conn.connection is not None and not conn.needs_rollback:
                with contextlib.suppress(Exception), conn.cursor() as cursor:
                    cursor.execute("SELECT set_config(%s, 'off', %s)", [name, local])
    else:
        token = _sqlite_mode.set(mode)
        try:
            yield
        finally:
            _sqlite_mode.reset(token)


# --- trigger SQL (used by migration 0002) ---------------------------------------------------------
def _pg_unchanged() -> str:
    plain = " AND ".join(f"NEW.{c} = OLD.{c}" for c in _FIXED)
    nullable = " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in _FIXED_NULLABLE)
    return f"{plain} AND {nullable}"


POSTGRES_INSTALL = [
    f"""
CREATE OR REPLACE FUNCTION custody_audit_entry_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('custody.audit_redaction', true) = 'on'
       AND {_pg_unchanged()} THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' AND current_setting('custody.audit_flush', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '{REFUSED}: % of entry % refused', TG_OP, OLD.sequence USING ERRCODE = 'restrict_violation';
END
$$""",
    f"""
CREATE OR REPLACE FUNCTION custody_audit_frozen_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') AND current_setting('custody.audit_flush', true) = 'on' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NULL END;
    END IF;
    RAISE EXCEPTION '{REFUSED}: % on % refused', TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END
$$""",
    f"""CREATE TRIGGER custody_audit_entry_append_only BEFORE UPDATE OR DELETE ON {ENTRY_TABLE}
        FOR EACH ROW EXECUTE FUNCTION custody_audit_entry_guard()""",
    f"""CREATE TRIGGER custody_audit_entry_no_truncate BEFORE TRUNCATE ON {ENTRY_TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION custody_audit_frozen_guard()""",
    f"""CREATE TRIGGER custody_audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON {CHECKPOINT_TABLE}
        FOR EACH ROW EXECUTE FUNCTION custody_audit_frozen_guard()""",
    f"""CREATE TRIGGER custody_audit_checkpoint_no_truncate BEFORE TRUNCATE ON {CHECKPOINT_TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION custody_audit_frozen_guard()""",
]
POSTGRES_REMOVE = [
    f"DROP TRIGGER IF EXISTS custody_audit_entry_append_only ON {ENTRY_TABLE}",
    f"DROP TRIGGER IF EXISTS custody_audit_entry_no_truncate ON {ENTRY_TABLE}",
    f"DROP TRIGGER IF EXISTS custody_audit_checkpoint_append_only ON {CHECKPOINT_TABLE}",
    f"DROP TRIGGER IF EXISTS custody_audit_checkpoint_no_truncate ON {CHECKPOINT_TABLE}",
    "DROP FUNCTION IF EXISTS custody_audit_entry_guard()",
    "DROP FUNCTION IF EXISTS custody_audit_frozen_guard()",
]


# One round trip per append on PostgreSQL: take the chain lock, read the head (a fresh snapshot:
# each statement of a VOLATILE function gets one under READ COMMITTED), link, insert.
POSTGRES_APPEND = f"""
CREATE OR REPLACE FUNCTION custody_audit_append(
    p_lock bigint, p_timestamp timestamptz, p_actor_id bigint, p_actor_name text, p_action text,
    p_object_type text, p_object_id text, p_object_repr text, p_before text, p_after text, p_extra text,
    p_request_id text, p_source_ip text, p_body text,
    OUT o_sequence bigint, OUT o_prev_hash text, OUT o_hash text
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    SELECT e.sequence, e.hash INTO o_sequence, o_prev_hash
      FROM {ENTRY_TABLE} e ORDER BY e.sequence DESC LIMIT 1;
    IF NOT FOUND THEN
        o_sequence := 0;
        o_prev_hash := repeat('0', 64);
    END IF;
    o_sequence := o_sequence + 1;
    o_hash := encode(sha256(convert_to(o_prev_hash || p_body, 'UTF8')), 'hex');
    INSERT INTO {ENTRY_TABLE} (sequence, timestamp, actor_id, actor_name, action, object_type, object_id,
                               object_repr, before, after, extra, request_id, source_ip, redacted, prev_hash, hash)
    VALUES (o_sequence, p_timestamp, p_actor_id, p_actor_name, p_action, p_object_type, p_object_id,
            p_object_repr, p_before, p_after, p_extra, p_request_id, p_source_ip, NULL, o_prev_hash, o_hash);
END
$$"""
POSTGRES_APPEND_REMOVE = (
    "DROP FUNCTION IF EXISTS custody_audit_append(bigint, timestamptz, bigint, text, text, text, text, text, "
    "text, text, text, text, text, text)"
)


def install_append_function(schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_APPEND, params=None)


def remove_append_function(schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_APPEND_REMOVE, params=None)


def _sqlite_unchanged() -> str:
    plain = " AND ".join(f"NEW.{c} = OLD.{c}" for c in _FIXED)
    nullable = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in _FIXED_NULLABLE)
    return f"{plain} AND {nullable}"


SQLITE_INSTALL = [
    f"""CREATE TRIGGER custody_audit_entry_no_update BEFORE UPDATE ON {ENTRY_TABLE} FOR EACH ROW
        WHEN NOT (custody_audit_gate() = 'redact' AND {_sqlite_unchanged()})
        BEGIN SELECT RAISE(ABORT, '{REFUSED}: UPDATE of an audit entry refused'); END""",
    f"""CREATE TRIGGER custody_audit_entry_no_delete BEFORE DELETE ON {ENTRY_TABLE} FOR EACH ROW
        WHEN NOT (custody_audit_gate() = 'flush')
        BEGIN SELECT RAISE(ABORT, '{REFUSED}: DELETE of an audit entry refused'); END""",
    f"""CREATE TRIGGER custody_audit_checkpoint_no_update BEFORE UPDATE ON {CHECKPOINT_TABLE} FOR EACH ROW
        BEGIN SELECT RAISE(ABORT, '{REFUSED}: UPDATE of a checkpoint refused'); END""",
    f"""CREATE TRIGGER custody_audit_checkpoint_no_delete BEFORE DELETE ON {CHECKPOINT_TABLE} FOR EACH ROW
        WHEN NOT (custody_audit_gate() = 'flush')
        BEGIN SELECT RAISE(ABORT, '{REFUSED}: DELETE of a checkpoint refused'); END""",
]

SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS custody_audit_entry_no_update",
    "DROP TRIGGER IF EXISTS custody_audit_entry_no_delete",
    "DROP TRIGGER IF EXISTS custody_audit_checkpoint_no_update",
    "DROP TRIGGER IF EXISTS custody_audit_checkpoint_no_delete",
]


def install_triggers(schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    statements = {"postgresql": POSTGRES_INSTALL, "sqlite": SQLITE_INSTALL}.get(vendor)
    if statements is None:
        raise RuntimeError(f"audit triggers are not written for the {vendor} database")
    for sql in statements:
        schema_editor.execute(sql, params=None)


def remove_triggers(schema_editor: Any) -> None:
    statements = {"postgresql": POSTGRES_REMOVE, "sqlite": SQLITE_REMOVE}.get(schema_editor.connection.vendor, [])
    for sql in statements:
        schema_editor.execute(sql, params=None)
