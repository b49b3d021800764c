"""JSON columns: what orjson writes and what it hands to the standard library land the same."""

from __future__ import annotations

import json

import pytest

from lineage.models.fields import _json_bytes

pytestmark = pytest.mark.django_db


def test_json_bytes_match_the_standard_library():
    value = {"name": "é\u2028", "n": [1, 2.5, None, True], "nested": {"k": "v"}}
    assert json.loads(_json_bytes(value)) == value
    big = {"rows": 2**70}  # beyond 64 bits: orjson refuses, the standard library writes it
    assert json.loads(_json_bytes(big)) == big


def test_facets_orjson_cannot_write_are_stored_intact(post_event):
    from lineage.models import Run

    event = {
        "eventType": "COMPLETE",
        "eventTime": "2026-01-01T00:00:00Z",
        "producer": "https://example.com/p",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {
            "runId": "7f3a7c8e-0000-4000-8000-000000000001",
            "facets": {"custom_counts": {"rows": 2**70, "ratio": 0.1, "label": "é"}},
        },
        "job": {"namespace": "json-columns", "name": "big_numbers"},
        "inputs": [],
        "outputs": [],
    }
    assert post_event(event).status_code == 201
    run = Run.objects.get(run_id="7f3a7c8e-0000-4000-8000-000000000001")
    assert run.facets["custom_counts"] == {"rows": 2**70, "ratio": 0.1, "label": "é"}
