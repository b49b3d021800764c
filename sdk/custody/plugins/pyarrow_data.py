"""pyarrow Tables and RecordBatches: schema (with nullability), row count, and a content digest
(sha256 of the Arrow IPC stream of the data with its chunks combined)."""

from __future__ import annotations

import hashlib
import sys
from typing import Any, Dict, List, Optional

from custody.plugins import hookimpl
from custody.plugins._data import data_facets, want_digest

METHOD = "sha256(Arrow IPC stream of the combined chunks)"


def _fields(schema: Any) -> List[Dict[str, Any]]:
    out = []
    for field in schema:
        entry: Dict[str, Any] = {"name": field.name, "type": str(field.type), "nullable": bool(field.nullable)}
        out.append(entry)
    return out


@hookimpl
def custody_dataset_facets(
    data: Any, namespace: str, name: str, role: str, digest: Optional[bool], config: Any
) -> Optional[Dict[str, Any]]:
    pa = sys.modules.get("pyarrow")
    if pa is None or data is None or not isinstance(data, (pa.Table, pa.RecordBatch)):
        return None
    rows = int(data.num_rows)
    columns = int(data.num_columns)
    content = None
    if want_digest(digest, rows * max(columns, 1), config):
        table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data.combine_chunks()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        content = "sha256:" + hashlib.sha256(memoryview(sink.getvalue())).hexdigest()
    return data_facets(
        role,
        library="pyarrow",
        library_version=getattr(pa, "__version__", None),
        fields=_fields(data.schema),
        rows=rows,
        columns=columns,
        size=int(data.nbytes),
        digest=content,
        method=METHOD,
    )
