"""Dataset schemas: normalising the `schema` facet and classifying changes between versions.

MAJOR (breaking for readers): a field removed, its type changed, or it became nullable.
MINOR (additive): a field added, or a nullable field became required.
PATCH: only descriptions changed.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass
from typing import Any

LEVEL_ORDER = {"PATCH": 0, "MINOR": 1, "MAJOR": 2}
_DIGEST_CHUNK = 4096  # fields serialised per step when hashing a schema


class _Fields(list[dict[str, Any]]):
    """The normalised fields of one schema facet object (a plain list to everything else).

    Remembers the facet it was made from and its digest, so the dataset and its version (which
    hold the same facet object) share one list instead of each building a copy: a schema facet can
    have 100k+ fields. Pickles and copies as a plain list."""

    __slots__ = ("__weakref__", "digest", "source")
    source: dict[str, Any]
    digest: str | None

    def __reduce__(self) -> Any:
        return (list, (list(self),))


# id(facet) -> its normalised fields, for as long as someone holds that list (which holds the facet,
# so the id cannot be reused meanwhile).
_normalised: weakref.WeakValueDictionary[int, _Fields] = weakref.WeakValueDictionary()


def normalise_fields(schema_facet: Any) -> list[dict[str, Any]]:
    """Flatten the facet's (possibly nested) fields into [{name, type, description, nullable?, tags}].

    The same facet object gives the same list back while that list is alive: treat it as read-only."""
    if not isinstance(schema_facet, dict):
        return []
    cached = _normalised.get(id(schema_facet))
    if cached is not None and cached.source is schema_facet:
        return cached
    out = _Fields()
    out.source, out.digest = schema_facet, None

    def walk(fields: Any, prefix: str) -> None:
        if not isinstance(fields, list):
            return
        for item in fields:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            name = f"{prefix}{item['name']}" if prefix else item["name"]
            entry: dict[str, Any] = {
                "name": name,
                "type": str(item.get("type") or ""),
                "description": item.get("description") if isinstance(item.get("description"), str) else None,
                "tags": [],
            }
            if isinstance(item.get("nullable"), bool):
                entry["nullable"] = item["nullable"]
            out.append(entry)
            walk(item.get("fields"), f"{name}.")

    walk(schema_facet.get("fields"), "")
    _normalised[id(schema_facet)] = out
    return out


def schema_digest(fields: list[dict[str, Any]]) -> str:
    """SHA-256 of the fields' sorted-keys compact JSON, hashed a slice of fields at a time (the
    JSON of a list is its items' JSON joined by commas in brackets) so it is never whole in memory."""
    if isinstance(fields, _Fields) and fields.digest is not None:
        return fields.digest
    h = hashlib.sha256(b"[")
    for start in range(0, len(fields), _DIGEST_CHUNK):
        part = json.dumps(fields[start : start + _DIGEST_CHUNK], sort_keys=True, separators=(",", ":"))
        h.update((part[1:-1] if start == 0 else "," + part[1:-1]).encode())
    h.update(b"]")
    digest = h.hexdigest()
    if isinstance(fields, _Fields):
        fields.digest = digest
    return digest


@dataclass(frozen=True)
class SchemaDiff:
    level: str
    changes: list[dict[str, Any]]
    explanation: str


def diff_schemas(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> SchemaDiff | None:
    """Classify the change from ``before`` to ``after``; None when they are identical."""
    old = {f["name"]: f for f in before}
    new = {f["name"]: f for f in after}
    changes: list[dict[str, Any]] = []
    for name in old.keys() - new.keys():
        changes.append({"kind": "removed", "field": name, "level": "MAJOR", "before": old[name]["type"]})
    for name in new.keys() - old.keys():
        changes.append({"kind": "added", "field": name, "level": "MINOR", "after": new[name]["type"]})
    for name in old.keys() & new.keys():
        a, b = old[name], new[name]
        if a["type"] != b["type"]:
            changes.append(
                {"kind": "type_changed", "field": name, "level": "MAJOR", "before": a["type"], "after": b["type"]}
            )
        if "nullable" in a or "nullable" in b:
            was, now = a.get("nullable", True), b.get("nullable", True)
            if was != now:
                level = "MAJOR" if now else "MINOR"
                changes.append(
                    {"kind": "nullability_changed", "field": name, "level": level, "before": was, "after": now}
                )
        if (a.get("description") or "") != (b.get("description") or ""):
            changes.append(
                {
                    "kind": "description_changed",
                    "field": name,
                    "level": "PATCH",
                    "before": a.get("description"),
                    "after": b.get("description"),
                }
            )
    if not changes:
        return None
    changes.sort(key=lambda c: (-LEVEL_ORDER[c["level"]], c["field"], c["kind"]))
    level = changes[0]["level"]
    return SchemaDiff(level=level, changes=changes, explanation=_explain(level, changes))


_PHRASES = {
    "removed": "field {field} ({before}) was removed",
    "added": "field {field} ({after}) was added",
    "type_changed": "field {field} changed type from {before} to {after}",
    "nullability_changed": "field {field} became {nullability}",
    "description_changed": "the description of field {field} changed",
}
_WHY = {
    "MAJOR": "Breaking change: readers of this dataset may fail",
    "MINOR": "Additive change: existing readers keep working",
    "PATCH": "Documentation-only change",
}


def _explain(level: str, changes: list[dict[str, Any]]) -> str:
    parts = []
    for change in changes:
        nullability = "nullable" if change.get("after") is True else "required"
        parts.append(
            _PHRASES[change["kind"]].format(nullability=nullability, **{"before": None, "after": None, **change})
        )
    return f"{_WHY[level]}: " + "; ".join(parts) + "."
