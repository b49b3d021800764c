"""Large events: serialised a piece at a time, staged into PostgreSQL slice by slice, stored intact.

The memory goal itself (a 32 MB event within 300 MB of worker RSS) is measured by
``bench.rss_32mb``; these tests pin down that the memory-saving paths store exactly what the
plain ones would.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
import pytest
from django.db import connection, transaction
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from lineage.ingest.canonical import canonical_json, canonical_pieces
from lineage.ingest.json_pieces import PIECE_VALUES, json_pieces
from lineage.models.fields import _json_bytes

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
    lambda children: st.lists(children, max_size=9) | st.dictionaries(st.text(max_size=4), children, max_size=9),
    max_leaves=120,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(min_value=1, max_value=12))
def test_pieces_join_to_the_whole_serialisation(value: Any, piece_values: int) -> None:
    canonical = list(json_pieces(value, canonical_json, sort_keys=True, piece_values=piece_values))
    assert "".join(canonical) == canonical_json(value)
    written = b"".join(json_pieces(value, _json_bytes, sort_keys=False, piece_values=piece_values))
    assert json.dumps(json.loads(written)) == json.dumps(value)  # same values, same key order


def test_a_large_value_is_cut_into_pieces_of_bounded_size() -> None:
    value = {"fields": [{"name": f"f{i}", "type": "INT"} for i in range(20_000)], "b": {"k": 1}}
    pieces = canonical_pieces(value)
    assert len(pieces) > 3
    assert "".join(pieces) == canonical_json(value)
    assert max(len(piece) for piece in pieces) < len(canonical_json(value)) / 3


def _big_event() -> dict[str, Any]:
    fields = [
        {
            "name": f"col_{i:05d}",
            "type": ("STRING", "BIGINT", "DOUBLE")[i % 3],
            "description": f'a "quoted" \\ back\\slash, é ✓ \u2028 {i}',
            "nullable": i % 2 == 0,
        }
        for i in range(6_000)
    ]
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-03-01T00:00:00Z",
        "producer": "https://example.com/big",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {
            "runId": "9d1c2a44-0000-4000-8000-00000000b16e",
            "facets": {
                # wide: one object with more keys than a piece holds values
                "custom_profile": {f"metric_{i:05d}": {"v": i * 0.5, "big": 2**70 + i} for i in range(PIECE_VALUES)},
                # long: few values, one of them over a MiB (sent in slices)
                "custom_blob": {"text": 'x\\y"z' * 250_000},
            },
        },
        "job": {"namespace": "large-docs", "name": "wide_table"},
        "inputs": [],
        "outputs": [
            {
                "namespace": "large-docs",
                "name": "warehouse.wide",
                "facets": {
                    "schema": {
                        "_producer": "https://example.com/big",
                        "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
                        "fields": fields,
                    }
                },
            }
        ],
    }


@pytest.mark.django_db
def test_a_large_event_is_stored_intact(post_event: Any) -> None:
    from lineage.models import Dataset, DatasetVersion, RawEvent, Run

    event = _big_event()
    response = post_event(event)
    assert response.status_code == 201, response.content[:300]
    digest = hashlib.sha256(canonical_json(event).encode()).hexdigest()
    assert response.json()["digest"] == digest

    assert RawEvent.objects.get(digest=digest).payload == event
    run = Run.objects.get(run_id="9d1c2a44-0000-4000-8000-00000000b16e")
    assert run.facets["custom_profile"] == event["run"]["facets"]["custom_profile"]
    assert run.facets["custom_blob"] == event["run"]["facets"]["custom_blob"]
    schema = event["outputs"][0]["facets"]["schema"]
    dataset = Dataset.objects.get(namespace__name="large-docs", name="warehouse.wide")
    assert dataset.facets["schema"] == schema
    assert len(dataset.fields) == 6_000
    assert dataset.fields[7] == {
        "name": "col_00007",
        "type": "BIGINT",
        "description": schema["fields"][7]["description"],
        "nullable": False,
        "tags": [],
    }
    (version,) = DatasetVersion.objects.filter(dataset=dataset)
    assert version.facets["schema"] == schema
    assert version.fields == dataset.fields

    again = post_event(event)
    assert again.status_code == 201 and again.json() == {"status": "duplicate", "digest": digest}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_documents_are_staged_only_inside_a_transaction_and_read_back_exactly() -> None:
    from lineage.ingest.staging import Staged, can_stage, expecting_large, placeholder, stage_large

    assert not can_stage(connection)  # autocommit: the staging table is emptied at every commit
    wide = {f"k{i}": [i, "é\\", {"n": 2**70}] for i in range(PIECE_VALUES)}
    long = {"text": "\\" * (1 << 20)}
    small = {"a": 1}
    with transaction.atomic():
        assert can_stage(connection)
        params: list[Any] = [
            Jsonb(wide, dumps=_json_bytes),
            Jsonb(long, dumps=_json_bytes),
            Jsonb(small, dumps=_json_bytes),
            7,
        ]
        assert not stage_large(connection, params, [0, 1, 2])  # not expected: left for psycopg
        assert [type(p) for p in params] == [Jsonb, Jsonb, Jsonb, int]
        with expecting_large():
            assert stage_large(connection, params, [0, 1, 2])
        assert isinstance(params[0], Staged) and isinstance(params[1], Staged)
        assert isinstance(params[2], Jsonb) and params[2].obj == orjson.dumps(small)
        sql = "SELECT " + ", ".join(placeholder("%s", value) for value in params)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
    assert [json.loads(v) if isinstance(v, str) else v for v in row] == [wide, long, small, 7]
    with connection.cursor() as cursor:  # emptied at commit
        cursor.execute("SELECT count(*) FROM pg_temp.custody_staged_document")
        assert cursor.fetchone() == (0,)


@pytest.mark.django_db
def test_a_large_event_is_not_kept_alive_after_its_request(post_event: Any) -> None:
    """The projection's model instances refer to one another: without a collection at the end of
    the request they, and the event they hold, would outlive it until the next full collection."""
    import gc

    from lineage.models import Dataset

    gc.collect()
    gc.disable()
    try:
        assert post_event(_big_event()).status_code == 201
        alive = [o for o in gc.get_objects() if isinstance(o, Dataset) and o.name == "warehouse.wide"]
    finally:
        gc.enable()
    assert alive == []
