"""The fast JSON renderer writes what DRF's renderer writes, and hands DRF what it cannot."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from rest_framework.renderers import JSONRenderer

from lineage.api.renderers import FastJSONRenderer

SAMPLE = {"graph": [{"id": "dataset:s3://b:é/t", "data": {"n": 3, "ok": True, "x": None, "f": 0.5}, "inEdges": []}]}


def test_same_document_as_drf():
    fast, drf = FastJSONRenderer().render(SAMPLE), JSONRenderer().render(SAMPLE)
    assert json.loads(fast) == json.loads(drf) == SAMPLE
    assert "é".encode() in fast  # UTF-8, not \\u escapes, as DRF (UNICODE_JSON)


def test_what_orjson_would_write_differently_goes_to_drf():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for data in ({"at": at}, {1: "non-string key"}, {"big": 2**70}):
        assert FastJSONRenderer().render(data) == JSONRenderer().render(data)
    assert b'"2026-01-02T03:04:05Z"' in FastJSONRenderer().render({"at": at})


def test_indent_asked_for_is_honoured():
    rendered = FastJSONRenderer().render(SAMPLE, "application/json; indent=2")
    assert rendered == JSONRenderer().render(SAMPLE, "application/json; indent=2")
    assert b"\n  " in rendered


def test_nothing_renders_as_empty_body():
    assert FastJSONRenderer().render(None) == b""
