"""Offline verification of a Custody audit-trail export, without the server.

An auditor downloads ``GET /api/v1/audit/?format=jsonl`` (and the server's public key from
``GET /api/v1/audit/public-key``) and runs::

    custody verify EXPORT.jsonl --public-key KEY.pem      # or: python -m custody.verify ...

or, from Python::

    from custody.verify import verify_export
    with open("export.jsonl") as lines:
        result = verify_export(lines, public_key_pem=open("key.pem").read())
    print(result.summary()); assert result.ok

What is checked: every entry's hash is recomputed from its content (the server's canonical form,
re-implemented here); every link of the chain (sequence continuity, ``prev_hash``); every signed
checkpoint matches the recomputed hash at its sequence and carries a valid Ed25519 signature by a
key you trust. Entries after the last checkpoint are consistent but not yet signed: the result
counts them as ``unanchored``.

Pure Python, no dependencies: Ed25519 verification is written here from RFC 8032 (section 5.1);
when the ``cryptography`` package is importable (``pip install custody[verify]``) it is used
instead, being about a hundred times faster. Both give the same answers (tested).

The canonical form (``governance/audit/chain.py`` on the server is the reference)::

    fd(v)  = hex(SHA-256(canonical_json(v)))     # sorted keys, "," ":", UTF-8, no NaN
    body   = hex(SHA-256(canonical_json({
               "action", "actor_id", "actor_name": fd, "after": {k: fd(v)} | null,
               "before": {k: fd(v)} | null, "extra", "object_id", "object_repr": fd,
               "object_type", "request_id", "source_ip": fd, "time", "v": 1})))
    hash   = hex(SHA-256(prev_hash + body))      # genesis prev_hash: 64 zeros

(The sequence number is not hashed: each entry's place is fixed by ``prev_hash``, and sequences
must be contiguous.)

A redacted field (listed in the entry's ``redacted``) holds ``"sha256:" + fd(original)`` and enters
the digest form as that digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sys
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, NoReturn, Optional, Tuple, Union

__all__ = ["Problem", "Result", "ed25519_verify", "load_public_keys", "main", "verify_export", "verify_file"]

EXPORT_FORMAT = "custody.audit.export"
GENESIS = "0" * 64
REDACTED_PREFIX = "sha256:"
CHECKPOINT_TYPE = "custody.audit.checkpoint"
PERSONAL_SCALARS = ("actor_name", "object_repr", "source_ip")

_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_sha256 = hashlib.sha256


# --- Ed25519 (RFC 8032, section 5.1), verification only ------------------------------------------
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)  # a square root of -1 mod p

_Point = Tuple[int, int, int, int]  # extended homogeneous coordinates (X, Y, Z, T): x=X/Z, y=Y/Z, xy=T/Z


def _recover_x(y: int, sign: int) -> Optional[int]:
    """Section 5.1.3, step 2-4: x from y and the sign bit, or None if there is no such point."""
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    # candidate root of u/v: u v^3 (u v^7)^((p-5)/8)
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    vx2 = (v * x * x) % _P
    if vx2 == u:
        pass
    elif vx2 == (-u) % _P:
        x = (x * _SQRT_M1) % _P
    else:
        return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = _P - x
    return x


def _decode_point(data: bytes) -> Optional[_Point]:
    if len(data) != 32:
        return None
    value = int.from_bytes(data, "little")
    sign = value >> 255
    y = value & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, (x * y) % _P)


def _add(p: _Point, q: _Point) -> _Point:
    """Section 5.1.4, addition in extended coordinates."""
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = ((y1 - x1) * (y2 - x2)) % _P
    b = ((y1 + x1) * (y2 + x2)) % _P
    c = (2 * _D * t1 * t2) % _P
    d = (2 * z1 * z2) % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return ((e * f) % _P, (g * h) % _P, (f * g) % _P, (e * h) % _P)


def _double(p: _Point) -> _Point:
    """Section 5.1.4, doubling."""
    x1, y1, z1, _ = p
    a = (x1 * x1) % _P
    b = (y1 * y1) % _P
    c = (2 * z1 * z1) % _P
    h = a + b
    e = h - ((x1 + y1) * (x1 + y1)) % _P
    g = a - b
    f = c + g
    return ((e * f) % _P, (g * h) % _P, (f * g) % _P, (e * h) % _P)


_IDENTITY: _Point = (0, 1, 1, 0)


def _multiply(scalar: int, point: _Point) -> _Point:
    result = _IDENTITY
    addend = point
    while scalar:
        if scalar & 1:
            result = _add(result, addend)
        addend = _double(addend)
        scalar >>= 1
    return result


def _same(p: _Point, q: _Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


_BASE_Y = (4 * pow(5, _P - 2, _P)) % _P
_BASE_X = _recover_x(_BASE_Y, 0)
assert _BASE_X is not None
_BASE: _Point = (_BASE_X, _BASE_Y, 1, (_BASE_X * _BASE_Y) % _P)


def _pure_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Section 5.1.7. Uses the cofactorless equation [S]B = R + [k]A, which the RFC permits and
    OpenSSL (hence ``cryptography``) uses, so both paths accept exactly the same signatures."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a_point = _decode_point(public_key)
    r_point = _decode_point(signature[:32])
    if a_point is None or r_point is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % _L
    return _same(_multiply(s, _BASE), _add(r_point, _multiply(k, a_point)))


def _cryptography_verifier() -> Optional[Callable[[bytes, bytes, bytes], bool]]:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return None

    def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    return verify


_FAST = _cryptography_verifier()


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes, *, pure: bool = False) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by the raw 32-byte key."""
    if _FAST is not None and not pure:
        return _FAST(public_key, message, signature)
    return _pure_verify(public_key, message, signature)


# --- keys -----------------------------------------------------------------------------------------
# DER of an Ed25519 SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING <32 bytes> }
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def key_id(raw_public_key: bytes) -> str:
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def load_public_keys(pem: Union[str, bytes]) -> Dict[str, bytes]:
    """key id → raw 32-byte key, for every ``PUBLIC KEY`` PEM block in ``pem`` (rotation: several)."""
    text = pem.decode("ascii") if isinstance(pem, bytes) else pem
    keys: Dict[str, bytes] = {}
    begin, end = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"
    rest = text
    while begin in rest:
        start = rest.index(begin) + len(begin)
        stop = rest.index(end, start)
        try:
            der = base64.b64decode("".join(rest[start:stop].split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"a PUBLIC KEY block is not valid base64: {exc}") from exc
        if len(der) != 44 or not der.startswith(_SPKI_PREFIX):
            raise ValueError("a PUBLIC KEY block is not an Ed25519 public key")
        raw = der[len(_SPKI_PREFIX) :]
        keys[key_id(raw)] = raw
        rest = rest[stop + len(end) :]
    if not keys:
        raise ValueError("no '-----BEGIN PUBLIC KEY-----' block found")
    return keys


# --- the chain ------------------------------------------------------------------------------------
class _Digests:
    def __init__(self) -> None:
        self._cache: Dict[Tuple[type, Any], str] = {}

    def fd(self, value: Any) -> str:
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            key = (kind, value)
            found = self._cache.get(key)
            if found is None:
                found = _sha256(_encode(value).encode("utf-8")).hexdigest()
                if len(self._cache) > 32_768:
                    self._cache.clear()
                self._cache[key] = found
            return found
        return _sha256(_encode(value).encode("utf-8")).hexdigest()


def _redacted_digest(path: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(REDACTED_PREFIX) or len(value) != 71:
        raise ValueError(f"{path} is marked redacted but does not hold a sha256 digest")
    return value[len(REDACTED_PREFIX) :]


def _map_form(name: str, value: Any, redacted: FrozenSet[str], fd: Callable[[Any], str]) -> str:
    if value is None:
        return "null"
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be an object or null")
    parts = []
    for key in sorted(value):
        path = name + "." + key
        digest = _redacted_digest(path, value[key]) if path in redacted else fd(value[key])
        parts.append(encode_basestring(key) + ':"' + digest + '"')
    return "{" + ",".join(parts) + "}"


def entry_body(entry: Mapping[str, Any], fd: Optional[Callable[[Any], str]] = None) -> str:
    """The body digest of an exported entry record."""
    fd = fd or _Digests().fd
    redacted = frozenset(entry.get("redacted") or ())

    def scalar(name: str) -> str:
        value = entry[name]
        return _redacted_digest(name, value) if name in redacted else fd(value)

    actor_id = entry["actor_id"]
    if actor_id is not None and (type(actor_id) is not int):
        raise ValueError("actor_id must be an integer or null")
    text = "".join(
        (
            '{"action":',
            encode_basestring(entry["action"]),
            ',"actor_id":',
            "null" if actor_id is None else str(actor_id),
            ',"actor_name":"',
            scalar("actor_name"),
            '","after":',
            _map_form("after", entry.get("after"), redacted, fd),
            ',"before":',
            _map_form("before", entry.get("before"), redacted, fd),
            ',"extra":',
            _encode(entry.get("extra")),
            ',"object_id":',
            encode_basestring(entry["object_id"]),
            ',"object_repr":"',
            scalar("object_repr"),
            '","object_type":',
            encode_basestring(entry["object_type"]),
            ',"request_id":',
            encode_basestring(entry["request_id"]),
            ',"source_ip":"',
            scalar("source_ip"),
            '","time":"',
            entry["time"],
            '","v":1}',
        )
    )
    return _sha256(text.encode("utf-8")).hexdigest()


def link_hash(prev_hash: str, body: str) -> str:
    return _sha256((prev_hash + body).encode("ascii")).hexdigest()


def checkpoint_message(record: Mapping[str, Any]) -> bytes:
    return _encode(
        {
            "hash": record["hash"],
            "key_id": record["key_id"],
            "sequence": record["sequence"],
            "time": record["time"],
            "type": CHECKPOINT_TYPE,
            "v": 1,
        }
    ).encode("utf-8")


# --- results --------------------------------------------------------------------------------------
@dataclass
class Problem:
    line: int
    sequence: Optional[int]
    kind: str
    detail: str

    def __str__(self) -> str:
        where = f"entry {self.sequence}" if self.sequence is not None else "export"
        return f"{where} (line {self.line}): {self.kind}: {self.detail}"


@dataclass
class Result:
    ok: bool = True
    entries: int = 0
    links: int = 0
    checkpoints: int = 0
    checkpoints_verified: int = 0
    signatures_checked: bool = False
    first_sequence: Optional[int] = None
    last_sequence: Optional[int] = None
    head_hash: Optional[str] = None
    latest_checkpoint_sequence: Optional[int] = None
    unanchored: int = 0
    problem: Optional[Problem] = None
    warnings: List[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def first_bad_sequence(self) -> Optional[int]:
        return self.problem.sequence if self.problem else None

    def summary(self) -> str:
        if not self.ok:
            return f"FAILED at {self.problem}"
        if self.last_sequence is None:
            return "OK: the export holds no entries."
        signed = (
            f"{self.checkpoints_verified} signed checkpoint(s) verified"
            if self.signatures_checked
            else f"{self.checkpoints} checkpoint(s) matched, signatures NOT checked (no --public-key)"
        )
        return (
            f"OK: entries {self.first_sequence}..{self.last_sequence} ({self.entries} in full, {self.links} as "
            f"links) recomputed; {signed}; latest at entry {self.latest_checkpoint_sequence or '-'}, "
            f"{self.unanchored} after it not yet signed."
        )


class _Stop(Exception):
    pass


class _Verifier:
    def __init__(self, keys: Optional[Dict[str, bytes]]) -> None:
        self.keys = keys
        self.result = Result(signatures_checked=keys is not None)
        self.fd = _Digests().fd
        self.expected: Optional[int] = None
        self.running = ""
        self.pending: Dict[int, List[Tuple[int, Mapping[str, Any]]]] = {}
        self.line = 0

    def fail(self, sequence: Optional[int], kind: str, detail: str) -> NoReturn:
        self.result.ok = False
        self.result.problem = Problem(self.line, sequence, kind, detail)
        raise _Stop

    def record(self, record: Any) -> None:
        if not isinstance(record, dict):
            self.fail(None, "malformed", "a line is not a JSON object")
        kind = record.get("type")
        if kind == "entry" or kind == "link":
            self.chain_record(kind, record)
        elif kind == "checkpoint":
            self.checkpoint(record)
        elif kind == "header":
            if record.get("format") != EXPORT_FORMAT:
                self.fail(None, "malformed", f"not a Custody audit export (format {record.get('format')!r})")
            if record.get("version") != 1:
                self.fail(None, "unsupported", f"export format version {record.get('version')!r} is not supported")
        else:
            self.fail(None, "malformed", f"unknown record type {kind!r}")

    def chain_record(self, kind: str, record: Mapping[str, Any]) -> None:
        seq = record.get("sequence")
        if type(seq) is not int:
            self.fail(None, "malformed", f"{kind} record without an integer sequence")
        result = self.result
        if self.expected is None:
            if kind == "link":
                self.fail(seq, "malformed", "the export starts with a link; the first record must be a full entry")
            result.first_sequence = seq
            prev = record.get("prev_hash")
            if seq == 1 and prev != GENESIS:
                self.fail(seq, "bad_start", "entry 1's prev_hash is not the genesis value (64 zeros)")
            self.running = str(prev)
        elif seq != self.expected:
            if seq < self.expected:
                self.fail(seq, "out_of_order", f"entry {seq} follows entry {self.expected - 1}")
            gap = f"entry {self.expected}" if seq == self.expected + 1 else f"entries {self.expected}..{seq - 1}"
            self.fail(self.expected, "missing", f"{gap} missing: entry {seq} follows entry {self.expected - 1}")
        if kind == "entry":
            if record.get("prev_hash") != self.running:
                self.fail(
                    seq,
                    "broken_link",
                    f"prev_hash {record.get('prev_hash')} is not the hash of entry {seq - 1} ({self.running}): "
                    "an entry was inserted, removed or reordered here",
                )
            try:
                body = entry_body(record, self.fd)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.fail(seq, "altered", f"the entry cannot be read as an audit entry: {exc}")
            computed = link_hash(self.running, body)
            if computed != record.get("hash"):
                self.fail(seq, "altered", "the content does not match the entry's hash (a value was changed)")
            result.entries += 1
        else:
            given = record.get("body")
            if not isinstance(given, str) or len(given) != 64:
                self.fail(seq, "malformed", "link record without a body digest")
            computed = link_hash(self.running, given)
            if "hash" in record and record["hash"] != computed:
                self.fail(seq, "altered", "the link's hash does not follow from the chain before it")
            result.links += 1
        self.running = computed
        self.expected = seq + 1
        result.last_sequence = seq
        result.head_hash = computed
        for line, cp in self.pending.pop(seq, []):
            self.check_checkpoint(cp, line)

    def checkpoint(self, record: Mapping[str, Any]) -> None:
        self.result.checkpoints += 1
        seq = record.get("sequence")
        if type(seq) is not int:
            self.fail(None, "malformed", "checkpoint without an integer sequence")
        last = self.result.last_sequence
        if last is not None and seq == last:
            self.check_checkpoint(record, self.line)
        elif last is None or seq > last:
            self.pending.setdefault(seq, []).append((self.line, record))
        elif self.result.first_sequence is not None and seq < self.result.first_sequence:
            self.result.warnings.append(f"checkpoint for entry {seq} is before the export's first entry: ignored")
        else:
            self.fail(seq, "out_of_order", f"the checkpoint for entry {seq} comes after entry {last}")

    def check_checkpoint(self, record: Mapping[str, Any], line: int) -> None:
        seq = record["sequence"]
        if record.get("hash") != self.running:
            self.line = line
            self.fail(
                seq,
                "checkpoint_mismatch",
                f"the signed checkpoint says entry {seq} has hash {record.get('hash')}, the recomputed chain has "
                f"{self.running}: the chain up to here was rewritten",
            )
        if self.keys is not None:
            public = self.keys.get(str(record.get("key_id")))
            if public is None:
                self.fail(seq, "unknown_key", f"checkpoint signed by key {record.get('key_id')}, not a trusted key")
            try:
                signature = base64.b64decode(str(record.get("signature")), validate=True)
            except (binascii.Error, ValueError):
                signature = b""
            if record.get("algorithm", "Ed25519") != "Ed25519" or not ed25519_verify(
                public, checkpoint_message(record), signature
            ):
                self.fail(seq, "bad_signature", f"the checkpoint for entry {seq} has an invalid signature")
            self.result.checkpoints_verified += 1
        self.result.latest_checkpoint_sequence = seq

    def finish(self) -> Result:
        result = self.result
        if self.pending:
            seq = min(self.pending)
            after = result.last_sequence
            self.line = self.pending[seq][0][0]
            self.fail(
                (after or 0) + 1,
                "missing",
                f"a checkpoint vouches for entry {seq} but the export ends at {after or 'nothing'}: entries are "
                "missing from the end",
            )
        if result.last_sequence is not None:
            anchored = result.latest_checkpoint_sequence or (result.first_sequence or 1) - 1
            result.unanchored = result.last_sequence - anchored
        if self.keys is None:
            result.warnings.append("signatures were not checked: give the server's public key")
        return result


def verify_export(lines: Iterable[Union[str, bytes]], public_key_pem: Optional[Union[str, bytes]] = None) -> Result:
    """Verify an export given as JSON Lines (an open file, or any iterable of lines).

    With ``public_key_pem`` (one or more PEM ``PUBLIC KEY`` blocks), every checkpoint's signature must
    verify with one of those keys; without it, checkpoints are matched against the chain but their
    signatures are not checked (``result.signatures_checked`` is False)."""
    keys = load_public_keys(public_key_pem) if public_key_pem is not None else None
    verifier = _Verifier(keys)
    loads = json.loads
    try:
        for number, line in enumerate(lines, 1):
            verifier.line = number
            if isinstance(line, bytes):
                line = line.decode("utf-8")
            if not line.strip():
                continue
            try:
                record = loads(line)
            except ValueError as exc:
                verifier.fail(None, "malformed", f"not JSON: {exc}")
            verifier.record(record)
        return verifier.finish()
    except _Stop:
        return verifier.result


def verify_file(path: str, public_key_pem: Optional[Union[str, bytes]] = None) -> Result:
    with open(path, encoding="utf-8") as handle:
        return verify_export(handle, public_key_pem)


def main(argv: Optional[List[str]] = None) -> int:
    """``custody verify EXPORT.jsonl [--public-key KEY.pem] [--json]``: 0 verified, 1 not, 2 unusable input."""
    import argparse

    parser = argparse.ArgumentParser(prog="custody verify", description="Verify a Custody audit export offline.")
    parser.add_argument("export", help="The JSON Lines export (GET /api/v1/audit/?format=jsonl); '-' for stdin.")
    parser.add_argument("--public-key", help="PEM file of the server's public key(s) (GET /api/v1/audit/public-key).")
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
    args = parser.parse_args(argv)
    return run(args.export, args.public_key, as_json=args.json)


def run(export: str, public_key: Optional[str], as_json: bool = False) -> int:
    """The body of ``custody verify`` (for the CLI's subcommand)."""
    try:
        pem = None
        if public_key:
            with open(public_key, encoding="ascii") as handle:
                pem = handle.read()
            load_public_keys(pem)
        result = verify_export(sys.stdin, pem) if export == "-" else verify_file(export, pem)
    except (OSError, ValueError) as exc:
        print(f"custody verify: {exc}", file=sys.stderr)
        return 2
    if as_json:
        from dataclasses import asdict

        print(json.dumps(asdict(result), indent=2))
    else:
        print(result.summary())
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
