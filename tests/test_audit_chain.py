# ruff: noqa: F401, F811  (fixtures imported from tests.test_audit_helpers)
"""The audit chain: record(), the canonical form, redaction, the append-only triggers and tamper
detection by ``manage.py audit_verify`` and by the SDK's offline verifier."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from django.db import connection, transaction

from governance.audit import chain, guards
from governance.audit.models import AuditCheckpoint, AuditEntry
from governance.audit.services import record, redact, redact_many, snapshot
from governance.audit.signing import create_checkpoint
from governance.audit.verify import verify_chain
from tests.test_audit_helpers import (
    client_for,
    export_lines,
    head,
    offline,
    public_key_pem,
    reader,
    records,
    refused,
    run_verify,
    signing_key,
    triggers_bypassed,
)

pytestmark = [pytest.mark.django_db]


def make_chain(n: int = 6) -> list[AuditEntry]:
    out = []
    for i in range(1, n + 1):
        out.append(
            record(
                f"test.step{i}",
                object_type="test.thing",
                object_id=i,
                object_repr=f"thing {i}",
                before={"n": i - 1, "email": f"user{i}@example.com"} if i % 2 else None,
                after={"n": i, "ratio": 0.1 * i, "big": 1e100, "tags": ["a", "b"], "nested": {"k": [1, None]}},
                extra={"step": i},
                actor=None,
                actor_name=f"tester{i % 2}",
            )
        )
    return out


# --- the chain ------------------------------------------------------------------------------------
def test_record_links_entries_and_verifies(db: Any) -> None:
    start = head()
    entries = make_chain(4)
    assert [e.sequence for e in entries] == list(range(start + 1, start + 5))
    assert entries[0].prev_hash == (chain.GENESIS if start == 0 else AuditEntry.objects.get(sequence=start).hash)
    for earlier, later in itertools.pairwise(entries):
        assert later.prev_hash == earlier.hash
    stored = AuditEntry.objects.get(sequence=entries[1].sequence)
    assert stored.after["big"] == 1e100 and stored.after["ratio"] == pytest.approx(0.2)
    result = verify_chain()
    assert result.ok, result.problem
    assert result.entries == head() and result.head_hash == AuditEntry.objects.get(sequence=head()).hash


def test_server_and_sdk_agree_on_every_hash(db: Any) -> None:
    """The SDK's re-implementation and the server's digest form produce the same hashes; the
    slow reference form documents the scheme and agrees with both."""
    make_chain(5)
    record(
        "test.unicode",
        object_repr='naïve — ünïcödé \u2028 "quoted" \\ \x01',
        actor=None,
        before={"é": "ü", "x": {"z": 1, "a": [True, False]}},
        extra={"ctrl": "\t\n"},
    )
    redact(AuditEntry.objects.order_by("sequence")[1], ["actor_name", "before.email"])
    fast = chain.make_row_hasher()
    for entry in AuditEntry.objects.order_by("sequence"):
        as_export = {
            "sequence": entry.sequence,
            "time": chain.format_time(entry.timestamp),
            "actor_id": entry.actor_id,
            "actor_name": entry.actor_name,
            "action": entry.action,
            "object_type": entry.object_type,
            "object_id": entry.object_id,
            "object_repr": entry.object_repr,
            "before": entry.before,
            "after": entry.after,
            "extra": entry.extra,
            "request_id": entry.request_id,
            "source_ip": entry.source_ip,
            "redacted": entry.redacted,
        }
        reference = chain.sha256_hex(chain.canonical_json(chain.digest_form_reference(as_export)))
        assert offline.entry_body(as_export) == reference
        assert fast(_row(entry)) == reference
        assert chain.link_hash(entry.prev_hash, reference) == entry.hash


def _row(entry: AuditEntry) -> tuple[Any, ...]:
    def text(value: Any) -> str | None:
        return None if value is None else chain.canonical_json(value)

    return (
        entry.sequence,
        entry.timestamp,
        entry.actor_id,
        entry.actor_name,
        entry.action,
        entry.object_type,
        entry.object_id,
        entry.object_repr,
        text(entry.before),
        text(entry.after),
        text(entry.extra),
        entry.request_id,
        entry.source_ip,
        text(entry.redacted),
    )


def test_record_takes_object_and_refuses_bad_input(db: Any, django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("carol")
    entry = record("test.touch", obj=user, before=snapshot(user, ["username", "is_staff"]), actor=user)
    assert (entry.object_type, entry.object_id, entry.object_repr) == ("auth.user", str(user.pk), "carol")
    assert entry.actor_id == user.pk and entry.actor_name == "carol"
    assert entry.before == {"username": "carol", "is_staff": False}
    assert "password" not in snapshot(user)
    with pytest.raises(ValueError):
        record("")
    with pytest.raises(ValueError):
        record("test.bad", after=["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        record("test.nan", after={"x": float("nan")})


def test_an_entry_rolls_back_with_its_transaction(db: Any) -> None:
    before = head()
    with pytest.raises(RuntimeError), transaction.atomic():
        record("test.doomed", actor=None)
        raise RuntimeError("the change failed")
    assert head() == before
    record("test.after", actor=None)
    assert verify_chain().ok


# --- redaction ------------------------------------------------------------------------------------
def test_redaction_replaces_personal_fields_by_their_digest_and_the_chain_verifies(
    db: Any, reader: Any, public_key_pem: str
) -> None:
    entries = make_chain(3)
    target = entries[0]
    original_hash = target.hash
    redacted = redact(target, ["actor_name", "object_repr", "before.email"], reason="gdpr-erasure")
    stored = AuditEntry.objects.get(sequence=target.sequence)
    assert stored.hash == original_hash
    assert stored.actor_name == chain.redacted_value("tester1")
    assert stored.before["email"] == chain.redacted_value("user1@example.com")
    assert stored.before["n"] == 0  # untouched
    assert stored.redacted == ["actor_name", "before.email", "object_repr"]
    assert redacted.redacted == stored.redacted
    last = AuditEntry.objects.order_by("-sequence").first()
    assert last is not None and last.action == "audit.redact"
    assert last.extra == {"reason": "gdpr-erasure", "redacted": {str(target.sequence): stored.redacted}}
    assert verify_chain().ok
    create_checkpoint()
    result = offline.verify_export(export_lines(reader), public_key_pem)
    assert result.ok, result.problem
    # idempotent: redacting again changes nothing and records nothing
    seq = head()
    redact(target, ["actor_name"])
    assert head() == seq


def test_redaction_refuses_unknown_or_plain_fields(db: Any) -> None:
    entry = make_chain(1)[0]
    for bad in (["action"], ["extra.step"], ["before.nope"], ["sequence"]):
        with pytest.raises(ValueError):
            redact(entry, bad)
    done = redact_many([entry.sequence], ["before.nope", "source_ip"], missing_ok=True)
    assert done[0].redacted == ["source_ip"]
    assert verify_chain().ok


def test_a_wrong_digest_in_a_redacted_field_breaks_the_chain(db: Any) -> None:
    entries = make_chain(3)
    redact(entries[1], ["actor_name"])
    with triggers_bypassed() as cursor:
        cursor.execute(
            f"UPDATE {guards.ENTRY_TABLE} SET actor_name = %s WHERE sequence = %s",
            ["sha256:" + "0" * 64, entries[1].sequence],
        )
    result = verify_chain()
    assert not result.ok and result.problem is not None
    assert (result.problem.sequence, result.problem.kind) == (entries[1].sequence, "altered")


# --- append-only in the database ------------------------------------------------------------------
def test_orm_and_raw_sql_cannot_update_or_delete_entries(db: Any) -> None:
    entry = make_chain(2)[0]
    seq = entry.sequence
    qs = AuditEntry.objects.filter(sequence=seq)
    assert "append-only" in str(refused(lambda: qs.update(action="forged")))
    assert "append-only" in str(refused(lambda: qs.update(actor_name="someone else")))  # personal, but no opening
    assert "append-only" in str(refused(lambda: qs.delete()))
    assert "append-only" in str(refused(lambda: AuditEntry.objects.all().delete()))

    def save_changed() -> None:
        entry.action = "forged"
        entry.save()

    refused(save_changed)

    def raw(sql: str) -> Any:
        def run() -> None:
            with connection.cursor() as cursor:
                cursor.execute(sql)

        return run

    refused(raw(f"UPDATE {guards.ENTRY_TABLE} SET hash = 'x' WHERE sequence = {seq}"))
    refused(raw(f"DELETE FROM {guards.ENTRY_TABLE} WHERE sequence = {seq}"))
    if connection.vendor == "postgresql":
        refused(raw(f"TRUNCATE {guards.ENTRY_TABLE}"))
        refused(raw(f"TRUNCATE {guards.CHECKPOINT_TABLE}"))
    assert AuditEntry.objects.get(sequence=seq).action == "test.step1"
    assert verify_chain().ok


def test_the_redaction_opening_still_refuses_changes_to_plain_columns(db: Any) -> None:
    entry = make_chain(1)[0]
    qs = AuditEntry.objects.filter(sequence=entry.sequence)
    for change in ({"action": "x"}, {"hash": "0" * 64}, {"sequence": 999_999}, {"extra": {"step": 9}}, {"actor_id": 5}):

        def attempt(change: dict[str, Any] = change) -> None:
            with guards.opening("redact"):
                qs.update(**change)

        refused(attempt)
    with transaction.atomic(), guards.opening("redact"):
        assert qs.update(source_ip="sha256:" + "1" * 64) == 1  # the opening itself works
    assert not verify_chain().ok  # ...and the chain notices the bogus digest


def test_checkpoints_are_append_only(db: Any, signing_key: str) -> None:
    make_chain(1)
    cp = create_checkpoint()
    assert cp is not None
    qs = AuditCheckpoint.objects.filter(pk=cp.pk)
    refused(lambda: qs.update(head_hash="0" * 64))
    refused(lambda: qs.delete())


# --- tamper detection -----------------------------------------------------------------------------
@pytest.fixture
def signed_chain(db: Any, signing_key: str) -> list[AuditEntry]:
    """Eight entries; a checkpoint at entry 6; entries 7 and 8 not yet signed."""
    entries = make_chain(6)
    create_checkpoint()
    entries += make_chain(2)
    assert verify_chain().ok
    return entries


def _both_name(reader: Any, public_key_pem: str, sequence: int, *kinds: str) -> None:
    code, _, err = run_verify()
    assert code == 1
    assert f"FAILED at entry {sequence}:" in err, err
    server = verify_chain()
    assert server.problem is not None and server.problem.sequence == sequence and server.problem.kind in kinds
    api = reader.get("/api/v1/audit/verify")
    assert api.status_code == 200
    assert api.json()["ok"] is False and api.json()["first_bad_sequence"] == sequence
    result = offline.verify_export(export_lines(reader), public_key_pem)
    assert not result.ok and result.problem is not None
    assert result.problem.sequence == sequence, result.problem
    assert result.problem.kind in kinds, result.problem


def test_untampered_chain_verifies_everywhere(signed_chain: list[AuditEntry], reader: Any, public_key_pem: str) -> None:
    code, out, _ = run_verify()
    assert code == 0 and out.startswith("OK:")
    result = offline.verify_export(export_lines(reader), public_key_pem)
    assert result.ok and result.signatures_checked
    assert result.checkpoints_verified == 1 and result.latest_checkpoint_sequence == signed_chain[5].sequence
    assert result.unanchored == head() - signed_chain[5].sequence


def test_altered_entry_is_named(signed_chain: list[AuditEntry], reader: Any, public_key_pem: str) -> None:
    target = signed_chain[2].sequence
    with triggers_bypassed() as cursor:
        cursor.execute(f"UPDATE {guards.ENTRY_TABLE} SET object_repr = 'innocent' WHERE sequence = %s", [target])
    _both_name(reader, public_key_pem, target, "altered")


def test_altered_json_value_is_named(signed_chain: list[AuditEntry], reader: Any, public_key_pem: str) -> None:
    target = signed_chain[4].sequence
    after = dict(signed_chain[4].after or {})
    after["n"] = 999
    with triggers_bypassed() as cursor:
        cursor.execute(
            f"UPDATE {guards.ENTRY_TABLE} SET after = %s WHERE sequence = %s", [chain.canonical_json(after), target]
        )
    _both_name(reader, public_key_pem, target, "altered")


def test_deleted_entry_is_named(signed_chain: list[AuditEntry], reader: Any, public_key_pem: str) -> None:
    target = signed_chain[3].sequence
    with triggers_bypassed() as cursor:
        cursor.execute(f"DELETE FROM {guards.ENTRY_TABLE} WHERE sequence = %s", [target])
    _both_name(reader, public_key_pem, target, "missing")


def test_reordered_entries_are_named(signed_chain: list[AuditEntry], reader: Any, public_key_pem: str) -> None:
    a, b = signed_chain[2].sequence, signed_chain[3].sequence
    with triggers_bypassed() as cursor:
        cursor.execute(f"UPDATE {guards.ENTRY_TABLE} SET sequence = -1 WHERE sequence = %s", [a])
        cursor.execute(f"UPDATE {guards.ENTRY_TABLE} SET sequence = %s WHERE sequence = %s", [a, b])
        cursor.execute(f"UPDATE {guards.ENTRY_TABLE} SET sequence = %s WHERE sequence = -1", [b])
    _both_name(reader, public_key_pem, a, "broken_link", "altered")


def _forge(sequence: int, prev_hash: str, action: str = "test.forged") -> dict[str, Any]:
    """An entry computed exactly as the server would: the attacker knows the scheme."""
    from django.utils import timezone

    now = timezone.now()
    fields = dict(
        time=chain.format_time(now),
        actor_id=None,
        actor_name="system",
        action=action,
        object_type="",
        object_id="",
        object_repr="",
        before=None,
        after=None,
        extra_json="null",
        request_id="",
        source_ip="",
    )
    body = chain.body_digest(**fields)  # type: ignore[arg-type]
    return {
        "sequence": sequence,
        "timestamp": now,
        "action": action,
        "prev_hash": prev_hash,
        "hash": chain.link_hash(prev_hash, body),
    }


def _insert(cursor: Any, row: dict[str, Any]) -> None:
    cursor.execute(
        f"INSERT INTO {guards.ENTRY_TABLE} (sequence, timestamp, actor_name, action, object_type, object_id, "
        "object_repr, request_id, source_ip, prev_hash, hash) "
        "VALUES (%s, %s, 'system', %s, '', '', '', '', '', %s, %s)",
        [row["sequence"], row["timestamp"], row["action"], row["prev_hash"], row["hash"]],
    )


def test_inserted_entry_is_named(signed_chain: list[AuditEntry], reader: Any, public_key_pem: str) -> None:
    """A well-formed entry slipped in between 3 and 4 (the rest renumbered): the chain breaks at
    the entry after it, whose prev_hash still names the original entry 3."""
    at = signed_chain[3].sequence
    with triggers_bypassed() as cursor:
        cursor.execute(f"UPDATE {guards.ENTRY_TABLE} SET sequence = sequence + 1000 WHERE sequence >= %s", [at])
        cursor.execute(f"UPDATE {guards.ENTRY_TABLE} SET sequence = sequence - 999 WHERE sequence >= %s", [at + 1000])
        _insert(cursor, _forge(at, signed_chain[2].hash))
    _both_name(reader, public_key_pem, at + 1, "broken_link")


def test_forged_entry_with_a_bad_hash_is_named(
    signed_chain: list[AuditEntry], reader: Any, public_key_pem: str
) -> None:
    last = AuditEntry.objects.get(sequence=head())
    row = _forge(last.sequence + 1, last.hash)
    row["hash"] = "f" * 64
    with triggers_bypassed() as cursor:
        _insert(cursor, row)
    _both_name(reader, public_key_pem, row["sequence"], "altered")


def test_rewritten_history_is_caught_by_the_signed_checkpoint(
    signed_chain: list[AuditEntry], reader: Any, public_key_pem: str
) -> None:
    """The attacker alters entry 2 and recomputes every later hash: each link is consistent again,
    but the signed checkpoint at entry 6 no longer matches."""
    first = signed_chain[1].sequence
    last = head()
    with triggers_bypassed() as cursor:
        cursor.execute(
            f"SELECT {', '.join(c for c in _COLS)} FROM {guards.ENTRY_TABLE} WHERE sequence >= %s ORDER BY sequence",
            [first],
        )
        rows = cursor.fetchall()
        prev = signed_chain[0].hash
        for row in rows:
            values = dict(zip(_COLS, row, strict=True))
            if values["sequence"] == first:
                values["object_repr"] = "nothing to see"
            body = chain.body_digest(
                time=chain.format_time(_as_dt(values["timestamp"])),
                actor_id=values["actor_id"],
                actor_name=values["actor_name"],
                action=values["action"],
                object_type=values["object_type"],
                object_id=values["object_id"],
                object_repr=values["object_repr"],
                before=None if values["before"] is None else json.loads(values["before"]),
                after=None if values["after"] is None else json.loads(values["after"]),
                extra_json=values["extra"] or "null",
                request_id=values["request_id"],
                source_ip=values["source_ip"],
            )
            new_hash = chain.link_hash(prev, body)
            cursor.execute(
                f"UPDATE {guards.ENTRY_TABLE} SET object_repr = %s, prev_hash = %s, hash = %s WHERE sequence = %s",
                [values["object_repr"], prev, new_hash, values["sequence"]],
            )
            prev = new_hash
    assert last == head()
    _both_name(reader, public_key_pem, signed_chain[5].sequence, "checkpoint_mismatch")


_COLS = (
    "sequence",
    "timestamp",
    "actor_id",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "before",
    "after",
    "extra",
    "request_id",
    "source_ip",
)


def _as_dt(value: Any) -> Any:
    from django.utils.dateparse import parse_datetime

    return parse_datetime(value) if isinstance(value, str) else value


def test_entries_cut_from_the_end_are_named(signed_chain: list[AuditEntry], reader: Any, public_key_pem: str) -> None:
    """Deleting the signed tail (entries 5..8) leaves a consistent chain; the checkpoint at 6 shows the cut."""
    cut = signed_chain[4].sequence
    with triggers_bypassed() as cursor:
        cursor.execute(f"DELETE FROM {guards.ENTRY_TABLE} WHERE sequence >= %s", [cut])
    _both_name(reader, public_key_pem, cut, "missing")


def test_forged_checkpoint_signature_is_named(signed_chain: list[AuditEntry], reader: Any, public_key_pem: str) -> None:
    cp = AuditCheckpoint.objects.get()
    other = offline_key_signature(cp)
    with triggers_bypassed() as cursor:
        cursor.execute(f"UPDATE {guards.CHECKPOINT_TABLE} SET signature = %s WHERE id = %s", [other, cp.pk])
    _both_name(reader, public_key_pem, cp.sequence, "bad_signature")


def offline_key_signature(cp: AuditCheckpoint) -> str:
    """A signature of the right message by the wrong key."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from governance.audit.signing import checkpoint_message_of

    return base64.b64encode(Ed25519PrivateKey.generate().sign(checkpoint_message_of(cp))).decode()


def test_a_checkpoint_by_an_unknown_key_is_refused(signed_chain: list[AuditEntry], settings: Any) -> None:
    from tests.test_audit_helpers import new_key_pem

    settings.CUSTODY_AUDIT_SIGNING_KEY = new_key_pem()  # the key was replaced without keeping the old one
    result = verify_chain()
    assert not result.ok and result.problem is not None and result.problem.kind == "unknown_key"


def test_a_fresh_database_verifies(db: Any) -> None:
    """Migrating creates guardian's anonymous user: the first entry of every trail."""
    assert list(AuditEntry.objects.values_list("sequence", "action", "actor_name")) == [(1, "user.create", "system")]
    code, out, _ = run_verify()
    assert code == 0 and out.startswith("OK: 1 entry verified")
