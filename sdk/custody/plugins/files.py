"""Local files named as datasets (namespace ``file``): size, and a sha256 content digest as the
dataset version when the file is at most ``file_digest_max_bytes`` (or ``digest=True``)."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from custody._util import path_digest
from custody.plugins import hookimpl
from custody.plugins._data import data_facets


@hookimpl
def custody_dataset_facets(
    data: Any, namespace: str, name: str, role: str, digest: Optional[bool], config: Any
) -> Optional[Dict[str, Any]]:
    if data is not None or namespace != "file" or not os.path.exists(name):
        return None
    if os.path.isdir(name):
        size = None
        do_digest = digest is True
    else:
        size = os.path.getsize(name)
        do_digest = digest if digest is not None else size <= int(getattr(config, "file_digest_max_bytes", 1 << 28))
    content = None
    if do_digest:
        content, size = path_digest(name)
    return data_facets(
        role, library="file", library_version=None, size=size, digest=content, method="sha256 of the bytes"
    )
