"""The Ed25519 key that signs audit checkpoints, and the checkpoints themselves.

Key sources, first found wins:

1. ``CUSTODY_AUDIT_SIGNING_KEY`` — the PEM text of an Ed25519 private key (PKCS#8, unencrypted);
2. ``CUSTODY_AUDIT_SIGNING_KEY_FILE`` — the path of such a PEM file;
3. with ``DEBUG`` on only: ``$CUSTODY_VAR_DIR/audit-signing-key.pem``, generated on first use (mode 0600).

With ``DEBUG`` off and no key configured, signing raises :class:`SigningKeyMissing` (an
``ImproperlyConfigured``) that says what to set; ``manage.py audit_keygen`` prints a new key.
Each name is read from Django settings first, then from the environment.

Checkpoints verify against the current key and against any previous public keys listed (PEM blocks,
concatenated) in ``CUSTODY_AUDIT_PREVIOUS_PUBLIC_KEYS`` or ``..._FILE``, so a key can be rotated
without orphaning old checkpoints.

Signed message (UTF-8 bytes of canonical JSON)::

    {"hash": <head hash>, "key_id": <key id>, "sequence": <n>, "time": "<UTC ...Z>",
     "type": "custody.audit.checkpoint", "v": 1}

``key_id`` is the first 16 hex digits of SHA-256 over the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import router, transaction
from django.utils import timezone

from governance.audit import chain
from governance.audit.models import AuditCheckpoint, AuditEntry

KEY_ENV = "CUSTODY_AUDIT_SIGNING_KEY"
KEY_FILE_ENV = "CUSTODY_AUDIT_SIGNING_KEY_FILE"
PREVIOUS_ENV = "CUSTODY_AUDIT_PREVIOUS_PUBLIC_KEYS"
PREVIOUS_FILE_ENV = "CUSTODY_AUDIT_PREVIOUS_PUBLIC_KEYS_FILE"
DEV_KEY_NAME = "audit-signing-key.pem"
MESSAGE_TYPE = "custody.audit.checkpoint"
_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


class SigningKeyMissing(ImproperlyConfigured):
    pass


def _setting(name: str) -> str:
    return str(getattr(settings, name, None) or os.environ.get(name, "") or "")


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _parse_private(pem: bytes, source: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{source} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(f"{source} holds a {type(key).__name__}; the audit trail needs an Ed25519 key.")
    return key


def new_private_key_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def dev_key_path() -> Path:
    return Path(settings.VAR_DIR) / DEV_KEY_NAME


def _dev_key() -> Ed25519PrivateKey:
    path = dev_key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process won the race: use its key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(new_private_key_pem())
    return _parse_private(path.read_bytes(), str(path))


def load_private_key() -> Ed25519PrivateKey:
    pem = _setting(KEY_ENV)
    if pem:
        return _parse_private(pem.encode("utf-8"), KEY_ENV)
    path = _setting(KEY_FILE_ENV)
    if path:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ImproperlyConfigured(f"{KEY_FILE_ENV}={path} cannot be read: {exc.strerror}") from exc
        return _parse_private(data, f"{KEY_FILE_ENV}={path}")
    if settings.DEBUG:
        return _dev_key()
    raise SigningKeyMissing(
        f"No audit signing key. Set {KEY_ENV} to the PEM text of an Ed25519 private key, or {KEY_FILE_ENV} "
        f"to a file holding one (`python manage.py audit_keygen` prints a new key). A key is generated "
        f"automatically only with DEBUG on."
    )


def signing_key_available() -> bool:
    try:
        load_private_key()
    except ImproperlyConfigured:
        return False
    return True


@dataclass(frozen=True)
class PublicKey:
    key: Ed25519PublicKey
    key_id: str
    pem: str
    current: bool


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def current_public_key() -> PublicKey:
    public = load_private_key().public_key()
    return PublicKey(public, key_id_of(public), public_pem(public), True)


def trusted_public_keys() -> dict[str, PublicKey]:
    """key id → key: the current key (when configured) and the previous public keys."""
    keys: dict[str, PublicKey] = {}
    text = _setting(PREVIOUS_ENV)
    path = _setting(PREVIOUS_FILE_ENV)
    if path:
        text += "\n" + Path(path).read_text()
    for block in _PEM_BLOCK.findall(text):
        loaded = serialization.load_pem_public_key(block.encode())
        if isinstance(loaded, Ed25519PublicKey):
            keys[key_id_of(loaded)] = PublicKey(loaded, key_id_of(loaded), public_pem(loaded), False)
    with contextlib.suppress(ImproperlyConfigured):
        current = current_public_key()
        keys[current.key_id] = current
    return keys


def checkpoint_message(sequence: int, head_hash: str, time: str, key_id: str) -> bytes:
    return chain.canonical_json(
        {"hash": head_hash, "key_id": key_id, "sequence": sequence, "time": time, "type": MESSAGE_TYPE, "v": 1}
    ).encode("utf-8")


def checkpoint_message_of(checkpoint: AuditCheckpoint) -> bytes:
    return checkpoint_message(
        checkpoint.sequence, checkpoint.head_hash, chain.format_time(checkpoint.created_at), checkpoint.key_id
    )


def signature_valid(checkpoint: AuditCheckpoint, keys: dict[str, PublicKey]) -> bool | None:
    """True/False, or None when no trusted key has the checkpoint's key id."""
    public = keys.get(checkpoint.key_id)
    if public is None:
        return None
    try:
        public.key.verify(base64.b64decode(checkpoint.signature), checkpoint_message_of(checkpoint))
    except (InvalidSignature, ValueError):
        return False
    return True


def create_checkpoint(*, force: bool = False, using: str | None = None) -> AuditCheckpoint | None:
    """Sign the chain's current head. Returns None when the chain is empty, or when the head is
    already checkpointed (unless ``force``)."""
    db = using or router.db_for_write(AuditCheckpoint)
    key = load_private_key()  # fail loudly before touching the database
    key_id = key_id_of(key.public_key())
    with transaction.atomic(using=db):
        head = AuditEntry.objects.using(db).order_by("-sequence").values_list("sequence", "hash").first()
        if head is None:
            return None
        last = AuditCheckpoint.objects.using(db).order_by("-sequence", "-id").first()
        if not force and last is not None and last.sequence == head[0] and last.key_id == key_id:
            return None
        now = timezone.now()
        message = checkpoint_message(head[0], head[1], chain.format_time(now), key_id)
        return AuditCheckpoint.objects.using(db).create(
            sequence=head[0],
            head_hash=head[1],
            created_at=now,
            key_id=key_id,
            algorithm="Ed25519",
            signature=base64.b64encode(key.sign(message)).decode("ascii"),
        )


def checkpoint_record(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """The export/API form of a checkpoint (what the offline verifier reads)."""
    return {
        "type": "checkpoint",
        "sequence": checkpoint.sequence,
        "hash": checkpoint.head_hash,
        "time": chain.format_time(checkpoint.created_at),
        "key_id": checkpoint.key_id,
        "algorithm": checkpoint.algorithm,
        "signature": checkpoint.signature,
    }
