"""pandas DataFrames and Series: schema from the dtypes, row count, and a content digest
(``pandas.util.hash_pandas_object`` with the index, plus column names and dtypes, under sha256)."""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any, Dict, Optional

from custody.plugins import hookimpl
from custody.plugins._data import data_facets, want_digest

METHOD = "sha256(column names+dtypes, pandas.util.hash_pandas_object(index=True))"


@hookimpl
def custody_dataset_facets(
    data: Any, namespace: str, name: str, role: str, digest: Optional[bool], config: Any
) -> Optional[Dict[str, Any]]:
    pd = sys.modules.get("pandas")
    if pd is None or data is None:
        return None
    if isinstance(data, pd.Series):
        frame = data.to_frame(name=data.name if data.name is not None else 0)
    elif isinstance(data, pd.DataFrame):
        frame = data
    else:
        return None
    dtypes = [(str(column), str(dtype)) for column, dtype in frame.dtypes.items()]
    fields = [{"name": column, "type": dtype} for column, dtype in dtypes]
    rows, columns = frame.shape
    content = None
    if want_digest(digest, rows * max(columns, 1), config):
        try:
            h = hashlib.sha256(json.dumps(dtypes).encode("utf-8"))
            h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
            content = "sha256:" + h.hexdigest()
        except TypeError:  # unhashable cells (lists, dicts): schema and counts only
            content = None
    return data_facets(
        role,
        library="pandas",
        library_version=getattr(pd, "__version__", None),
        fields=fields,
        rows=int(rows),
        columns=int(columns),
        digest=content,
        method=METHOD,
    )
