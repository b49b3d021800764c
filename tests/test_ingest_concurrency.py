"""Two requests create the same job, datasets and run at once (PostgreSQL): the second one's insert
meets the first one's uncommitted rows, skips them once they commit, and locks and uses them."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction

from lineage.ingest.service import ingest
from lineage.models import Dataset, Job, Run, RunInput, RunOutput

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

RUN_ID = "0190a5e5-7b1c-7d1e-9a44-5d3c2b1a0f99"


def _event(event_type: str, at: str, output_facet: str, run_id: str = RUN_ID, prefix: str = "") -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": at,
        "run": {"runId": run_id},
        "job": {"namespace": "race", "name": f"{prefix}nightly"},
        "inputs": [{"namespace": "warehouse", "name": f"{prefix}raw.orders"}],
        "outputs": [
            {
                "namespace": "warehouse",
                "name": f"{prefix}mart.orders",
                "facets": {"documentation": {"_producer": "https://example.com", "description": output_facet}},
            }
        ],
        "producer": "https://example.com/custody-tests",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }


def test_rows_a_concurrent_request_created_meanwhile_are_locked_and_used() -> None:
    # The namespaces exist already: the second request then first meets the job's row.
    ingest([_event("COMPLETE", "2025-05-01T10:00:00Z", "elsewhere", run_id="another-run", prefix="other.")])
    first_done, release = threading.Event(), threading.Event()
    outcomes: dict[str, Any] = {}

    def first() -> None:
        try:
            with transaction.atomic():  # holds the new rows uncommitted until released
                outcomes["first"] = ingest([_event("START", "2025-06-01T10:00:00Z", "from START")])
                first_done.set()
                assert release.wait(30)
        except BaseException as exc:
            outcomes["first"] = exc
            first_done.set()
        finally:
            connection.close()

    def second() -> None:
        try:
            outcomes["second"] = ingest([_event("COMPLETE", "2025-06-01T11:00:00Z", "from COMPLETE")])
            outcomes["second_finished"] = time.monotonic()
        except BaseException as exc:
            outcomes["second"] = exc
        finally:
            connection.close()

    one = threading.Thread(target=first)
    one.start()
    assert first_done.wait(30)
    two = threading.Thread(target=second)
    two.start()
    time.sleep(0.5)  # the second request is now waiting on the first one's uncommitted rows
    assert two.is_alive(), outcomes
    released = time.monotonic()
    release.set()
    one.join(30)
    two.join(30)

    assert [o.status for o in outcomes["first"]] == ["created"]
    assert [o.status for o in outcomes["second"]] == ["created"]
    assert outcomes["second_finished"] > released
    assert Job.objects.filter(namespace__name="race", name="nightly").count() == 1
    assert Dataset.objects.filter(namespace__name="warehouse").count() == 4
    run = Run.objects.get(run_id=RUN_ID)
    assert run.job.name == "nightly"
    assert run.state == "COMPLETED"
    assert run.started_at is not None and run.ended_at is not None
    mart = Dataset.objects.get(name="mart.orders")
    assert mart.facets["documentation"]["description"] == "from COMPLETE"  # the newer event's facet
    assert RunInput.objects.filter(run=run).count() == 1
    assert RunOutput.objects.filter(run=run, dataset=mart).count() == 1
