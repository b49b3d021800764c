"""Facets shared by the data plugins: schema, version (content digest), statistics, custody_data."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from custody._util import custody_facet, ol_facet


def want_digest(digest: Optional[bool], cells: int, config: Any) -> bool:
    if digest is not None:
        return bool(digest)
    return cells <= int(getattr(config, "data_digest_max_cells", 5_000_000))


def data_facets(
    role: str,
    *,
    library: str,
    library_version: Optional[str],
    fields: Optional[List[Dict[str, Any]]] = None,
    rows: Optional[int] = None,
    columns: Optional[int] = None,
    size: Optional[int] = None,
    digest: Optional[str] = None,
    method: Optional[str] = None,
    **extra: Any,
) -> Dict[str, Any]:
    facets: Dict[str, Any] = {}
    if fields is not None:
        facets["schema"] = ol_facet("1-2-0/SchemaDatasetFacet", fields=fields)
    if digest:
        facets["version"] = ol_facet("1-0-1/DatasetVersionDatasetFacet", datasetVersion=digest)
    facets["custody_data"] = custody_facet(
        "custody_data",
        "CustodyDataDatasetFacet",
        library=library,
        libraryVersion=library_version,
        rowCount=rows,
        columnCount=columns,
        sizeBytes=size,
        contentDigest=digest,
        digestMethod=method if digest else None,
        **extra,
    )
    stats = {k: v for k, v in (("rowCount", rows), ("size", size)) if v is not None}
    if stats:
        if role == "input":
            facets["inputStatistics"] = ol_facet("1-0-0/InputStatisticsInputDatasetFacet", **stats)
        else:
            facets["outputStatistics"] = ol_facet("1-0-2/OutputStatisticsOutputDatasetFacet", **stats)
    return facets
