"""numpy arrays: shape, dtype and a content digest (sha256 of dtype, shape and C-ordered bytes)."""

from __future__ import annotations

import hashlib
import sys
from typing import Any, Dict, Optional

from custody.plugins import hookimpl
from custody.plugins._data import data_facets, want_digest

METHOD = "sha256(dtype, shape, C-contiguous bytes)"


@hookimpl
def custody_dataset_facets(
    data: Any, namespace: str, name: str, role: str, digest: Optional[bool], config: Any
) -> Optional[Dict[str, Any]]:
    np = sys.modules.get("numpy")
    if np is None or data is None or not isinstance(data, np.ndarray):
        return None
    content = None
    if want_digest(digest, int(data.size), config) and data.dtype != object:
        h = hashlib.sha256(f"{data.dtype.str}{data.shape}".encode())
        h.update(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
        content = "sha256:" + h.hexdigest()
    fields = None
    if data.dtype.names:
        fields = [{"name": n, "type": str(data.dtype.fields[n][0])} for n in data.dtype.names]
    return data_facets(
        role,
        library="numpy",
        library_version=getattr(np, "__version__", None),
        fields=fields,
        rows=int(data.shape[0]) if data.ndim else 1,
        columns=int(data.shape[1]) if data.ndim > 1 else None,
        size=int(data.nbytes),
        digest=content,
        method=METHOD,
        shape=list(data.shape),
        dtype=str(data.dtype),
    )
