"""Small helpers shared by the SDK: times, ids, JSON-safe values, digests, dataset names."""

from __future__ import annotations

import math
import os
import time
from datetime import datetime, timezone
from typing import Any, Dict, Optional, Tuple

from custody._version import PRODUCER, SCHEMA_BASE

_CHUNK = 1 << 20
OL_BASE = "https://openlineage.io/spec"


def iso(ts: Optional[float] = None) -> str:
    """An RFC 3339 UTC timestamp with microseconds (``2024-05-01T12:00:00.123456Z``)."""
    if ts is None:
        ts = time.time()
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def uuid7(ts: Optional[float] = None) -> str:
    """A UUIDv7 (time-ordered, as OpenLineage recommends for run ids)."""
    ms = int((time.time() if ts is None else ts) * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def facet(schema_url: str, /, **fields: Any) -> Dict[str, Any]:
    """A facet with the OpenLineage base fields (``_producer``, ``_schemaURL``)."""
    out: Dict[str, Any] = {"_producer": PRODUCER, "_schemaURL": schema_url}
    out.update((k, v) for k, v in fields.items() if v is not None)
    return out


def ol_facet(path: str, /, **fields: Any) -> Dict[str, Any]:
    """A standard OpenLineage facet; ``path`` like ``1-0-1/ErrorMessageRunFacet``."""
    name = path.split("/")[-1]
    return facet(f"{OL_BASE}/facets/{path}.json#/$defs/{name}", **fields)


def custody_facet(name: str, definition: str, /, **fields: Any) -> Dict[str, Any]:
    """One of the SDK's own facets; its JSON schema is ``custody/schemas/<name>.json``."""
    return facet(f"{SCHEMA_BASE}/{name}.json#/$defs/{definition}", **fields)


def json_safe(value: Any, _depth: int = 0) -> Any:
    """``value`` made representable in strict JSON: NaN and infinities become strings, numpy and
    other scalars become Python numbers, unknown objects their ``str``; nesting is capped."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return (
            value if math.isfinite(value) else ("NaN" if value != value else ("Infinity" if value > 0 else "-Infinity"))
        )
    if _depth > 20:
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [json_safe(v, _depth + 1) for v in items]
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item) and getattr(value, "ndim", 0) == 0:
        try:
            return json_safe(item(), _depth + 1)
        except Exception:
            pass
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def metric_value(value: Any) -> Any:
    """A metric value as a JSON number, or the strings ``NaN``/``Infinity``/``-Infinity``."""
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, (int, float)):
        item = getattr(value, "item", None)
        value = float(item() if callable(item) else value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return value


def file_digest(path: str) -> Tuple[str, int]:
    """``("sha256:<hex>", size)`` of a file's content."""
    import hashlib

    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            h.update(chunk)
    return "sha256:" + h.hexdigest(), size


def tree_digest(path: str) -> Tuple[str, int]:
    """Digest of a directory: sha256 over the sorted lines ``<relative path> NUL <file digest>``."""
    import hashlib

    entries = []
    total = 0
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in files:
            full = os.path.join(root, name)
            if os.path.islink(full) and not os.path.exists(full):
                continue
            digest, size = file_digest(full)
            total += size
            entries.append(f"{os.path.relpath(full, path).replace(os.sep, '/')}\x00{digest}\n")
    h = hashlib.sha256()
    for line in sorted(entries):
        h.update(line.encode("utf-8", "surrogateescape"))
    return "sha256:" + h.hexdigest(), total


def path_digest(path: str) -> Tuple[str, int]:
    return tree_digest(path) if os.path.isdir(path) else file_digest(path)


def split_dataset(namespace_or_uri: Any, name: Optional[str]) -> Tuple[str, str]:
    """OpenLineage (namespace, name) from ``(namespace, name)`` or one URI / local path.

    ``s3://bucket/key`` becomes ``("s3://bucket", "key")``; a local path ``("file", <absolute path>)``.
    """
    if name is not None:
        return str(namespace_or_uri), str(name)
    text = os.fspath(namespace_or_uri) if hasattr(namespace_or_uri, "__fspath__") else str(namespace_or_uri)
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme == "file":
            return "file", rest or "/"
        authority, _, path = rest.partition("/")
        return f"{scheme}://{authority}", path or "/"
    return "file", os.path.abspath(os.path.expanduser(text))
