"""The offline audit-export verifier (custody.verify): Ed25519 from RFC 8032 in pure Python, and
the chain checks, against an export produced by a real Custody server (embedded below)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, List

import pytest

from custody import verify
from custody.verify import ed25519_verify, load_public_keys, verify_export

SDK = Path(__file__).resolve().parent.parent

# RFC 8032, section 7.1, TEST 1-3: (secret key, public key, message, signature), hex.
RFC8032_VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]

# Exported by a Custody server (GET /api/v1/audit/?format=jsonl) whose signing key is RFC 8032's
# TEST 1 key: guardian's anonymous user, a token, an ingestion, a role grant later redacted
# (object_repr and before.nested), the redaction itself, a failed login, an unsigned tail.
SERVER_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=
-----END PUBLIC KEY-----
"""
SERVER_EXPORT = r"""{"chain": {"genesis": "0000000000000000000000000000000000000000000000000000000000000000", "v": 1}, "exported_at": "2026-11-21T19:13:40.594106Z", "filters": {}, "format": "custody.audit.export", "public_keys": [{"current": true, "key_id": "21fe31dfa154a261", "pem": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n"}], "type": "header", "version": 1}
{"type":"entry","sequence":1,"time":"2026-11-21T19:13:37.601716Z","actor_id":null,"actor_name":"system","action":"user.create","object_type":"auth.user","object_id":"1","object_repr":"AnonymousUser","before":null,"after":{"is_active":true,"is_staff":false,"is_superuser":false,"username":"AnonymousUser"},"extra":null,"request_id":"","source_ip":"","redacted":null,"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"9f957b8d6c365fe5810aa6a9eaa38634469e28e15581c9a6d3dfdd3bdb63d81c"}
{"type":"entry","sequence":2,"time":"2026-11-21T19:13:40.559946Z","actor_id":null,"actor_name":"alice","action":"token.create","object_type":"accounts.apitoken","object_id":"7","object_repr":"cust_abc… (alice, ci)","before":null,"after":{"email":"alice@example.com","label":"ci","scope":"full"},"extra":{"user_id":3},"request_id":"","source_ip":"","redacted":null,"prev_hash":"9f957b8d6c365fe5810aa6a9eaa38634469e28e15581c9a6d3dfdd3bdb63d81c","hash":"0269c049e84dc97e2210afab1b228dc285ec60fda9cb0afabcd14941bc1cb9eb"}
{"type":"entry","sequence":3,"time":"2026-11-21T19:13:40.573946Z","actor_id":null,"actor_name":"ci-bot","action":"lineage.ingest","object_type":"lineage.rawevent","object_id":"12","object_repr":"COMPLETE fraud:train","before":null,"after":null,"extra":{"count":1,"events":[[12,"abababababababababababababababababababababababababababababababab"]]},"request_id":"","source_ip":"","redacted":null,"prev_hash":"0269c049e84dc97e2210afab1b228dc285ec60fda9cb0afabcd14941bc1cb9eb","hash":"5229238578ad2931ef592c1b03eb989b659342fb3e2673fa2e52850c191992c1"}
{"type":"entry","sequence":4,"time":"2026-11-21T19:13:40.574673Z","actor_id":null,"actor_name":"älice","action":"role.grant","object_type":"auth.user","object_id":"3","object_repr":"sha256:1b0ed536deb39ddcf8e689b39c38e8a50a03892208f26af2a87d11c273f7b786","before":{"big":1e+100,"nested":"sha256:e7e08bf6b6aa8aa19c47cf7778c2fc96500ac6dbdce46f12e19d0f236d51eeeb","ratio":0.1},"after":null,"extra":{"role":"approver"},"request_id":"","source_ip":"","redacted":["before.nested","object_repr"],"prev_hash":"5229238578ad2931ef592c1b03eb989b659342fb3e2673fa2e52850c191992c1","hash":"930a4b7bd2b5caf09b7de7b1a5b5a5a62fad576e87821fa6055a2f0668032882"}
{"algorithm": "Ed25519", "hash": "930a4b7bd2b5caf09b7de7b1a5b5a5a62fad576e87821fa6055a2f0668032882", "key_id": "21fe31dfa154a261", "sequence": 4, "signature": "SHPawDQ3Nbo1lD2c2LNNvEcMwNy3dNq7gwi/8LMnubzv7IGYds9cnhXaukI2F/+FJb3eC0Jbf+EankZ/8A8/Cg==", "time": "2026-11-21T19:13:40.576986Z", "type": "checkpoint"}
{"type":"entry","sequence":5,"time":"2026-11-21T19:13:40.583506Z","actor_id":null,"actor_name":"system","action":"audit.redact","object_type":"audit.auditentry","object_id":"4","object_repr":"1 audit entry","before":null,"after":null,"extra":{"reason":"retention","redacted":{"4":["before.nested","object_repr"]}},"request_id":"","source_ip":"","redacted":null,"prev_hash":"930a4b7bd2b5caf09b7de7b1a5b5a5a62fad576e87821fa6055a2f0668032882","hash":"7e16720566a7b20d88ed3b72eeacb6c4df93f9adc8522010b6688b85813d9ac1"}
{"type":"entry","sequence":6,"time":"2026-11-21T19:13:40.584355Z","actor_id":null,"actor_name":"anonymous","action":"auth.login_failed","object_type":"auth.user","object_id":"","object_repr":"mallory","before":null,"after":null,"extra":null,"request_id":"","source_ip":"","redacted":null,"prev_hash":"7e16720566a7b20d88ed3b72eeacb6c4df93f9adc8522010b6688b85813d9ac1","hash":"27b5edae1f1f4f396d122c252bbc264354e42c48fef55afb5a0228f0709328bc"}
{"algorithm": "Ed25519", "hash": "27b5edae1f1f4f396d122c252bbc264354e42c48fef55afb5a0228f0709328bc", "key_id": "21fe31dfa154a261", "sequence": 6, "signature": "yhzASbA9svQUDTSqTwP+uk0gmK1XJwdPxdNzM6r9I3O9Fr/G8XEquxCeJiR7r9qoueY9Xe+35b989bjsmuw2Dw==", "time": "2026-11-21T19:13:40.590610Z", "type": "checkpoint"}
{"type":"entry","sequence":7,"time":"2026-11-21T19:13:40.591327Z","actor_id":null,"actor_name":"system","action":"test.tail","object_type":"","object_id":"","object_repr":"","before":null,"after":null,"extra":null,"request_id":"","source_ip":"","redacted":null,"prev_hash":"27b5edae1f1f4f396d122c252bbc264354e42c48fef55afb5a0228f0709328bc","hash":"8c155c8bafe0530f9a21d125fd69deed60fc8ac8e12232eb4dcbbca31c64a6dd"}
"""
# The same chain filtered to action=token.create: entry 2 in full, entries 3 and 4 as links, up to
# the checkpoint at entry 4.
SERVER_FILTERED_EXPORT = r"""{"type":"entry","sequence":2,"time":"2026-11-21T19:13:40.559946Z","actor_id":null,"actor_name":"alice","action":"token.create","object_type":"accounts.apitoken","object_id":"7","object_repr":"cust_abc… (alice, ci)","before":null,"after":{"email":"alice@example.com","label":"ci","scope":"full"},"extra":{"user_id":3},"request_id":"","source_ip":"","redacted":null,"prev_hash":"9f957b8d6c365fe5810aa6a9eaa38634469e28e15581c9a6d3dfdd3bdb63d81c","hash":"0269c049e84dc97e2210afab1b228dc285ec60fda9cb0afabcd14941bc1cb9eb"}
{"type":"link","sequence":3,"body":"0f536b14c6edcee1e9771f50a3b4e58bd77446492425f7138140dfbd20e7c699","hash":"5229238578ad2931ef592c1b03eb989b659342fb3e2673fa2e52850c191992c1"}
{"type":"link","sequence":4,"body":"d3ee2abf6f482517ff327813a1a84b6749ed55f677646831801f1d2721c186b7","hash":"930a4b7bd2b5caf09b7de7b1a5b5a5a62fad576e87821fa6055a2f0668032882"}
{"algorithm": "Ed25519", "hash": "930a4b7bd2b5caf09b7de7b1a5b5a5a62fad576e87821fa6055a2f0668032882", "key_id": "21fe31dfa154a261", "sequence": 4, "signature": "SHPawDQ3Nbo1lD2c2LNNvEcMwNy3dNq7gwi/8LMnubzv7IGYds9cnhXaukI2F/+FJb3eC0Jbf+EankZ/8A8/Cg==", "time": "2026-11-21T19:13:40.576986Z", "type": "checkpoint"}
"""


@pytest.fixture(params=["pure", "cryptography"])
def backend(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the pure-Python Ed25519 and, when installed, with the cryptography package."""
    if request.param == "pure":
        monkeypatch.setattr(verify, "_FAST", None)
    elif verify._FAST is None:
        pytest.skip("cryptography is not installed")
    return str(request.param)


def lines(text: str = SERVER_EXPORT) -> List[str]:
    return text.strip().splitlines()


def edit(text: str, sequence: int, change: Callable[[dict], None], kind: str = "entry") -> List[str]:
    out = []
    for line in lines(text):
        record = json.loads(line)
        if record.get("type") == kind and record.get("sequence") == sequence:
            change(record)
            line = json.dumps(record, ensure_ascii=False)
        out.append(line)
    return out


# --- Ed25519 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("secret, public, message, signature", RFC8032_VECTORS)
def test_rfc8032_vectors(backend: str, secret: str, public: str, message: str, signature: str) -> None:
    pub, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert ed25519_verify(pub, msg, sig)
    assert not ed25519_verify(pub, msg + b"x", sig)
    for i in (0, 31, 32, 63):  # any flipped bit in R or S
        bad = bytearray(sig)
        bad[i] ^= 0x01
        assert not ed25519_verify(pub, msg, bytes(bad))
    other = bytearray(pub)
    other[0] ^= 0x01
    assert not ed25519_verify(bytes(other), msg, sig)


def test_pure_python_refuses_malformed_input() -> None:
    pub = bytes.fromhex(RFC8032_VECTORS[1][1])
    msg, sig = bytes.fromhex(RFC8032_VECTORS[1][2]), bytes.fromhex(RFC8032_VECTORS[1][3])
    assert verify._pure_verify(pub, msg, sig)
    assert not verify._pure_verify(pub[:31], msg, sig)
    assert not verify._pure_verify(pub, msg, sig[:63])
    # S >= L (a malleated signature: S + L) is refused
    s = int.from_bytes(sig[32:], "little") + verify._L
    assert not verify._pure_verify(pub, msg, sig[:32] + s.to_bytes(32, "little"))
    # a public key that is not a curve point (y = p - 1 + 2 has no x): refused, not an exception
    not_a_point = (2**255 - 19 + 1).to_bytes(32, "little")
    assert not verify._pure_verify(not_a_point, msg, sig)


def test_pure_python_agrees_with_cryptography_on_random_keys() -> None:
    crypto = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    from cryptography.hazmat.primitives import serialization

    for i in range(10):
        key = crypto.Ed25519PrivateKey.generate()
        pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        message = bytes(range(i * 7 % 256)) * (i + 1)
        sig = key.sign(message)
        assert verify._pure_verify(pub, message, sig)
        assert not verify._pure_verify(pub, message + b"!", sig)


def test_public_keys_from_pem() -> None:
    keys = load_public_keys(SERVER_PUBLIC_KEY)
    assert list(keys) == ["21fe31dfa154a261"]
    assert keys["21fe31dfa154a261"].hex() == RFC8032_VECTORS[0][1]
    assert len(load_public_keys(SERVER_PUBLIC_KEY + "\n" + SERVER_PUBLIC_KEY)) == 1
    for bad in (
        "",
        "no pem here",
        "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----",
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VuAyEA\n-----END PUBLIC KEY-----",
    ):
        with pytest.raises(ValueError):
            load_public_keys(bad)


# --- the chain ------------------------------------------------------------------------------------
def test_server_export_verifies(backend: str) -> None:
    result = verify_export(lines(), SERVER_PUBLIC_KEY)
    assert result.ok, result.problem
    assert (result.first_sequence, result.last_sequence, result.entries, result.links) == (1, 7, 7, 0)
    assert result.signatures_checked and result.checkpoints_verified == 2
    assert result.latest_checkpoint_sequence == 6 and result.unanchored == 1
    assert result.head_hash == "8c155c8bafe0530f9a21d125fd69deed60fc8ac8e12232eb4dcbbca31c64a6dd"
    assert bool(result) and result.summary().startswith("OK: entries 1..7")


def test_filtered_export_with_links_verifies(backend: str) -> None:
    result = verify_export(lines(SERVER_FILTERED_EXPORT), SERVER_PUBLIC_KEY)
    assert result.ok, result.problem
    assert (result.entries, result.links, result.checkpoints_verified, result.unanchored) == (1, 2, 1, 0)


def test_without_a_key_the_chain_is_checked_but_not_the_signatures() -> None:
    result = verify_export(lines())
    assert result.ok and not result.signatures_checked and result.checkpoints_verified == 0
    assert "NOT checked" in result.summary() and result.warnings


def test_bytes_lines_and_blank_lines_are_accepted() -> None:
    data = [line.encode("utf-8") for line in lines()] + [b"", b"  "]
    assert verify_export(data, SERVER_PUBLIC_KEY).ok


def expect(result: Any, sequence: Any, *kinds: str) -> None:
    assert not result.ok, "tampering went unnoticed"
    assert result.problem is not None and result.first_bad_sequence == sequence, result.problem
    assert result.problem.kind in kinds, result.problem
    assert result.summary().startswith("FAILED at entry" if sequence is not None else "FAILED at export")


@pytest.mark.parametrize(
    "sequence, change",
    [
        (2, lambda r: r.update(actor_name="bob")),
        (2, lambda r: r["after"].update(scope="read")),
        (2, lambda r: r["after"].pop("email")),
        (3, lambda r: r["extra"].update(count=2)),
        (3, lambda r: r.update(object_id="13")),
        (6, lambda r: r.update(time="2026-11-21T19:04:54.202007Z")),
        (6, lambda r: r.update(actor_id=1)),
        (4, lambda r: r["before"].update(ratio=0.2)),
        (4, lambda r: r.update(object_repr="sha256:" + "0" * 64)),  # a redacted field with a wrong digest
        (4, lambda r: r.update(redacted=["before.nested"])),  # un-marking a redaction
        (2, lambda r: r.update(redacted=["actor_name"])),  # marking a field redacted that is not
        (7, lambda r: r.update(hash="0" * 64)),
    ],
)
def test_altered_entries_are_named(sequence: int, change: Callable[[dict], None]) -> None:
    expect(verify_export(edit(SERVER_EXPORT, sequence, change), SERVER_PUBLIC_KEY), sequence, "altered")


def test_deleted_entry_is_named() -> None:
    kept = [line for line in lines() if '"sequence":3,' not in line]
    expect(verify_export(kept, SERVER_PUBLIC_KEY), 3, "missing")


def test_reordered_entries_are_named() -> None:
    all_lines = lines()
    a = next(i for i, line in enumerate(all_lines) if '"sequence":2,' in line)
    all_lines[a], all_lines[a + 1] = all_lines[a + 1], all_lines[a]
    expect(verify_export(all_lines, SERVER_PUBLIC_KEY), 2, "missing")
    # renumbered to hide the swap: the links no longer match
    swapped = edit(SERVER_EXPORT, 2, lambda r: r.update(sequence=3))
    swapped = [line for line in swapped if not ('"sequence":3,' in line and "lineage.ingest" in line)]
    expect(verify_export(swapped, SERVER_PUBLIC_KEY), 2, "missing")


def test_inserted_entry_is_named() -> None:
    """A forged entry computed exactly like the server's, inserted after entry 2 (later ones
    renumbered): the chain breaks at the entry after it."""
    records = [json.loads(line) for line in lines()]
    entry2 = next(r for r in records if r.get("type") == "entry" and r["sequence"] == 2)
    forged = dict(entry2, sequence=3, action="token.revoke", prev_hash=entry2["hash"])
    forged["hash"] = verify.link_hash(entry2["hash"], verify.entry_body(forged))
    out = []
    for r in records:
        if r.get("type") in ("entry", "checkpoint") and r["sequence"] >= 3:
            r = dict(r, sequence=r["sequence"] + 1)
        out.append(json.dumps(r, ensure_ascii=False))
        if r is entry2:
            out.append(json.dumps(forged, ensure_ascii=False))
    expect(verify_export(out, SERVER_PUBLIC_KEY), 4, "broken_link")


def test_rewritten_history_is_caught_by_the_checkpoint() -> None:
    """Alter entry 2 and recompute every later hash: only the signed checkpoint at 4 can tell."""
    records = [json.loads(line) for line in lines()]
    running = None
    out = []
    for r in records:
        if r.get("type") == "entry":
            if r["sequence"] == 2:
                r["actor_name"] = "bob"
            if running is not None:
                r["prev_hash"] = running
            r["hash"] = running = verify.link_hash(r["prev_hash"], verify.entry_body(r))
        out.append(json.dumps(r, ensure_ascii=False))
    expect(verify_export(out, SERVER_PUBLIC_KEY), 4, "checkpoint_mismatch")


def test_cut_tail_is_named() -> None:
    """Entries 5..7 removed but the checkpoint at 6 kept: entries are missing from the end."""
    kept = [line for line in lines() if not any(f'"sequence":{n},' in line for n in (5, 6, 7))]
    expect(verify_export(kept, SERVER_PUBLIC_KEY), 5, "missing")


def test_checkpoint_tampering_is_named(backend: str) -> None:
    forged = edit(SERVER_EXPORT, 4, lambda r: r.update(time="2026-11-21T19:04:55.191631Z"), kind="checkpoint")
    expect(verify_export(forged, SERVER_PUBLIC_KEY), 4, "bad_signature")
    sig = base64.b64decode(json.loads(lines()[5])["signature"])
    flipped = base64.b64encode(sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]).decode()
    expect(
        verify_export(
            edit(SERVER_EXPORT, 6, lambda r: r.update(signature=flipped), kind="checkpoint"), SERVER_PUBLIC_KEY
        ),
        6,
        "bad_signature",
    )
    expect(
        verify_export(edit(SERVER_EXPORT, 6, lambda r: r.update(signature="!!"), kind="checkpoint"), SERVER_PUBLIC_KEY),
        6,
        "bad_signature",
    )
    moved = edit(SERVER_EXPORT, 6, lambda r: r.update(hash="1" * 64), kind="checkpoint")
    expect(verify_export(moved, SERVER_PUBLIC_KEY), 6, "checkpoint_mismatch")


def test_a_key_that_did_not_sign_is_refused() -> None:
    other = (
        "-----BEGIN PUBLIC KEY-----\n"
        + base64.b64encode(bytes.fromhex("302a300506032b6570032100") + bytes.fromhex(RFC8032_VECTORS[1][1])).decode()
        + "\n-----END PUBLIC KEY-----\n"
    )
    expect(verify_export(lines(), other), 4, "unknown_key")
    assert verify_export(lines(), other + SERVER_PUBLIC_KEY).ok  # rotation: any trusted key will do


def test_malformed_exports() -> None:
    result = verify_export(["not json"], SERVER_PUBLIC_KEY)
    assert not result.ok and result.problem is not None and result.problem.kind == "malformed"
    wrong_format = lines()
    wrong_format[0] = json.dumps({"type": "header", "format": "something-else", "version": 1})
    assert verify_export(wrong_format).problem.kind == "malformed"  # type: ignore[union-attr]
    newer = lines()
    newer[0] = json.dumps({"type": "header", "format": "custody.audit.export", "version": 2})
    assert verify_export(newer).problem.kind == "unsupported"  # type: ignore[union-attr]
    assert verify_export(['{"type":"mystery"}']).problem.kind == "malformed"  # type: ignore[union-attr]
    starts_with_link = lines(SERVER_FILTERED_EXPORT)[1:]
    assert not verify_export(starts_with_link).ok
    assert verify_export([]).ok and verify_export([]).summary() == "OK: the export holds no entries."


def test_command_line(tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    export.write_text(SERVER_EXPORT.strip() + "\n", encoding="utf-8")
    key = tmp_path / "key.pem"
    key.write_text(SERVER_PUBLIC_KEY)
    assert verify.main([str(export), "--public-key", str(key)]) == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(edit(SERVER_EXPORT, 3, lambda r: r.update(object_id="x"))) + "\n", encoding="utf-8")
    assert verify.main([str(bad), "--public-key", str(key)]) == 1
    assert verify.main([str(tmp_path / "missing.jsonl")]) == 2
    key.write_text("garbage")
    assert verify.main([str(export), "--public-key", str(key)]) == 2
    # as a module, in a fresh interpreter with nothing but the SDK on the path
    key.write_text(SERVER_PUBLIC_KEY)
    run = subprocess.run(
        [sys.executable, "-m", "custody.verify", str(export), "--public-key", str(key), "--json"],
        capture_output=True,
        text=True,
        cwd=str(SDK),
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["checkpoints_verified"] == 2
