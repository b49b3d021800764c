"""Canonical JSON and content digests: the same event always hashes the same, however formatted."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lineage.ingest.json_pieces import json_pieces


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_pieces(value: Any) -> list[str]:
    """:func:`canonical_json` of ``value`` as a list of pieces whose concatenation is that text,
    never joined (see :mod:`lineage.ingest.json_pieces`)."""
    return list(json_pieces(value, canonical_json, sort_keys=True))


def digest_of(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def find_unstorable_string(value: Any, path: str = "") -> str | None:
    """Path of the first string (key or value) holding NUL or a lone surrogate, which no database
    text column can store; None when there is none."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _unstorable(item):
                return where or "(root)"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}.{key}" if where else str(key)
                if _unstorable(key):
                    return child_path
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return None


def _unstorable(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
