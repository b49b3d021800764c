"""The hash chain: canonical form, field digests, entry hashes.

This module is the single definition of what an audit entry's hash covers. The SDK's offline
verifier (``sdk/custody/verify.py``) re-implements exactly the same rules without Django; the test
suite checks that both agree on every entry they see.

Scheme (version 1)
------------------
``fd(value) = hex(SHA-256(canonical_json(value)))`` where ``canonical_json`` is JSON with sorted keys,
``","`` and ``":"`` separators, UTF-8 (no ASCII escaping) and no NaN/Infinity.

An entry's *digest form* is a JSON object with keys in sorted order::

    action      the action string                    (plain)
    actor_id    integer or null                      (plain)
    actor_name  fd(actor_name)                       (personal: committed by digest)
    after       null, or {key: fd(value)} per key    (each value personal: committed by digest)
    before      null, or {key: fd(value)} per key    (each value personal: committed by digest)
    extra       the extra object itself, or null     (plain: never put personal data in ``extra``)
    object_id   string                               (plain)
    object_repr fd(object_repr)                      (personal)
    object_type string                               (plain)
    request_id  string                               (plain)
    source_ip   fd(source_ip)                        (personal)
    time        "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC)  (plain)
    v           1

``body = hex(SHA-256(canonical_json(digest form)))`` and
``hash = hex(SHA-256(ascii(prev_hash + body)))``; the first entry's ``prev_hash`` is 64 zeros.

The sequence number is not in the body: an entry's place in the chain is fixed by ``prev_hash``
(each hash covers every entry before it), and the verifier checks that sequences are contiguous.
Leaving it out lets the writer compute the body before it knows its place, so that on PostgreSQL
the append is a single round trip (``custody_audit_append``: lock, read the head, link, insert) while
the caller's transaction holds the chain lock for as short a time as possible.

Because personal values enter the chain only through their digest, retention can *redact* one: the
stored value is replaced by ``"sha256:" + fd(value)`` and the field's path (``actor_name``,
``source_ip``, ``object_repr``, ``before.<key>``, ``after.<key>``) is listed in the entry's
``redacted`` column; the verifier then takes the digest from the stored text instead of computing it,
and the chain verifies unchanged. Replacing a value by anything but its true digest breaks the chain.

Splitting ``body`` from ``hash`` lets a filtered export prove an entry against a signed checkpoint
without disclosing the entries in between: each omitted entry is shown only as ``(sequence, body)``,
enough to recompute every link up to the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

VERSION = 1
GENESIS = "0" * 64
REDACTED_PREFIX = "sha256:"
PERSONAL_SCALARS = ("actor_name", "object_repr", "source_ip")
PERSONAL_MAPS = ("before", "after")

_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_sha256 = hashlib.sha256


def canonical_json(value: Any) -> str:
    """Sorted keys, compact separators, UTF-8, no NaN: the one text form that is hashed."""
    return _encode(value)


def sha256_hex(text: str) -> str:
    return _sha256(text.encode("utf-8")).hexdigest()


class _DigestCache:
    """Digests of repeated scalar values (actor names, addresses, small field values) are
    computed once per verification run: most entries repeat a handful of them."""

    __slots__ = ("_items", "_limit")

    def __init__(self, limit: int = 32_768) -> None:
        self._items: dict[tuple[type, Any], str] = {}
        self._limit = limit

    def fd(self, value: Any) -> str:
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            key = (kind, value)
            found = self._items.get(key)
            if found is None:
                found = _sha256(_encode(value).encode("utf-8")).hexdigest()
                if len(self._items) >= self._limit:
                    self._items.clear()
                self._items[key] = found
            return found
        return _sha256(_encode(value).encode("utf-8")).hexdigest()


_default_cache = _DigestCache()


def field_digest(value: Any) -> str:
    return _default_cache.fd(value)


def format_time(value: datetime) -> str:
    """UTC with microseconds and a ``Z``: the only time form that is hashed."""
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:26] + "Z"


def _scalar_digest(name: str, value: str, redacted: frozenset[str], fd: Any) -> str:
    if name in redacted:
        return _digest_from_redacted(name, value)
    return str(fd(value))


def _digest_from_redacted(path: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(REDACTED_PREFIX) or len(value) != len(REDACTED_PREFIX) + 64:
        raise ValueError(f"{path} is marked redacted but does not hold a sha256 digest")
    return value[len(REDACTED_PREFIX) :]


def _map_form(name: str, value: Mapping[str, Any] | None, redacted: frozenset[str], fd: Any) -> str:
    if value is None:
        return "null"
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a JSON object or null")
    parts = []
    for key in sorted(value):
        path = f"{name}.{key}"
        digest = _digest_from_redacted(path, value[key]) if path in redacted else fd(value[key])
        parts.append(f'{encode_basestring(key)}:"{digest}"')
    return "{" + ",".join(parts) + "}"


def body_digest(
    *,
    time: str,
    actor_id: int | None,
    actor_name: str,
    action: str,
    object_type: str,
    object_id: str,
    object_repr: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    extra_json: str,
    request_id: str,
    source_ip: str,
    redacted: Iterable[str] = (),
    fd: Any = None,
) -> str:
    """SHA-256 of the digest form. ``extra_json`` is the canonical JSON text of ``extra`` ("null" if none)."""
    fd = fd or field_digest
    red = frozenset(redacted) if redacted else frozenset()
    text = "".join(
        (
            '{"action":',
            encode_basestring(action),
            ',"actor_id":',
            "null" if actor_id is None else str(int(actor_id)),
            ',"actor_name":"',
            _scalar_digest("actor_name", actor_name, red, fd),
            '","after":',
            _map_form("after", after, red, fd),
            ',"before":',
            _map_form("before", before, red, fd),
            ',"extra":',
            extra_json,
            ',"object_id":',
            encode_basestring(object_id),
            ',"object_repr":"',
            _scalar_digest("object_repr", object_repr, red, fd),
            '","object_type":',
            encode_basestring(object_type),
            ',"request_id":',
            encode_basestring(request_id),
            ',"source_ip":"',
            _scalar_digest("source_ip", source_ip, red, fd),
            '","time":"',
            time,
            '","v":1}',
        )
    )
    return _sha256(text.encode("utf-8")).hexdigest()


def make_row_hasher() -> Callable[[Sequence[Any]], str]:
    """A fast :func:`body_digest` for verification: takes a row ``(sequence, time, actor_id,
    actor_name, action, object_type, object_id, object_repr, before_json, after_json, extra_json,
    request_id, source_ip, redacted_json, ...)`` with the JSON columns as stored text and the time
    as text or datetime, and returns the body digest. Same result as :func:`body_digest` (tested);
    digests of repeated strings are computed once per hasher."""
    cache: dict[str, str] = {}
    sha = _sha256
    enc = encode_basestring
    loads = json.loads
    general = _DigestCache().fd

    def sfd(value: str) -> str:
        found = cache.get(value)
        if found is None:
            found = sha(enc(value).encode("utf-8")).hexdigest()
            if len(cache) >= 32_768:
                cache.clear()
            cache[value] = found
        return found

    def mapping(text: str | None) -> str:
        if text is None:
            return "null"
        value = loads(text)
        if type(value) is not dict:
            raise ValueError("before/after must be a JSON object or null")
        parts = []
        for key in sorted(value):
            item = value[key]
            parts.append(f'{enc(key)}:"{sfd(item) if type(item) is str else general(item)}"')
        return "{" + ",".join(parts) + "}"

    def body(row: Sequence[Any]) -> str:
        if row[13] is not None:  # redacted fields: the general path
            return body_digest(
                time=row[1] if type(row[1]) is str else format_time(row[1]),
                actor_id=row[2],
                actor_name=row[3],
                action=row[4],
                object_type=row[5],
                object_id=row[6],
                object_repr=row[7],
                before=None if row[8] is None else loads(row[8]),
                after=None if row[9] is None else loads(row[9]),
                extra_json="null" if row[10] is None else row[10],
                request_id=row[11],
                source_ip=row[12],
                redacted=loads(row[13]),
                fd=general,
            )
        actor_id = row[2]
        time = row[1]
        get = cache.get
        text = (
            f'{{"action":{enc(row[4])},"actor_id":{"null" if actor_id is None else int(actor_id)},'
            f'"actor_name":"{get(row[3]) or sfd(row[3])}",'
            f'"after":{"null" if row[9] is None else mapping(row[9])},'
            f'"before":{"null" if row[8] is None else mapping(row[8])},'
            f'"extra":{"null" if row[10] is None else row[10]},"object_id":{enc(row[6])},'
            f'"object_repr":"{get(row[7]) or sfd(row[7])}","object_type":{enc(row[5])},'
            f'"request_id":{enc(row[11])},'
            f'"source_ip":"{get(row[12]) or sfd(row[12])}",'
            f'"time":"{time if type(time) is str else format_time(time)}","v":1}}'
        )
        return sha(text.encode("utf-8")).hexdigest()

    return body


def link_hash(prev_hash: str, body: str) -> str:
    return _sha256((prev_hash + body).encode("ascii")).hexdigest()


def digest_form_reference(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The digest form as a Python object (slow, for documentation and tests): its canonical JSON
    hashes to the same ``body`` as :func:`body_digest`."""
    red = frozenset(entry.get("redacted") or ())

    def digest(path: str, value: Any) -> str:
        return _digest_from_redacted(path, value) if path in red else sha256_hex(canonical_json(value))

    def mapping(name: str) -> dict[str, str] | None:
        value = entry.get(name)
        return None if value is None else {k: digest(f"{name}.{k}", v) for k, v in value.items()}

    return {
        "action": entry["action"],
        "actor_id": entry["actor_id"],
        "actor_name": digest("actor_name", entry["actor_name"]),
        "after": mapping("after"),
        "before": mapping("before"),
        "extra": entry.get("extra"),
        "object_id": entry["object_id"],
        "object_repr": digest("object_repr", entry["object_repr"]),
        "object_type": entry["object_type"],
        "request_id": entry["request_id"],
        "source_ip": digest("source_ip", entry["source_ip"]),
        "time": entry["time"],
        "v": VERSION,
    }


def new_cache() -> Any:
    """A fresh digest cache (``.fd``) for one verification run."""
    return _DigestCache().fd


def redacted_value(value: Any) -> str:
    return REDACTED_PREFIX + sha256_hex(canonical_json(value))


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
