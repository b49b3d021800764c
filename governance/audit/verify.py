"""Recompute the audit chain from the database and name the first broken entry.

Checks, in sequence order (stopping at the first problem):

- the chain starts at sequence 1 with the genesis ``prev_hash`` (or, after retention pruned the
  oldest entries, at an entry whose ``prev_hash`` a signed checkpoint vouches for);
- sequences are contiguous (a deleted entry shows as *missing*, a renumbered one as *out of order*);
- each entry's ``prev_hash`` is the stored hash of the entry before it (catches deletion, insertion
  and reordering);
- each entry's hash equals the hash recomputed from its content (catches any altered value);
- each checkpoint's head hash equals the hash of the entry at its sequence, and its Ed25519
  signature verifies with a trusted key (catches a chain rewritten with fresh hashes, and forged
  checkpoints); a checkpoint beyond the last entry means entries were cut from the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connections, router, transaction

from governance.audit import chain, guards, signing
from governance.audit.models import AuditCheckpoint

ENTRY_COLUMNS = (
    "sequence, timestamp, actor_id, actor_name, action, object_type, object_id, object_repr, "
    "before, after, extra, request_id, source_ip, redacted, prev_hash, hash"
)
# PostgreSQL formats the time exactly as chain.format_time does, in C: turning timestamptz into
# datetime objects would cost more than the rest of the row.
PG_TIME = """to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def entry_select(vendor: str) -> str:
    columns = ENTRY_COLUMNS.replace("timestamp,", f"{PG_TIME},", 1) if vendor == "postgresql" else ENTRY_COLUMNS
    return f"SELECT {columns} FROM {guards.ENTRY_TABLE}"


@dataclass
class Problem:
    sequence: int | None
    kind: str  # altered | missing | out_of_order | broken_link | bad_start | checkpoint_mismatch | bad_signature ...
    detail: str

    def __str__(self) -> str:
        where = f"entry {self.sequence}" if self.sequence is not None else "chain"
        return f"{where}: {self.kind}: {self.detail}"


@dataclass
class VerifyResult:
    ok: bool = True
    entries: int = 0
    first_sequence: int | None = None
    head_sequence: int | None = None
    head_hash: str | None = None
    checkpoints: int = 0
    checkpoints_verified: int = 0
    signatures_checked: bool = True
    latest_checkpoint_sequence: int | None = None
    unanchored_entries: int = 0
    elapsed_seconds: float = 0.0
    problem: Problem | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["first_bad_sequence"] = self.problem.sequence if self.problem else None
        return data


class _Stop(Exception):
    pass


def verify_chain(using: str | None = None, *, chunk_size: int = 10_000, workers: int = 1) -> VerifyResult:
    """Verify the whole chain. ``workers > 1`` (PostgreSQL, outside a transaction: the management
    command) splits it into contiguous ranges verified by forked processes, then checks the seams."""
    db = using or router.db_for_read(AuditCheckpoint)
    started = time.perf_counter()
    result = VerifyResult()
    keys = signing.trusted_public_keys()
    if not keys:
        result.signatures_checked = False
        result.warnings.append("no signing key is configured: checkpoint signatures were not checked")
    checkpoints = list(AuditCheckpoint.objects.using(db).order_by("sequence", "id"))
    result.checkpoints = len(checkpoints)
    by_sequence: dict[int, list[AuditCheckpoint]] = defaultdict(list)
    for cp in checkpoints:
        by_sequence[cp.sequence].append(cp)
    ranges = _ranges(db, workers)
    if len(ranges) > 1:
        _verify_parallel(db, result, by_sequence, keys, chunk_size, ranges)
    else:
        with transaction.atomic(using=db), contextlib.suppress(_Stop):
            _walk(db, result, by_sequence, keys, chunk_size)
    if result.ok and checkpoints:
        last_seq = result.head_sequence or 0
        beyond = [cp for cp in checkpoints if cp.sequence > last_seq]
        if beyond:
            _fail(
                result,
                last_seq + 1,
                "missing",
                f"checkpoint {beyond[0].pk} vouches for entry {beyond[0].sequence}, but the chain ends at "
                f"{last_seq or 'nothing'}: entries were removed from the end",
                stop=False,
            )
    if result.ok and result.head_sequence is not None:
        head = result.head_sequence
        result.latest_checkpoint_sequence = max(
            (cp.sequence for cp in checkpoints if cp.sequence <= head), default=None
        )
        anchored_to = result.latest_checkpoint_sequence or (result.first_sequence or 1) - 1
        result.unanchored_entries = head - anchored_to
    result.elapsed_seconds = round(time.perf_counter() - started, 3)
    return result


PARALLEL_MIN_ENTRIES = 50_000


def _ranges(db: str, workers: int) -> list[tuple[int, int]]:
    conn = connections[db]
    if workers <= 1 or conn.vendor != "postgresql" or conn.in_atomic_block:
        return []
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT min(sequence), max(sequence) FROM {guards.ENTRY_TABLE}")
        low, high = cursor.fetchone()
    if low is None or high - low + 1 < PARALLEL_MIN_ENTRIES:
        return []
    step = (high - low + 1 + workers - 1) // workers
    # The last range is open-ended: entries appended meanwhile are verified too.
    return [
        (start, start + step - 1 if i < workers - 1 else 2**62) for i, start in enumerate(range(low, high + 1, step))
    ]


@dataclass
class _Part:
    result: VerifyResult
    first_prev_hash: str | None = None


def _verify_range(args: tuple[str, tuple[int, int], int, bool, dict[int, list[AuditCheckpoint]]]) -> _Part:
    db, (low, high), chunk_size, first, by_sequence = args
    result = VerifyResult()
    part = _Part(result)
    keys = signing.trusted_public_keys()
    try:
        with transaction.atomic(using=db), contextlib.suppress(_Stop):
            _walk(db, result, by_sequence, keys, chunk_size, low=low, high=high, start=first, part=part)
    finally:
        connections.close_all()
    return part


def _verify_parallel(
    db: str,
    result: VerifyResult,
    by_sequence: dict[int, list[AuditCheckpoint]],
    keys: dict[str, Any],
    chunk_size: int,
    ranges: list[tuple[int, int]],
) -> None:
    import multiprocessing

    connections.close_all()  # the children open their own connections; none may share ours
    jobs = [(db, r, chunk_size, i == 0, by_sequence) for i, r in enumerate(ranges)]
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        parts = pool.map(_verify_range, jobs)
    previous: VerifyResult | None = None
    for part in parts:
        r = part.result
        if r.first_sequence is not None and previous is not None and previous.head_sequence is not None:
            # the seam between two ranges
            if r.first_sequence != previous.head_sequence + 1:
                _seam(result, previous, r.first_sequence)
                return
            if part.first_prev_hash != previous.head_hash:
                result.ok = False
                result.problem = Problem(
                    r.first_sequence,
                    "broken_link",
                    f"prev_hash {part.first_prev_hash} is not the hash of entry {previous.head_sequence} "
                    f"({previous.head_hash}): an entry was inserted, removed or reordered here",
                )
                return
        if result.first_sequence is None:
            result.first_sequence = r.first_sequence
        result.entries += r.entries
        result.checkpoints_verified += r.checkpoints_verified
        result.warnings += r.warnings
        if not r.ok:
            result.ok = False
            result.problem = r.problem
            return
        if r.entries:
            result.head_sequence, result.head_hash = r.head_sequence, r.head_hash
            previous = r


def _seam(result: VerifyResult, previous: VerifyResult, next_sequence: int | None) -> None:
    expected = (previous.head_sequence or 0) + 1
    result.ok = False
    if next_sequence is not None and next_sequence < expected:
        result.problem = Problem(next_sequence, "out_of_order", f"entry {next_sequence} follows entry {expected - 1}")
        return
    last = (next_sequence or expected + 1) - 1
    missing = f"entry {expected}" if last == expected else f"entries {expected}..{last}"
    result.problem = Problem(
        expected, "missing", f"{missing} missing: entry {next_sequence} follows entry {expected - 1}"
    )


def _fail(result: VerifyResult, sequence: int | None, kind: str, detail: str, stop: bool = True) -> None:
    result.ok = False
    result.problem = Problem(sequence, kind, detail)
    if stop:
        raise _Stop


def _check_checkpoints(
    result: VerifyResult, cps: list[AuditCheckpoint], sequence: int, stored_hash: str, keys: dict[str, Any]
) -> None:
    for cp in cps:
        if cp.head_hash != stored_hash:
            _fail(
                result,
                sequence,
                "checkpoint_mismatch",
                f"signed checkpoint {cp.pk} says entry {sequence} has hash {cp.head_hash}, the chain has "
                f"{stored_hash}: the chain up to here was rewritten after the checkpoint",
            )
        if keys:
            valid = signing.signature_valid(cp, keys)
            if valid is None:
                _fail(result, sequence, "unknown_key", f"checkpoint {cp.pk} is signed by unknown key {cp.key_id}")
            if not valid:
                _fail(result, sequence, "bad_signature", f"checkpoint {cp.pk}: the signature does not verify")
        result.checkpoints_verified += 1


def _walk(
    db: str,
    result: VerifyResult,
    by_sequence: dict[int, list[AuditCheckpoint]],
    keys: dict[str, Any],
    chunk_size: int,
    *,
    low: int | None = None,
    high: int | None = None,
    start: bool = True,
    part: _Part | None = None,
) -> None:
    """Walk entries ``low..high`` in order, checking each against the one before it. With
    ``start`` the first entry must begin the chain; otherwise its prev_hash goes to ``part`` for the
    caller to check against the range before. Raises _Stop at the first problem."""
    row_body = chain.make_row_hasher()
    sha = hashlib.sha256
    expected: int | None = None
    prev_hash = ""
    count = 0
    conn = connections[db]
    where = "" if low is None else f" WHERE sequence BETWEEN {int(low)} AND {int(high or low)}"
    try:
        with conn.chunked_cursor() as cursor:
            cursor.execute(entry_select(conn.vendor) + where + " ORDER BY sequence")
            while True:
                rows = cursor.fetchmany(chunk_size)
                if not rows:
                    break
                for row in rows:
                    seq = row[0]
                    if expected is None:
                        result.first_sequence = seq
                        if part is not None:
                            part.first_prev_hash = row[14]
                        if start:
                            _check_start(result, row, by_sequence)
                    elif seq != expected:
                        if seq < expected:
                            _fail(result, seq, "out_of_order", f"entry {seq} follows entry {expected - 1}")
                        missing = f"entry {expected}" if seq == expected + 1 else f"entries {expected}..{seq - 1}"
                        _fail(
                            result, expected, "missing", f"{missing} missing: entry {seq} follows entry {expected - 1}"
                        )
                    elif row[14] != prev_hash:
                        _fail(
                            result,
                            seq,
                            "broken_link",
                            f"prev_hash {row[14]} is not the hash of entry {seq - 1} ({prev_hash}): an entry was "
                            "inserted, removed or reordered here",
                        )
                    try:
                        body = row_body(row)
                    except (ValueError, TypeError, AttributeError) as exc:
                        _fail(result, seq, "altered", f"the entry cannot be read as an audit entry: {exc}")
                    if sha((row[14] + body).encode("ascii")).hexdigest() != row[15]:
                        _fail(
                            result, seq, "altered", "the content does not match the entry's hash (a value was changed)"
                        )
                    prev_hash = row[15]
                    expected = seq + 1
                    count += 1
                    cps = by_sequence.get(seq)
                    if cps:
                        _check_checkpoints(result, cps, seq, prev_hash, keys)
    finally:
        result.entries = count
        if count:
            result.head_sequence = (expected or 1) - 1
            result.head_hash = prev_hash


def _check_start(result: VerifyResult, row: Any, by_sequence: dict[int, list[AuditCheckpoint]]) -> None:
    seq, prev = row[0], row[14]
    if seq == 1:
        if prev != chain.GENESIS:
            _fail(result, 1, "bad_start", "the first entry's prev_hash is not the genesis value (64 zeros)")
        return
    anchors = by_sequence.get(seq - 1, [])
    if any(cp.head_hash == prev for cp in anchors):
        result.warnings.append(f"the chain starts at entry {seq}; entries before it were pruned under a checkpoint")
        return
    first = "entry 1" if seq == 2 else f"entries 1..{seq - 1}"
    _fail(result, 1, "missing", f"{first} missing: the chain starts at entry {seq} and no checkpoint vouches for it")
