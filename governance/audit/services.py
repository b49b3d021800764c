"""Recording to the audit trail: :func:`record` is the one way in.

How to audit an action (governance service layer, retention, anything that changes state)::

    from governance.audit.services import record, snapshot

    with transaction.atomic():
        before = snapshot(request_obj)                 # JSON-safe dict of the row's fields
        request_obj.state = "approved"
        request_obj.save()
        record(
            "promotion.approve",                       # "<noun>.<verb>", lower case
            obj=request_obj,                           # sets object type / id / repr
            before=before,
            after=snapshot(request_obj),
            extra={"policy_version": 3},               # non-personal context only
        )

- Call it **inside the transaction that makes the change**: the entry commits or rolls back with it.
  Call it as late as you can in that transaction: on PostgreSQL it takes the chain's advisory lock,
  which is held until commit, so every other writer of the audit trail waits from then until you
  commit. The transaction must be READ COMMITTED (Django's default).
- The actor, the request id and the source address come from the current HTTP request (the
  middleware puts it in a context variable); pass ``actor=`` (a user or None) or ``request=`` to
  override, and ``actor_name=`` for a non-user actor such as ``"celery:retention"``. Outside a request
  the actor is ``"system"``.
- ``before``/``after`` are JSON objects; each top-level value is committed by its digest so retention
  can later redact it (:func:`redact`). ``extra`` is committed verbatim: keep personal data out of it.
- Reads of restricted assets: ``record("asset.read", obj=dataset, extra={"tags": ["restricted"]})``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models, router, transaction
from django.utils import timezone

from governance.audit import chain, guards
from governance.audit.models import AuditEntry
from governance.core.middleware import client_ip, current_request

# pg_advisory_xact_lock key of the chain head ("custody" in ASCII).
CHAIN_LOCK_KEY = 0x637573746F6479
SYSTEM_ACTOR = "system"
ANONYMOUS_ACTOR = "anonymous"
# Field names never copied into before/after snapshots.
SECRET_FIELDS = frozenset({"password", "key_hash", "secret", "token", "session_key", "session_data"})
MAX_REPR = 1000
MAX_SNAPSHOT_VALUE = 16_384


class _Context:
    pass


CONTEXT: Any = _Context()  # default for ``actor``: take it from the current request


def object_type_of(obj: Any) -> str:
    meta = obj._meta
    return f"{meta.app_label}.{meta.model_name}"


def jsonable(value: Any) -> Any:
    """Plain JSON (dicts, lists, str, int, float, bool, None) from anything DjangoJSONEncoder knows."""
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False))


class _SnapshotEncoder(DjangoJSONEncoder):
    def default(self, o: Any) -> Any:
        try:
            return super().default(o)
        except TypeError:
            if isinstance(o, bytes | memoryview):
                raw = bytes(o)
                return {"$sha256": hashlib.sha256(raw).hexdigest(), "$bytes": len(raw)}
            return str(o)


def _snapshot_value(value: Any) -> Any:
    text = json.dumps(value, cls=_SnapshotEncoder, allow_nan=False)
    if len(text) > MAX_SNAPSHOT_VALUE:
        return {"$sha256": chain.sha256_hex(text), "$chars": len(text)}
    return json.loads(text)


def snapshot(instance: models.Model, fields: Iterable[str] | None = None, *, m2m: bool = True) -> dict[str, Any]:
    """A JSON-safe ``{field: value}`` of a model instance (foreign keys as ids, many-to-many as
    sorted id lists). Secret fields (passwords, token hashes) are left out; a value longer than
    16 KB as JSON (an event payload) is summarised by its SHA-256 and length."""
    wanted = set(fields) if fields is not None else None
    data: dict[str, Any] = {}
    opts = instance._meta
    for field in opts.concrete_fields:
        if field.name in SECRET_FIELDS or (wanted is not None and field.name not in wanted):
            continue
        data[field.name] = _snapshot_value(field.value_from_object(instance))
    if m2m and instance.pk is not None:
        for m2m_field in opts.many_to_many:
            if wanted is not None and m2m_field.name not in wanted:
                continue
            ids = sorted(getattr(instance, m2m_field.attname).values_list("pk", flat=True))
            data[m2m_field.name] = _snapshot_value(ids)
    return data


def _resolve_actor(actor: Any, request: Any) -> tuple[Any, str]:
    if actor is CONTEXT:
        user = getattr(request, "user", None) if request is not None else None
        actor = user if getattr(user, "is_authenticated", False) else None
        if actor is None:
            return None, ANONYMOUS_ACTOR if request is not None else SYSTEM_ACTOR
    if actor is None:
        return None, SYSTEM_ACTOR
    return actor, actor.get_username()


def record(
    action: str,
    *,
    obj: models.Model | None = None,
    object_type: str | None = None,
    object_id: Any = None,
    object_repr: str | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    actor: Any = CONTEXT,
    actor_name: str | None = None,
    request: Any = None,
    extra: Mapping[str, Any] | None = None,
    using: str | None = None,
) -> AuditEntry:
    """Append one entry to the audit trail, in the caller's transaction (see the module docstring)."""
    if not action or len(action) > 100:
        raise ValueError("action must be a non-empty string of at most 100 characters")
    request = request if request is not None else current_request.get()
    user, name = _resolve_actor(actor, request)
    if actor_name:
        name = actor_name
    if obj is not None:
        object_type = object_type or object_type_of(obj)
        object_id = obj.pk if object_id is None else object_id
        object_repr = str(obj) if object_repr is None else object_repr
    before_json, after_json, extra_json = jsonable(before), jsonable(after), jsonable(extra)
    for label, value in (("before", before_json), ("after", after_json), ("extra", extra_json)):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{label} must be a mapping or None")
    fields: dict[str, Any] = {
        "actor": user,
        "actor_name": name[:200],
        "action": action,
        "object_type": (object_type or "")[:100],
        "object_id": "" if object_id is None else str(object_id)[:255],
        "object_repr": (object_repr or "")[:MAX_REPR],
        "before": before_json,
        "after": after_json,
        "extra": extra_json,
        "request_id": str(getattr(request, "request_id", "") or "") if request is not None else "",
        "source_ip": (client_ip(request) or "") if request is not None else "",
    }
    db = using or router.db_for_write(AuditEntry)
    # No savepoint when nested: a failed append must fail the caller's transaction anyway, and a
    # savepoint costs two more round trips.
    with transaction.atomic(using=db, savepoint=False):
        return _append(db, fields)


def _append(db: str, fields: dict[str, Any]) -> AuditEntry:
    conn = connections[db]
    now = timezone.now()
    actor = fields["actor"]
    actor_id = actor.pk if actor is not None else None
    extra_json = chain.canonical_json(fields["extra"])
    body = chain.body_digest(
        time=chain.format_time(now),
        actor_id=actor_id,
        actor_name=fields["actor_name"],
        action=fields["action"],
        object_type=fields["object_type"],
        object_id=fields["object_id"],
        object_repr=fields["object_repr"],
        before=fields["before"],
        after=fields["after"],
        extra_json=extra_json,
        request_id=fields["request_id"],
        source_ip=fields["source_ip"],
    )
    if conn.vendor == "postgresql":
        # Lock, head, link and insert in one round trip (guards.POSTGRES_APPEND); the advisory lock
        # is held until the caller's transaction ends, so appends are serialised in commit order.
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT o_sequence, o_prev_hash, o_hash FROM custody_audit_append(%s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s, %s, %s, %s, %s)",
                [
                    CHAIN_LOCK_KEY,
                    now,
                    actor_id,
                    fields["actor_name"],
                    fields["action"],
                    fields["object_type"],
                    fields["object_id"],
                    fields["object_repr"],
                    None if fields["before"] is None else chain.canonical_json(fields["before"]),
                    None if fields["after"] is None else chain.canonical_json(fields["after"]),
                    None if fields["extra"] is None else extra_json,
                    fields["request_id"],
                    fields["source_ip"],
                    body,
                ],
            )
            sequence, prev_hash, digest = cursor.fetchone()
        entry = AuditEntry(sequence=sequence, timestamp=now, prev_hash=prev_hash, hash=digest, **fields)
        entry._state.adding = False
        entry._state.db = db
        return entry
    # SQLite: the IMMEDIATE transaction already holds the database's write lock.
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT sequence, hash FROM {guards.ENTRY_TABLE} ORDER BY sequence DESC LIMIT 1")
        head = cursor.fetchone()
    sequence, prev_hash = (head[0] + 1, head[1]) if head else (1, chain.GENESIS)
    return AuditEntry.objects.using(db).create(
        sequence=sequence,
        timestamp=now,
        prev_hash=prev_hash,
        hash=chain.link_hash(prev_hash, body),
        **fields,
    )


# --- redaction ------------------------------------------------------------------------------------
def _check_paths(entry: AuditEntry, fields: Iterable[str]) -> list[str]:
    paths: list[str] = []
    for path in fields:
        if path in chain.PERSONAL_SCALARS:
            paths.append(path)
            continue
        head, _, key = path.partition(".")
        if head in chain.PERSONAL_MAPS and key:
            value = getattr(entry, head)
            if value is None or key not in value:
                raise ValueError(f"entry {entry.sequence} has no {path}")
            paths.append(path)
            continue
        raise ValueError(
            f"{path!r} cannot be redacted: only actor_name, object_repr, source_ip, before.<key> and after.<key>"
        )
    return paths


def redact(
    entry: AuditEntry | int,
    fields: Sequence[str],
    *,
    reason: str = "retention",
    actor: Any = CONTEXT,
    actor_name: str | None = None,
    using: str | None = None,
) -> AuditEntry:
    """Replace personal fields of one entry by their digest; the chain still verifies.

    ``fields`` are paths: ``actor_name``, ``object_repr``, ``source_ip``, ``before.<key>``,
    ``after.<key>``. Already-redacted paths are skipped. The redaction is itself recorded
    (action ``audit.redact``). Returns the updated entry."""
    return redact_many([entry], fields, reason=reason, actor=actor, actor_name=actor_name, using=using)[0]


def redact_many(
    entries: Iterable[AuditEntry | int],
    fields: Sequence[str],
    *,
    reason: str = "retention",
    actor: Any = CONTEXT,
    actor_name: str | None = None,
    using: str | None = None,
    missing_ok: bool = False,
) -> list[AuditEntry]:
    """:func:`redact` for many entries, with one ``audit.redact`` entry naming them all.

    With ``missing_ok`` a ``before.<key>``/``after.<key>`` path absent from an entry is skipped
    instead of refused (retention redacts the same keys across entries of different shapes)."""
    db = using or router.db_for_write(AuditEntry)
    done: list[AuditEntry] = []
    changed: dict[int, list[str]] = {}
    with transaction.atomic(using=db):
        for item in entries:
            entry = item if isinstance(item, AuditEntry) else AuditEntry.objects.using(db).get(sequence=item)
            wanted = fields
            if missing_ok:
                wanted = [p for p in fields if p in chain.PERSONAL_SCALARS or _has_key(entry, p)]
            paths = [p for p in _check_paths(entry, wanted) if p not in (entry.redacted or [])]
            if paths:
                _redact_row(db, entry, paths)
                changed[entry.sequence] = sorted(paths)
            done.append(entry)
        if changed:
            record(
                "audit.redact",
                object_type="audit.auditentry",
                object_id=",".join(str(s) for s in changed) if len(changed) <= 20 else f"{len(changed)} entries",
                object_repr=f"{len(changed)} audit entr{'y' if len(changed) == 1 else 'ies'}",
                actor=actor,
                actor_name=actor_name,
                extra={"reason": reason, "redacted": {str(k): v for k, v in changed.items()}},
                using=db,
            )
    return done


def _has_key(entry: AuditEntry, path: str) -> bool:
    head, _, key = path.partition(".")
    value = getattr(entry, head, None) if head in chain.PERSONAL_MAPS else None
    return isinstance(value, dict) and key in value


def _redact_row(db: str, entry: AuditEntry, paths: list[str]) -> None:
    updates: dict[str, Any] = {}
    maps = {name: dict(getattr(entry, name)) for name in chain.PERSONAL_MAPS if getattr(entry, name) is not None}
    for path in paths:
        if path in chain.PERSONAL_SCALARS:
            updates[path] = chain.redacted_value(getattr(entry, path))
        else:
            head, _, key = path.partition(".")
            maps[head][key] = chain.redacted_value(maps[head][key])
            updates[head] = maps[head]
    updates["redacted"] = sorted({*(entry.redacted or []), *paths})
    with guards.opening("redact", using=db):
        rows = AuditEntry.objects.using(db).filter(sequence=entry.sequence).update(**updates)
    if rows != 1:
        raise AuditEntry.DoesNotExist(f"audit entry {entry.sequence} not found")
    for name, value in updates.items():
        setattr(entry, name, value)
