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
from tests.test_audit_helpers import AUDIT_URLS

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.urls(AUDIT_URLS)]

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
