"""Accepted events against the OpenLineage JSON Schema (2-0-2) and its standard facet schemas.

Every spec-valid example validates and is accepted; the few examples that are not spec-valid are
exactly the deviations Marquez tolerates (documented in the examples' SOURCES.md), and Custody
accepts them too.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from lineage.ingest.event import kind_from_schema_url
from tests.conftest import EXAMPLES, SPECS, complete_example_files, require_shared

pytestmark = pytest.mark.django_db


@cache
def registry_and_facets() -> tuple[Registry, dict[str, dict[str, Any]]]:
    spec_dir = require_shared(SPECS / "openlineage")
    resources = []
    facets: dict[str, dict[str, Any]] = {}
    for path in [spec_dir / "OpenLineage.json", *sorted((spec_dir / "facets").glob("*.json"))]:
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
        for key, ref in schema.get("properties", {}).items():
            if "$ref" in ref:
                facets[key] = {"$ref": schema["$id"] + ref["$ref"]}
    return Registry().with_resources(resources), facets


def spec_errors(event: dict[str, Any]) -> list[str]:
    registry, facet_schemas = registry_and_facets()
    kind = kind_from_schema_url(event.get("schemaURL"))
    root = {"$ref": f"https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/{kind}"}
    validator = Draft202012Validator(root, registry=registry, format_checker=FormatChecker())
    errors = [e.message for e in validator.iter_errors(event)]
    holders = [event.get("run", {}), event.get("job", {}), event.get("dataset", {})]
    holders += list(event.get("inputs") or []) + list(event.get("outputs") or [])
    for holder in holders:
        for group in ("facets", "inputFacets", "outputFacets"):
            for key, value in (holder.get(group) or {}).items():
                if key in facet_schemas:
                    validator = Draft202012Validator(facet_schemas[key], registry=registry)
                    errors += [f"{group}.{key}: {e.message}" for e in validator.iter_errors(value)]
    return errors


def documented_validity() -> dict[str, bool]:
    """The 'spec-valid' column of SOURCES.md: file → True when every event in it is valid."""
    text = require_shared(EXAMPLES / "SOURCES.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \|[^\n]*?\| (\d+)/(\d+) \|", text, flags=re.MULTILINE)
    return {name: valid == total for name, valid, total in rows if "_partial" not in name}


@pytest.mark.parametrize("path", complete_example_files(), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_accepted_examples_match_their_documented_spec_validity(post_event, path):
    event = json.loads(path.read_text())
    relative = path.relative_to(EXAMPLES).as_posix()
    expected_valid = documented_validity()[relative]
    errors = spec_errors(event)
    assert (not errors) == expected_valid, errors
    assert post_event(event).status_code == 201


def test_every_complete_example_is_documented():
    assert set(documented_validity()) == {p.relative_to(EXAMPLES).as_posix() for p in complete_example_files()}
