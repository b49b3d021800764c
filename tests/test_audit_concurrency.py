"""Concurrent writers on PostgreSQL still produce one unbroken chain with no gaps."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.db import connection, transaction

from governance.audit.models import AuditEntry
from governance.audit.services import record
from governance.audit.verify import verify_chain
from lineage.ingest.service import ingest

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WRITERS = 8
PER_WRITER = 40


def _run_threads(target: Any, count: int) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def wrapped(index: int) -> None:
        try:
            barrier.wait()
            target(index)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_parallel_writers_make_one_chain_without_gaps() -> None:
    start = AuditEntry.objects.count()

    def write(index: int) -> None:
        for i in range(PER_WRITER):
            with transaction.atomic():
                # some work in the same transaction before the append, as a real action does
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_sleep(0.0005)")
                record("test.concurrent", object_type="test.writer", object_id=f"{index}:{i}", actor=None)

    errors = _run_threads(write, WRITERS)
    assert not errors, errors
    sequences = list(AuditEntry.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, start + WRITERS * PER_WRITER + 1))
    ids = set(AuditEntry.objects.filter(action="test.concurrent").values_list("object_id", flat=True))
    assert len(ids) == WRITERS * PER_WRITER
    result = verify_chain()
    assert result.ok, result.problem
    assert result.entries == start + WRITERS * PER_WRITER


def test_parallel_ingestion_and_rollbacks_keep_the_chain_whole() -> None:
    """Writers that roll back after appending leave no hole: the next writer reuses the sequence."""
    start = AuditEntry.objects.count()

    def work(index: int) -> None:
        for i in range(10):
            if index % 2:
                ingest([_event(f"job-{index}-{i}")])
            else:
                try:
                    with transaction.atomic():
                        record("test.doomed", actor=None)
                        if i % 2:
                            raise RuntimeError("roll back")
                except RuntimeError:
                    pass

    errors = _run_threads(work, 6)
    assert not errors, errors
    result = verify_chain()
    assert result.ok, result.problem
    expected = start + 3 * 10 + 3 * 5  # three ingesting writers, three writers keeping half their entries
    assert result.entries == expected == AuditEntry.objects.count()
    assert AuditEntry.objects.filter(action="lineage.ingest").count() == 30


def _event(job: str) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE",
        "eventTime": "2025-06-01T12:00:00Z",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "concurrency", "name": job},
        "producer": "https://example.com/custody-tests",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }


# --- parallel verification (manage.py audit_verify --workers N) -----------------------------------
@pytest.fixture
def small_parallel_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    from governance.audit import verify

    monkeypatch.setattr(verify, "PARALLEL_MIN_ENTRIES", 10)


def _same_verdict(workers: int) -> tuple[bool, Any, Any]:
    one, many = verify_chain(workers=1), verify_chain(workers=workers)
    assert one.ok == many.ok
    if one.ok:
        assert one.entries == many.entries and one.head_hash == many.head_hash
    p1, pn = one.problem, many.problem
    serial = (p1.sequence, p1.kind) if p1 else None
    parallel = (pn.sequence, pn.kind) if pn else None
    assert serial == parallel
    return many.ok, (pn.sequence if pn else None), (pn.kind if pn else None)


@pytest.mark.parametrize("workers", [2, 3])
def test_parallel_verification_agrees_with_the_serial_walk(small_parallel_threshold: None, workers: int) -> None:
    from governance.audit import guards
    from tests.test_audit_helpers import triggers_bypassed

    for i in range(30):
        record("test.parallel", object_id=i, after={"i": i}, actor=None)
    head = AuditEntry.objects.count()
    assert _same_verdict(workers) == (True, None, None)
    assert verify_chain(workers=workers).entries == head

    cases = [
        ("UPDATE {t} SET object_repr = 'x' WHERE sequence = 25", (25, "altered")),
        ("DELETE FROM {t} WHERE sequence = 11", (11, "missing")),  # at or near a seam
        ("DELETE FROM {t} WHERE sequence BETWEEN 20 AND 22", (11, "missing")),
    ]
    for sql, expected in cases:
        with triggers_bypassed() as cursor:
            cursor.execute(sql.format(t=guards.ENTRY_TABLE))
        ok, sequence, kind = _same_verdict(workers)
        assert not ok and (sequence, kind) == expected, (sql, sequence, kind)


def test_parallel_seams_catch_a_broken_link(small_parallel_threshold: None) -> None:
    from governance.audit import guards
    from tests.test_audit_helpers import triggers_bypassed

    for i in range(30):
        record("test.parallel", object_id=i, actor=None)
    # the first entry of each range links to the entry before it: break every one of them in turn
    for target in (11, 16, 21):
        with triggers_bypassed() as cursor:
            cursor.execute(f"SELECT prev_hash FROM {guards.ENTRY_TABLE} WHERE sequence = %s", [target])
            original = cursor.fetchone()[0]
            cursor.execute(f"UPDATE {guards.ENTRY_TABLE} SET prev_hash = %s WHERE sequence = %s", ["0" * 64, target])
        for workers in (2, 3):
            result = verify_chain(workers=workers)
            assert not result.ok and result.problem is not None
            assert (result.problem.sequence, result.problem.kind) == (target, "broken_link"), workers
        with triggers_bypassed() as cursor:
            cursor.execute(f"UPDATE {guards.ENTRY_TABLE} SET prev_hash = %s WHERE sequence = %s", [original, target])
        assert verify_chain(workers=3).ok
