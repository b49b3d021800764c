"""Pipelined statements on the ingestion path (PostgreSQL): reads sent together answer as if sent
one by one, and an error inside a pipeline surfaces as Django's error and loses the whole unit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection, transaction

from lineage.ingest.rows import Table, pipelined
from lineage.ingest.staging import expecting_large
from lineage.models import Namespace

AT = datetime(2025, 3, 1, tzinfo=UTC)


def _namespace(name: str) -> Namespace:
    return Namespace(name=name, created_at=AT, updated_at=AT)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_reads_sent_together_are_answered_each_in_its_own_order() -> None:
    table = Table.of(Namespace)
    table.insert([_namespace(f"ns-{i}") for i in range(5)])
    with transaction.atomic(), pipelined(connection):
        assert connection.connection._pipeline is not None  # really pipelined
        first = table.select_later(*table.any_of("name", ["ns-3", "ns-1"]), order_by=table.column("name"))
        second = table.select_later(*table.any_of("name", ["ns-4"]))
        none = table.select_later(*table.any_of("name", ["missing"]))
        # Read out of order: each answer belongs to its own statement.
        assert [ns.name for ns in second()] == ["ns-4"]
        assert none() == []
        assert [ns.name for ns in first()] == ["ns-1", "ns-3"]
    assert connection.connection._pipeline is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_failed_write_in_a_pipeline_is_djangos_error_and_nothing_of_the_unit_is_kept() -> None:
    table = Table.of(Namespace)
    table.insert([_namespace("taken")])
    with pytest.raises(IntegrityError, match="lineage_namespace"), transaction.atomic(), pipelined(connection):
        table.insert([_namespace("kept-only-if-all-succeeds")])  # nothing read: not yet sent back
        table.insert([_namespace("taken")])  # violates the unique name
    assert sorted(Namespace.objects.values_list("name", flat=True)) == ["taken"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_pipeline_while_large_documents_may_be_staged() -> None:
    """Staging copies documents with COPY, which a pipeline refuses."""
    with transaction.atomic(), expecting_large(), pipelined(connection):
        assert connection.connection._pipeline is None
