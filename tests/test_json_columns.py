"""JSON columns: what orjson writes and what it hands to the standard library land the same."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from lineage.models.fields import DocumentField, _json_bytes

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


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)  # infinities too: written as 1e400-like numbers by some producers
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 == 1.0 would hide an int read as a float)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (a != a and b != b)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_json_columns_are_read_exactly_as_the_standard_library_reads_them(value: Any) -> None:
    field = DocumentField()
    for text in (json.dumps(value), json.dumps(value, separators=(",", ":")).replace("Infinity", "1e400")):
        expected = json.loads(text)
        assert _same(field.from_db_value(text, None, connection), expected), text
